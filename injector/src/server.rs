//! The HTTPS server: TLS (rustls, reloading certificate) in front of a small
//! HTTP/1.1 router.
//!
//! | path | answers |
//! |---|---|
//! | `POST /inject/namespace` | reviews pods of namespaces labelled `gosight.dev/inject: "true"` |
//! | `POST /inject/pod` | reviews pods that must carry the `gosight.dev/inject: "true"` annotation |
//! | `POST /skip/pod-security/baseline`, `.../restricted` | pods of opted-in namespaces enforcing that Pod Security level: admitted unchanged but for a `gosight.dev/not-injected` annotation, with the reason as a warning |
//! | `GET /healthz` | `ok` (readiness and liveness) |
//!
//! A body that is not an AdmissionReview gets 400 with the reason; everything
//! else about a review answers 200 with `allowed: true` (see [`crate::review`]).
//!
//! Hostile or broken clients are bounded, so the injector stays within its memory
//! limit and keeps answering the API server: at most `--max-connections` are
//! open (a new one closes the oldest, so stalled connections cannot lock the API
//! server out), the TLS handshake, the request head and the body each have a
//! deadline, and a connection lives at most [`CONNECTION_LIFETIME`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::SidecarConfig;
use crate::patch::OptIn;
use crate::review::{review, Outcome, Reviewed};
use crate::tls::{server_config, ReloadingCert};

/// Largest request body read (a pod is at most ~1.5 MiB in etcd; its review is
/// a little more).
const MAX_BODY: usize = 8 << 20;
/// A client that has not finished its TLS handshake by then is dropped (the API
/// server gives a webhook call 5 s by default, 30 s at most).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to send a request's head, counted from when the connection waits for one.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Time to send a request's body.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection (the API server reconnects as needed).
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// `injector serve` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "GOSIGHT_INJECTOR_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// PEM certificate chain served (re-read when it changes).
    #[arg(long, env = "GOSIGHT_INJECTOR_TLS_CERT", default_value = "/etc/gosight-injector/tls/tls.crt")]
    pub tls_cert: PathBuf,
    /// PEM private key of the certificate (re-read when it changes).
    #[arg(long, env = "GOSIGHT_INJECTOR_TLS_KEY", default_value = "/etc/gosight-injector/tls/tls.key")]
    pub tls_key: PathBuf,
    /// How often the certificate files are checked for changes, in seconds.
    #[arg(long, env = "GOSIGHT_INJECTOR_CERT_RELOAD_SECONDS", default_value_t = 10.0)]
    pub cert_reload_seconds: f64,
    /// Most connections open at once; a new one beyond closes the oldest.
    #[arg(long, env = "GOSIGHT_INJECTOR_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    #[command(flatten)]
    pub sidecar: SidecarConfig,
}

/// Binds, then serves until `shutdown` completes. Logs the address it listens on.
pub async fn serve(config: ServeConfig, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = ReloadingCert::load(&config.tls_cert, &config.tls_key, Arc::clone(&provider))
        .context("loading the serving certificate")?;
    let reload = Duration::from_secs_f64(config.cert_reload_seconds.max(0.1));
    let watcher = cert.watch(reload);
    let acceptor = TlsAcceptor::from(Arc::new(server_config(cert, provider)?));
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, "injector listening (HTTPS)");
    let sidecar = Arc::new(config.sidecar);
    let open = Arc::new(std::sync::Mutex::new(OpenConnections::default()));
    let max = config.max_connections.max(1);

    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let sidecar = Arc::clone(&sidecar);
        let (id, mut closed) = open.lock().unwrap_or_else(|e| e.into_inner()).admit(max);
        let open = Arc::clone(&open);
        tokio::spawn(async move {
            let connection = async {
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                };
                let service = hyper::service::service_fn(move |req| handle(req, Arc::clone(&sidecar)));
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(tls), service);
                if let Err(e) = served.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            };
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_LIFETIME, connection) => {}
                _ = &mut closed => tracing::debug!(%peer, "closed: the oldest of too many connections"),
            }
            open.lock().unwrap_or_else(|e| e.into_inner()).release(id);
        });
    }
    watcher.abort();
    tracing::info!("injector stopped");
    Ok(())
}

/// The open connections, oldest first, each with the sender that closes it.
#[derive(Default)]
struct OpenConnections {
    next: u64,
    live: std::collections::BTreeMap<u64, tokio::sync::oneshot::Sender<()>>,
    closed_oldest: u64,
    last_warning: Option<std::time::Instant>,
}

impl OpenConnections {
    /// Registers a new connection, closing the oldest when `max` are open.
    fn admit(&mut self, max: usize) -> (u64, tokio::sync::oneshot::Receiver<()>) {
        while self.live.len() >= max {
            let Some((_, close)) = self.live.pop_first() else { break };
            let _ = close.send(());
            self.closed_oldest += 1;
            if self.last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                self.last_warning = Some(std::time::Instant::now());
                tracing::warn!(
                    max_connections = max,
                    closed_total = self.closed_oldest,
                    "too many open connections: closing the oldest (at most one such message per 10s)"
                );
            }
        }
        let (close, closed) = tokio::sync::oneshot::channel();
        self.next += 1;
        self.live.insert(self.next, close);
        (self.next, closed)
    }

    fn release(&mut self, id: u64) {
        self.live.remove(&id);
    }
}

type Reply = Response<Full<Bytes>>;

async fn handle(req: Request<Incoming>, sidecar: Arc<SidecarConfig>) -> Result<Reply, std::convert::Infallible> {
    let via = match req.uri().path() {
        "/inject/namespace" => OptIn::Namespace,
        "/inject/pod" => OptIn::PodAnnotation,
        "/skip/pod-security/baseline" => OptIn::PodSecurity("baseline"),
        "/skip/pod-security/restricted" => OptIn::PodSecurity("restricted"),
        "/healthz" if req.method() == Method::GET => return Ok(text(StatusCode::OK, "ok")),
        _ => return Ok(text(StatusCode::NOT_FOUND, "not found")),
    };
    if req.method() != Method::POST {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "use POST"));
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), MAX_BODY).collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) => return Ok(text(StatusCode::BAD_REQUEST, &format!("cannot read the request body: {e}"))),
        Err(_) => return Ok(text(StatusCode::REQUEST_TIMEOUT, "the request body took too long")),
    };
    Ok(answer(&body, via, &sidecar))
}

/// The HTTP answer to one review body.
fn answer(body: &[u8], via: OptIn, sidecar: &SidecarConfig) -> Reply {
    match review(body, via, sidecar) {
        Err(malformed) => {
            tracing::warn!(reason = %malformed, "refused a request (HTTP 400)");
            text(StatusCode::BAD_REQUEST, &malformed.to_string())
        }
        Ok(reviewed) => {
            log_outcome(&reviewed, via);
            match serde_json::to_vec(&reviewed.json) {
                Ok(bytes) => Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(bytes)))
                    .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "response")),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("cannot serialise the response: {e}")),
            }
        }
    }
}

fn log_outcome(reviewed: &Reviewed, via: OptIn) {
    let uid = reviewed.json.pointer("/response/uid").and_then(|u| u.as_str()).unwrap_or("");
    let pod = reviewed.object.as_str();
    match &reviewed.outcome {
        Outcome::Injected => tracing::info!(pod, uid, ?via, "sidecar injected"),
        Outcome::Skipped(reason) => tracing::info!(pod, uid, ?via, reason = reason.as_str(), "not injected"),
        Outcome::NotApplicable(what) => tracing::debug!(pod, uid, what = what.as_str(), "not a pod CREATE; allowed"),
        Outcome::InternalError(error) => {
            tracing::error!(pod, uid, error = error.as_str(), "internal error; pod allowed unchanged")
        }
    }
}

fn text(status: StatusCode, message: &str) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
