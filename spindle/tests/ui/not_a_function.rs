#[spindle::main]
struct Main;

fn main() {}
