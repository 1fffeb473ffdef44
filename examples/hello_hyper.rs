//! An HTTP/1.1 "hello world" server on hyper and spindle, with a built-in load client.
//!
//! `cargo run --release --example hello_hyper` starts the server on 127.0.0.1 (an OS-chosen port),
//! runs 16 keep-alive client connections x 2000 requests against it from the same process, prints
//! requests per second, and exits. `cargo run --release --example hello_hyper -- --serve 8080`
//! serves on 127.0.0.1:8080 until interrupted (for `wrk -t2 -c64 -d10s http://127.0.0.1:8080/`).
//!
//! Spindle's `TcpStream` implements `hyper::rt::Read`/`Write` itself (feature `hyper`), zero-copy:
//! no adapter type between hyper and the socket.

use std::convert::Infallible;
use std::time::Instant;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use spindle::io::hyper::HyperTimer;
use spindle::net::{TcpListener, TcpStream};

const CONNECTIONS: usize = 16;
const REQUESTS_PER_CONNECTION: usize = 2000;

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"Hello, world!\n"))))
}

async fn serve(listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        spindle::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(HyperTimer::new())
                .serve_connection(stream, hyper::service::service_fn(hello));
            if let Err(e) = conn.await {
                eprintln!("connection error: {e}");
            }
        });
    }
}

async fn client(addr: std::net::SocketAddr) -> usize {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(stream).await.expect("handshake");
    let conn = spindle::spawn(conn);
    let mut bytes = 0;
    for _ in 0..REQUESTS_PER_CONNECTION {
        let req = Request::get("/").header("host", "localhost").body(Full::new(Bytes::new())).unwrap();
        // HTTP/1 carries one request at a time: wait until the previous exchange is done.
        sender.ready().await.unwrap();
        let resp = sender.send_request(req).await.expect("request");
        assert_eq!(resp.status(), 200);
        bytes += resp.into_body().collect().await.expect("body").to_bytes().len();
    }
    drop(sender);
    conn.await.expect("connection task").expect("connection");
    bytes
}

#[spindle::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--serve") {
        let port = args.get(2).and_then(|p| p.parse::<u16>().ok()).unwrap_or(8080);
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("serving on http://{} (Ctrl-C to stop)", listener.local_addr().unwrap());
        serve(listener).await;
        return;
    }

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let server = spindle::spawn(serve(listener));

    let start = Instant::now();
    let clients: Vec<_> = (0..CONNECTIONS).map(|_| spindle::spawn(client(addr))).collect();
    let mut bytes = 0;
    for c in clients {
        bytes += c.await.expect("client task");
    }
    let elapsed = start.elapsed();
    let requests = CONNECTIONS * REQUESTS_PER_CONNECTION;
    assert_eq!(bytes, requests * b"Hello, world!\n".len());
    println!(
        "{requests} requests over {CONNECTIONS} keep-alive connections in {elapsed:.2?}: {:.0} req/s (I/O backend: {})",
        requests as f64 / elapsed.as_secs_f64(),
        spindle::runtime::Handle::current().io_driver(),
    );
    server.abort();
}
