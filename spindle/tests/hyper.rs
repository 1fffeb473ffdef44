//! hyper 1.x on spindle (feature `hyper`): server and client connections over spindle's TCP and
//! Unix streams with no adapter type, hyper's timers on spindle's clock, and the executor.
//! Every test runs on every runtime flavour; loopback only, bounded in time.
#![cfg(feature = "hyper")]

mod common;

use std::convert::Infallible;
use std::time::Duration;

use common::each_flavor;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use spindle::io::hyper::{HyperExecutor, HyperTimer};
use spindle::net::{TcpListener, TcpStream, UnixStream};
use spindle::runtime::Runtime;

fn bounded<T>(rt: &Runtime, f: impl std::future::Future<Output = T>) -> T {
    rt.block_on(async { spindle::time::timeout(Duration::from_secs(30), f).await.expect("test timed out") })
}

/// Echoes the request path and body length back.
async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(usize::MAX);
    Ok(Response::new(Full::new(Bytes::from(format!("{path} {body}")))))
}

/// Sends `requests` (path, body length) one after another over one HTTP/1 connection on `io`,
/// checks each echo, then closes the connection and waits for its task.
async fn client_exchange<I>(io: I, requests: Vec<(String, usize)>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    let conn = spindle::spawn(conn);
    for (path, len) in requests {
        // HTTP/1 carries one request at a time: wait until the previous exchange is done.
        sender.ready().await.unwrap();
        let req = Request::post(path.as_str()).body(Full::new(Bytes::from(vec![b'x'; len]))).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got, format!("{path} {len}").as_bytes());
    }
    drop(sender);
    conn.await.unwrap().unwrap();
}

#[test]
fn http1_keep_alive_requests_over_tcp() {
    each_flavor(|rt| {
        bounded(rt, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = spindle::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                hyper::server::conn::http1::Builder::new()
                    .timer(HyperTimer::new())
                    .serve_connection(stream, hyper::service::service_fn(echo))
                    .await
            });

            let stream = TcpStream::connect(addr).await.unwrap();
            // Bodies from empty to 64 KiB: larger than one socket read, so hyper's reads and
            // writes go around the readiness loop.
            client_exchange(stream, (0..50usize).map(|i| (format!("/r{i}"), i * 1337)).collect()).await;
            server.await.unwrap().unwrap();
        });
    });
}

#[test]
fn http1_over_a_unix_stream_pair() {
    each_flavor(|rt| {
        bounded(rt, async {
            let (a, b) = UnixStream::pair().unwrap();
            let server = spindle::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(a, hyper::service::service_fn(echo)),
            );
            client_exchange(b, vec![("/unix".to_string(), 0)]).await;
            server.await.unwrap().unwrap();
        });
    });
}

#[test]
fn header_read_timeout_runs_on_spindle_timers() {
    each_flavor(|rt| {
        bounded(rt, async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = spindle::spawn(async move {
                let (stream, _) = listener.accept().await.unwrap();
                let started = spindle::time::Instant::now();
                let res = hyper::server::conn::http1::Builder::new()
                    .timer(HyperTimer::new())
                    .header_read_timeout(Duration::from_millis(50))
                    .serve_connection(stream, hyper::service::service_fn(echo))
                    .await;
                (res, started.elapsed())
            });
            // A client that connects and never sends a request line: the server must give up.
            let _idle = TcpStream::connect(addr).await.unwrap();
            let (res, waited) = server.await.unwrap();
            let err = res.expect_err("the idle connection must time out");
            assert!(err.is_timeout(), "expected a header-read timeout, got {err}");
            assert!(waited >= Duration::from_millis(50), "timed out early: {waited:?}");
        });
    });
}

#[test]
fn timer_reset_moves_the_deadline() {
    use hyper::rt::Timer;
    each_flavor(|rt| {
        bounded(rt, async {
            let t = HyperTimer::new();
            let start = std::time::Instant::now();
            let mut s = t.sleep(Duration::from_secs(3600));
            t.reset(&mut s, start + Duration::from_millis(5));
            s.await;
            let waited = start.elapsed();
            assert!(waited >= Duration::from_millis(5) && waited < Duration::from_secs(60), "{waited:?}");
        });
    });
}

#[test]
fn executor_spawns_onto_its_runtime_from_outside_threads() {
    each_flavor(|rt| {
        let exec = rt.block_on(async { HyperExecutor::new() });
        let (tx, rx) = spindle::sync::oneshot::channel();
        // hyper may call the executor from any thread; the task still runs on `rt`.
        std::thread::spawn(move || {
            hyper::rt::Executor::execute(&exec, async move {
                let on_runtime = spindle::runtime::Handle::try_current().is_ok();
                tx.send(on_runtime).unwrap();
            })
        })
        .join()
        .unwrap();
        assert!(bounded(rt, rx).unwrap(), "the task ran outside the runtime");
    });
}

/// `HyperTimer::now` is spindle's clock, from which hyper computes its deadlines (it was the real
/// clock: under virtual time hyper's timeouts fired at once or late).
#[test]
fn hyper_timer_now_follows_spindles_clock() {
    use hyper::rt::Timer;
    let rt = spindle::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        spindle::time::pause();
        spindle::time::advance(Duration::from_secs(3600)).await;
        let ours = spindle::time::Instant::now().into_std();
        assert_eq!(HyperTimer::new().now(), ours);
    });
}
