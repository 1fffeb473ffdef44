#[spindle::main(flavor = multi_thread, worker_threads = "4", crate = spindle)]
async fn main() {}

#[spindle::test(crate = "not a path")]
async fn bad_path() {}
