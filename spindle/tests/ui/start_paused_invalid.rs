#[spindle::main(start_paused = "true")]
async fn main() {}

#[spindle::test(start_paused = 1)]
async fn integer() {}

#[spindle::test(start_paused)]
async fn no_value() {}

#[spindle::test(flavor = "multi_thread", start_paused = true, start_paused = false)]
async fn duplicate() {}
