#[spindle::main(worker_thread = 2)]
async fn main() {}

#[spindle::test(start_paused = true)]
async fn tokio_option() {}

#[spindle::test(multi_thread)]
async fn bare_word() {}
