//! `#[spindle::main]` and `#[spindle::test]` (being written).
