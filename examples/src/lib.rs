//! Example programs for spindle; see the `[[example]]` targets.
