#[spindle::main(flavor = "multi_threaded")]
async fn main() {}

#[spindle::test(flavor = "single_thread")]
async fn not_a_flavor() {}
