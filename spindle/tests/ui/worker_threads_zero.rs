#[spindle::main(worker_threads = 0)]
async fn main() {}

#[spindle::test(flavor = "multi_thread", worker_threads = -1)]
async fn negative() {}
