use super::*;
use axum::routing::{get, post};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn app() -> Router {
    Router::new()
        .route(
            "/echo",
            post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                "late"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("boom");
                }
                "never"
            }),
        )
}

async fn start(
    app: Router,
    limits: Limits,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = harden(app, &limits, json_error);
    let task = tokio::spawn(async move {
        serve(listener, app, &limits, async {
            let _ = stopped.await;
        })
        .await
    });
    (url, stop, task)
}

async fn json(resp: reqwest::Response) -> (u16, serde_json::Value) {
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn an_oversized_body_is_413_json_with_or_without_a_length() {
    let (url, _stop, _task) = start(app(), Limits::default()).await;
    let http = reqwest::Client::new();
    let big = vec![b'x'; 64 * 1024 + 1];
    let (status, body) = json(
        http.post(format!("{url}/echo"))
            .body(big.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "Payload Too Large");
    assert!(body["message"].as_str().unwrap().contains("65536"));
    // Chunked, so no Content-Length announces the size.
    let mut tcp = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    tcp.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").await.unwrap();
    for _ in 0..5 {
        let _ = tcp
            .write_all(format!("{:x}\r\n", 16 * 1024).as_bytes())
            .await;
        let _ = tcp.write_all(&[b'x'; 16 * 1024]).await;
        let _ = tcp.write_all(b"\r\n").await;
    }
    let _ = tcp.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("application/json"), "{answer}");
    let ok = http
        .post(format!("{url}/echo"))
        .body(vec![b'x'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "1000");
}

#[tokio::test(start_paused = true)]
async fn a_request_that_takes_too_long_is_503_json() {
    let (url, _stop, _task) = start(app(), Limits::default()).await;
    let (status, body) = json(reqwest::get(format!("{url}/slow")).await.unwrap()).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"], "Service Unavailable");
}

#[tokio::test]
async fn a_panic_is_a_500_json_answer_and_the_server_carries_on() {
    let (url, _stop, _task) = start(app(), Limits::default()).await;
    let (status, body) = json(reqwest::get(format!("{url}/panic")).await.unwrap()).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"], "Internal Server Error");
    let (status, _) = json(reqwest::get(format!("{url}/panic")).await.unwrap()).await;
    assert_eq!(status, 500, "still serving");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let (url, _stop, _task) = start(app(), Limits::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    tcp.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf).await;
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn no_more_requests_than_the_cap_run_at_once() {
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let (r, p) = (running.clone(), peak.clone());
    let app = Router::new().route(
        "/work",
        get(move || {
            let (r, p) = (r.clone(), p.clone());
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                "done"
            }
        }),
    );
    let limits = Limits {
        concurrency: 3,
        ..Limits::default()
    };
    let (url, _stop, _task) = start(app, limits).await;
    let http = reqwest::Client::new();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                http.get(format!("{url}/work"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    for c in calls {
        assert_eq!(c.await.unwrap(), 200);
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_stop_finishes_requests_in_flight_and_refuses_new_ones() {
    let (entered, mut entered_rx) = tokio::sync::mpsc::channel::<()>(1);
    let release = Arc::new(tokio::sync::Notify::new());
    let r = release.clone();
    let app = Router::new().route(
        "/held",
        get(move || {
            let (entered, r) = (entered.clone(), r.clone());
            async move {
                let _ = entered.send(()).await;
                r.notified().await;
                "finished"
            }
        }),
    );
    let (url, stop, task) = start(app, Limits::default()).await;
    let in_flight = tokio::spawn(reqwest::get(format!("{url}/held")));
    entered_rx.recv().await.unwrap();
    stop.send(()).unwrap();
    // The listener closes: a new connection is refused.
    let refused = async {
        loop {
            if tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
                .await
                .is_err()
            {
                break;
            }
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), refused)
        .await
        .expect("the listener closed");
    release.notify_one();
    let answer = in_flight.await.unwrap().unwrap();
    assert_eq!(answer.text().await.unwrap(), "finished");
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("serve returned")
        .unwrap()
        .unwrap();
}

/// A client that connects and sends nothing at all is let go too (no protocol sniffing waits
/// without a timer).
#[tokio::test(start_paused = true)]
async fn a_client_that_sends_nothing_is_disconnected() {
    let (url, _stop, _task) = start(app(), Limits::default()).await;
    for first in [&b""[..], b"P"] {
        let mut tcp = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
            .await
            .unwrap();
        tcp.write_all(first).await.unwrap();
        let started = tokio::time::Instant::now();
        let mut buf = Vec::new();
        let _ = tcp.read_to_end(&mut buf).await;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{first:?}: {:?}",
            started.elapsed()
        );
    }
}

/// A kept-alive connection that goes quiet after its request is closed after the header-read
/// timeout: it holds no slot forever.
#[tokio::test(start_paused = true)]
async fn an_idle_kept_alive_connection_is_closed() {
    let (url, _stop, _task) = start(app(), Limits::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    tcp.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf).await;
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

/// The connection cap: beyond it, connections wait to be accepted instead of exhausting the
/// process's file descriptors.
#[tokio::test]
async fn connections_beyond_the_cap_wait_to_be_accepted() {
    let limits = Limits {
        connections: 2,
        ..Limits::default()
    };
    let (url, _stop, _task) = start(app(), limits).await;
    let addr = url.trim_start_matches("http://").to_string();
    let _a = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // The third connects (the kernel's backlog) but is not served while two are open.
    let third = tokio::time::timeout(
        Duration::from_millis(300),
        reqwest::get(format!("{url}/echo")),
    )
    .await;
    assert!(third.is_err(), "served beyond the cap");
    drop((_a, _b));
    let served = reqwest::Client::new()
        .post(format!("{url}/echo"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
}
