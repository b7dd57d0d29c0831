//! `tocsin serve`'s listener against clients that hold connections: slow headers, trickled
//! bodies, idle keep-alive, more connections than the cap; and HTTPS. Real sockets on loopback,
//! with timeouts of a second so that each case ends quickly.

use std::sync::Arc;
use std::time::Duration;

use tocsin::listener::{ConnectionLimits, serve, tls_acceptor};
use tocsin_adapters::api::{AppState, RequestLimits, router};
use tocsin_core::store::MemoryStore;
use tocsin_core::{AlertsSettings, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SECOND: Duration = Duration::from_secs(1);

/// Starts a server; returns its address. It runs until the test's runtime ends.
async fn start(
    limits: ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::net::SocketAddr {
    let service = Service::new(
        Arc::new(MemoryStore::new()),
        AlertsSettings::default(),
        Arc::new(tocsin_core::dispatch::Nowhere),
    );
    let app = router(
        AppState::open(service),
        RequestLimits {
            max_body_bytes: 1024,
            body_timeout: SECOND,
        },
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve(listener, tls, app, limits, std::future::pending()));
    addr
}

fn limits(header: u64, idle: u64, max: usize) -> ConnectionLimits {
    ConnectionLimits {
        header_timeout: Duration::from_secs(header),
        idle_timeout: Duration::from_secs(idle),
        max_connections: max,
    }
}

/// Reads until the server closes the connection (or `within` passes: then None).
async fn read_to_close(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&out).into_owned())
}

const HEALTH: &[u8] = b"GET /api/v1/healthz HTTP/1.1\r\nHost: t\r\n\r\n";

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let addr = start(limits(1, 30, 64), None).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /api/v1/healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .expect("write");
    let closed = read_to_close(&mut s, 5 * SECOND).await;
    assert!(
        closed.is_some(),
        "still open 5 s after a 1 s header timeout"
    );
    // A client that sends nothing at all is cut off too.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    assert!(read_to_close(&mut silent, 5 * SECOND).await.is_some());
}

#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_is_refused_with_408() {
    let addr = start(limits(30, 30, 64), None).await;
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = s.into_split();
    writer
        .write_all(b"POST /api/v1/rules/check HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n")
        .await
        .expect("write");
    let trickle = async {
        for _ in 0..20 {
            if writer.write_all(b" ").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let (answer, ()) = tokio::join!(read_to_close(&mut reader, 8 * SECOND), trickle);
    let answer = answer.expect("closed after the answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("server.body_timeout_secs"), "{answer}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let addr = start(limits(30, 1, 64), None).await;
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(HEALTH).await.expect("write");
    let answer = read_to_close(&mut s, 5 * SECOND)
        .await
        .expect("closed when idle");
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "answered first: {answer}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let addr = start(limits(30, 30, 2), None).await;
    let first = TcpStream::connect(addr).await.expect("connect");
    let _second = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr)
        .await
        .expect("the backlog takes it");
    third.write_all(HEALTH).await.expect("write");
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap of 2");
    drop(first);
    let n = tokio::time::timeout(5 * SECOND, third.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .expect("read");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[tokio::test]
async fn https_with_a_certificate_and_key_from_pem_files() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let addr = start(
        limits(5, 5, 64),
        Some(tls_acceptor(&cert, &key).expect("tls")),
    )
    .await;
    let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).expect("cert")).expect("pem");
    let client = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .expect("client");
    let health = client
        .get(format!("https://{addr}/api/v1/healthz"))
        .send()
        .await
        .expect("https answers");
    assert_eq!(health.status(), 200);
    let plain = reqwest::get(format!("http://{addr}/api/v1/healthz")).await;
    assert!(plain.is_err(), "plain HTTP is not served on a TLS listener");
    // A key that is not one is named.
    std::fs::write(&key, "not a key").expect("write");
    let err = tls_acceptor(&cert, &key)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("key.pem"), "{err}");
}
