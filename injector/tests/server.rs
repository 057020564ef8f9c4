//! The HTTPS server end to end, in process: a TLS client that trusts only the CA
//! from `injector certs` posts reviews; malformed bodies get HTTP 400; a renewed
//! certificate is served to new connections without a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use injector::certs::{generate, CertRequest};
use injector::config::SidecarConfig;
use injector::server::{serve, ServeConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

fn cert_request() -> CertRequest {
    CertRequest {
        service: "gosight-injector".into(),
        namespace: "gosight-system".into(),
        extra_dns: vec![],
        ips: vec!["127.0.0.1".parse().unwrap()],
        days: 1,
    }
}

struct Client {
    connector: TlsConnector,
    addr: SocketAddr,
}

impl Client {
    fn new(ca_pem: &str, addr: SocketAddr) -> Client {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Client { connector: TlsConnector::from(Arc::new(config)), addr }
    }

    /// One request on a fresh connection: (status, body, the server's certificate).
    async fn send(&self, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, String, CertificateDer<'static>) {
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let tls = self.connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.expect("TLS handshake");
        let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned(), peer)
    }
}

async fn start(
    dir: &Path,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    // Find a free port, then let the server bind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let config = ServeConfig {
        listen: addr,
        tls_cert: dir.join("tls.crt"),
        tls_key: dir.join("tls.key"),
        cert_reload_seconds: 0.2,
        max_connections: 1024,
        sidecar: SidecarConfig::defaults(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(config, async move {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "server did not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (addr, stop, server)
}

#[tokio::test]
async fn serves_reviews_over_tls_refuses_garbage_and_picks_up_a_renewed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = generate(&cert_request()).unwrap();
    certs.write(dir.path()).unwrap();
    let (addr, stop, server) = start(dir.path()).await;
    let client = Client::new(&certs.ca_pem, addr);

    let (status, body, first_cert) = client.send(Method::GET, "/healthz", vec![]).await;
    assert_eq!((status, body.trim()), (StatusCode::OK, "ok"));

    let fixture =
        std::fs::read(format!("{}/tests/fixtures/namespace-deployment-pod.json", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let (status, body, _) = client.send(Method::POST, "/inject/namespace", fixture.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");

    // Through the pod path the same pod (no annotation) is not opted in.
    let (status, body, _) = client.send(Method::POST, "/inject/pod", fixture).await;
    assert_eq!(status, StatusCode::OK);
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());

    let (status, body, _) = client.send(Method::POST, "/inject/namespace", b"{\"kind\":".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("malformed AdmissionReview: not an AdmissionReview"), "{body}");
    let (status, _, _) = client.send(Method::GET, "/inject/namespace", vec![]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, _) = client.send(Method::POST, "/mutate", vec![]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Renew: a new CA and certificate written over the files (as a Secret update
    // or cert-manager renewal would). New connections get the new certificate.
    let renewed = generate(&cert_request()).unwrap();
    renewed.write(dir.path()).unwrap();
    let new_client = Client::new(&renewed.ca_pem, addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    let new_cert = loop {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        if let Ok(tls) = new_client.connector.connect(name, tcp).await {
            break tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
        }
        assert!(Instant::now() < deadline, "the renewed certificate was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(new_cert, first_cert);
    let (status, _, _) = new_client.send(Method::GET, "/healthz", vec![]).await;
    assert_eq!(status, StatusCode::OK);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn refuses_to_start_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls_cert: dir.path().join("missing.crt"),
        tls_key: dir.path().join("missing.key"),
        cert_reload_seconds: 1.0,
        max_connections: 1024,
        sidecar: SidecarConfig::defaults(),
    };
    let error = serve(config, std::future::pending()).await.unwrap_err();
    assert!(format!("{error:#}").contains("missing.crt"), "{error:#}");
}
