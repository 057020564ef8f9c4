//! The serving certificate, re-read when its files change.
//!
//! A Kubernetes Secret volume is updated by swapping a symlink, cert-manager
//! renews certificates in place, and `injector certs` writes through a rename:
//! in each case the files' modification time or size changes. A background task
//! looks every `--cert-reload-interval`; new handshakes get the new certificate,
//! open connections keep theirs. A pair that does not load (half-written, key not
//! matching) is logged and the previous one kept.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// (modification time, length) of the certificate and key files.
type Stamp = [(Option<SystemTime>, u64); 2];

/// Resolves every handshake to the current certificate.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

impl ReloadingCert {
    /// Loads the pair once; fails when it cannot (the server does not start
    /// without a certificate).
    pub fn load(cert_path: &Path, key_path: &Path, provider: Arc<CryptoProvider>) -> anyhow::Result<Arc<Self>> {
        let stamp = stamp(cert_path, key_path);
        let key = load_pair(cert_path, key_path, &provider)?;
        Ok(Arc::new(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new((key, stamp)),
        }))
    }

    /// Re-reads the files if they changed since the last load. Returns true when a
    /// new certificate is now served.
    pub fn reload_if_changed(&self) -> bool {
        let now = stamp(&self.cert_path, &self.key_path);
        if self.current.read().map(|c| c.1 == now).unwrap_or(false) {
            return false;
        }
        match load_pair(&self.cert_path, &self.key_path, &self.provider) {
            Ok(key) => {
                if let Ok(mut current) = self.current.write() {
                    *current = (key, now);
                }
                tracing::info!(cert = %self.cert_path.display(), "serving certificate reloaded");
                true
            }
            Err(e) => {
                // Keep serving the old pair; try again when the files change again.
                if let Ok(mut current) = self.current.write() {
                    current.1 = now;
                }
                tracing::warn!(
                    error = format!("{e:#}"),
                    "certificate files changed but do not load; keeping the previous certificate"
                );
                false
            }
        }
    }

    /// Checks the files every `interval` until the runtime stops.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let this = Arc::clone(&this);
                // File reads are blocking; keep them off the async workers.
                let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
            }
        })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| Arc::clone(&c.0))
    }
}

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| std::fs::metadata(p).map(|m| (m.modified().ok(), m.len())).unwrap_or((None, 0));
    [one(cert), one(key)]
}

fn load_pair(cert_path: &Path, key_path: &Path, provider: &CryptoProvider) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert_path.display());
    let key = PrivateKeyDer::from_pem_file(key_path).with_context(|| format!("reading {}", key_path.display()))?;
    let certified = CertifiedKey::from_der(chain, key, provider)
        .with_context(|| format!("{} and {} do not make a pair", cert_path.display(), key_path.display()))?;
    Ok(Arc::new(certified))
}

/// A rustls server configuration that serves the reloading certificate over
/// HTTP/1.1 (what the API server speaks to webhooks).
pub fn server_config(cert: Arc<ReloadingCert>, provider: Arc<CryptoProvider>) -> anyhow::Result<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{generate, CertRequest};

    fn request() -> CertRequest {
        CertRequest { service: "s".into(), namespace: "n".into(), extra_dns: vec![], ips: vec![], days: 1 }
    }

    #[test]
    fn reloads_a_changed_pair_and_keeps_the_old_one_on_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let first = generate(&request()).unwrap();
        let [_, cert, key] = first.write(dir.path()).unwrap();
        let resolver = ReloadingCert::load(&cert, &key, Arc::clone(&provider)).unwrap();
        let served = |r: &ReloadingCert| r.current.read().unwrap().0.cert[0].clone();
        let original = served(&resolver);
        assert!(!resolver.reload_if_changed(), "nothing changed");

        let second = generate(&request()).unwrap();
        second.write(dir.path()).unwrap();
        assert!(resolver.reload_if_changed());
        let renewed = served(&resolver);
        assert_ne!(renewed, original);

        std::fs::write(&cert, "not a certificate").unwrap();
        assert!(!resolver.reload_if_changed());
        assert_eq!(served(&resolver), renewed, "a broken file keeps the previous pair");
    }

    #[test]
    fn mismatched_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = generate(&request()).unwrap();
        let b = generate(&request()).unwrap();
        let [_, cert, _] = a.write(&dir.path().join("a")).unwrap();
        let [_, _, key] = b.write(&dir.path().join("b")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        assert!(ReloadingCert::load(&cert, &key, provider).is_err());
    }
}
