#[spindle::main]
fn main() {}

#[spindle::test]
fn not_async_test() {}
