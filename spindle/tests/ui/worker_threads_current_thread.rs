#[spindle::main(flavor = "current_thread", worker_threads = 2)]
async fn main() {}

// `#[spindle::test]` defaults to the current-thread flavor.
#[spindle::test(worker_threads = 2)]
async fn default_flavor_of_test() {}
