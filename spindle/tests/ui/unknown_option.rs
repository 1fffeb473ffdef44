#[spindle::main(worker_thread = 2)]
async fn main() {}

#[spindle::test(unhandled_panic = "shutdown_runtime")]
async fn tokio_option() {}

#[spindle::test(start_pause = true)]
async fn start_paused_typo() {}

#[spindle::test(multi_thread)]
async fn bare_word() {}
