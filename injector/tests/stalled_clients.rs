//! The injector binary under hostile clients: 6,000 connections that stall (3,000
//! before the TLS handshake, 3,000 after it, never sending a request), while
//! reviews keep coming. It must keep answering every review and stay under the
//! 128Mi memory limit deploy/deployment.yaml gives it (its peak resident memory,
//! VmHWM, is measured).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use injector::certs::{generate, CertRequest};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const STALLED_PLAIN: usize = 3000;
const STALLED_TLS: usize = 3000;
/// The injector's memory limit in deploy/deployment.yaml.
const LIMIT_BYTES: u64 = 128 << 20;

fn raise_fd_limit() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
        l.rlim_cur = l.rlim_max.max(20_000).min(l.rlim_max);
        libc::setrlimit(libc::RLIMIT_NOFILE, &l);
    }
}

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

async fn review(connector: &TlsConnector, addr: SocketAddr, body: &[u8]) -> Result<StatusCode, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::builder()
        .method(Method::POST)
        .uri("/inject/namespace")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if !String::from_utf8_lossy(&body).contains("\"patchType\":\"JSONPatch\"") {
        return Err(format!("no patch in the answer: {}", String::from_utf8_lossy(&body)));
    }
    Ok(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_thousand_stalled_connections_neither_starve_reviews_nor_exceed_the_memory_limit() {
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let certs = generate(&CertRequest {
        service: "gosight-injector".into(),
        namespace: "gosight-system".into(),
        extra_dns: vec![],
        ips: vec!["127.0.0.1".parse().unwrap()],
        days: 1,
    })
    .unwrap();
    certs.write(dir.path()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut injector = std::process::Command::new(env!("CARGO_BIN_EXE_injector"))
        .args(["serve", "--listen", &addr.to_string()])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .env("RUST_LOG", "warn")
        .env_remove("GOSIGHT_INJECTOR_MAX_CONNECTIONS")
        .spawn()
        .unwrap();
    let pid = injector.id();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "the injector did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(certs.ca_pem.as_bytes()).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let body =
        std::fs::read(format!("{}/tests/fixtures/namespace-deployment-pod.json", env!("CARGO_MANIFEST_DIR"))).unwrap();

    // Reviews keep coming while the stalled connections pile up.
    let reviewer = {
        let connector = connector.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            let end = Instant::now() + Duration::from_secs(20);
            while Instant::now() < end {
                match review(&connector, addr, &body).await {
                    Ok(StatusCode::OK) => ok += 1,
                    other => failed.push(format!("{other:?}")),
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (ok, failed)
        })
    };

    let mut plain = Vec::new();
    let mut tls = Vec::new();
    for i in 0..STALLED_PLAIN.max(STALLED_TLS) {
        if i < STALLED_PLAIN {
            if let Ok(s) = TcpStream::connect(addr).await {
                plain.push(s);
            }
        }
        if i < STALLED_TLS {
            let tcp = TcpStream::connect(addr).await.unwrap();
            // A handshake the server may cut short: then the slot was reclaimed.
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_secs(2),
                connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp),
            )
            .await
            {
                tls.push(s);
            }
        }
    }
    let opened = (plain.len(), tls.len());
    let (ok, failed) = reviewer.await.unwrap();
    let peak = peak_rss(pid);
    println!(
        "stalled connections opened: {} plain + {} after TLS; reviews answered {ok}, failed {}; injector peak RSS {:.1} MiB (limit {} MiB)",
        opened.0,
        opened.1,
        failed.len(),
        peak as f64 / (1 << 20) as f64,
        LIMIT_BYTES >> 20
    );
    injector.kill().unwrap();
    let _ = injector.wait();
    assert_eq!(opened.0, STALLED_PLAIN, "every stalled plain connection was accepted");
    assert!(failed.is_empty(), "reviews failed under the stalled connections: {failed:?}");
    assert!(ok >= 50, "reviews kept being answered: {ok}");
    assert!(peak < LIMIT_BYTES, "peak RSS {peak} bytes is over the 128Mi limit");
}
