//! `injector certs`: a private CA and a serving certificate it signs, for the
//! webhook's HTTPS endpoint. The API server trusts the CA through the webhook
//! configuration's `caBundle` (base64 of the CA's PEM).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// What the serving certificate is for.
#[derive(Debug, Clone, clap::Args)]
pub struct CertRequest {
    /// Name of the injector's Service.
    #[arg(long, default_value = "gosight-injector")]
    pub service: String,
    /// Namespace of the injector's Service.
    #[arg(long, default_value = "gosight-system")]
    pub namespace: String,
    /// Extra DNS names for the serving certificate (repeat).
    #[arg(long = "dns")]
    pub extra_dns: Vec<String>,
    /// IP addresses for the serving certificate (repeat), e.g. 127.0.0.1 for a
    /// webhook reached by URL in a test.
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
    /// Validity of both certificates, in days.
    #[arg(long, default_value_t = 825)]
    pub days: u32,
}

/// A CA and a serving certificate with its key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct GeneratedCerts {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl GeneratedCerts {
    /// The `caBundle` value for the MutatingWebhookConfiguration.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes())
    }

    /// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`, the names
    /// a `kubernetes.io/tls` Secret uses. Returns the paths.
    pub fn write(&self, dir: &Path) -> anyhow::Result<[PathBuf; 3]> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let paths = [dir.join("ca.crt"), dir.join("tls.crt"), dir.join("tls.key")];
        for (path, text) in paths.iter().zip([&self.ca_pem, &self.cert_pem, &self.key_pem]) {
            write_private(path, text.as_bytes())?;
        }
        Ok(paths)
    }
}

/// Writes a file through a temporary name and a rename, so a server watching it
/// never reads half a file; keys are created with mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// The DNS names a Service is reached by from the API server.
pub fn service_dns_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

/// Generates a new CA (ECDSA P-256) and a serving certificate it signs.
pub fn generate(request: &CertRequest) -> anyhow::Result<GeneratedCerts> {
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(i64::from(request.days));

    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name = name(&format!("gosight-injector CA ({})", request.namespace));
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = not_before;
    ca_params.not_after = not_after;
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?).context("signing the CA")?;

    let mut names = service_dns_names(&request.service, &request.namespace);
    names.extend(request.extra_dns.iter().cloned());
    names.extend(request.ips.iter().map(IpAddr::to_string));
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name = name(&format!("{}.{}.svc", request.service, request.namespace));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before;
    params.not_after = not_after;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca).context("signing the serving certificate")?;
    Ok(GeneratedCerts { ca_pem: ca.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    #[test]
    fn serving_cert_verifies_against_the_ca_for_every_name() {
        let request = CertRequest {
            service: "inj".into(),
            namespace: "ns".into(),
            extra_dns: vec!["extra.example".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            days: 30,
        };
        let certs = generate(&request).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(certs.ca_pem.as_bytes()).unwrap()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider).build().unwrap();
        let leaf = CertificateDer::from_pem_slice(certs.cert_pem.as_bytes()).unwrap();
        for name in ["inj.ns.svc", "inj.ns.svc.cluster.local", "extra.example", "127.0.0.1"] {
            let server_name = ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&leaf, &[], &server_name, &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let wrong = ServerName::try_from("other.ns.svc").unwrap();
        assert!(verifier.verify_server_cert(&leaf, &[], &wrong, &[], UnixTime::now()).is_err());
        let decoded = base64::engine::general_purpose::STANDARD.decode(certs.ca_bundle()).unwrap();
        assert_eq!(decoded, certs.ca_pem.as_bytes());
    }
}
