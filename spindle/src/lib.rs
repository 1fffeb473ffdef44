//! spindle (being written)
