#[spindle::main(flavor = "per_core", start_paused = true)]
async fn main() {}
