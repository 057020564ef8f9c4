//! A real control plane for the injector's integration tests: etcd and
//! kube-apiserver built from source by `scripts/install-kube.sh` (the directory
//! comes in `GOSIGHT_KUBE_DIR`), listening on loopback ports, with a client
//! certificate in `system:masters` for kubectl. Everything lives in a temporary
//! directory and both processes are killed when the [`Cluster`] is dropped.
//!
//! Without `GOSIGHT_KUBE_DIR` a test is skipped with a line saying so, or fails
//! when `CI=true`.

#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use serde_json::Value;

/// The binaries' directory, or None after printing why the test is skipped
/// (panics instead in CI).
pub fn kube_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GOSIGHT_KUBE_DIR").map(PathBuf::from);
    let ok = dir.as_ref().is_some_and(|d| ["kube-apiserver", "etcd", "kubectl"].iter().all(|b| d.join(b).is_file()));
    if ok {
        return dir;
    }
    let why =
        "GOSIGHT_KUBE_DIR with kube-apiserver, etcd and kubectl (KUBE_DIR=$(bash scripts/install-kube.sh | tail -1))";
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("prerequisite missing in CI: {why}");
    }
    eprintln!("SKIPPED: prerequisite missing: {why}");
    None
}

/// A free loopback port (bound and released; good enough on a test machine).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until something accepts TCP connections on the port.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A child process killed (and reaped) on drop.
pub struct Running(pub Child, pub &'static str);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Fields drop in order: the API server, then etcd, then the directory.
pub struct Cluster {
    apiserver: Running,
    etcd: Running,
    pub dir: tempfile::TempDir,
    pub kubectl: PathBuf,
    pub kubeconfig: PathBuf,
}

impl Cluster {
    /// Starts etcd and kube-apiserver and waits until the API server is ready.
    pub fn start(bin: &Path) -> Cluster {
        let started = Instant::now();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();

        let (etcd_client, etcd_peer) = (free_port(), free_port());
        let etcd_log = std::fs::File::create(d.join("etcd.log")).unwrap();
        let etcd = Command::new(bin.join("etcd"))
            .args(["--name", "test", "--data-dir"])
            .arg(d.join("etcd"))
            .args(["--listen-client-urls", &format!("http://127.0.0.1:{etcd_client}")])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{etcd_client}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{etcd_peer}")])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{etcd_peer}")])
            .args(["--initial-cluster", &format!("test=http://127.0.0.1:{etcd_peer}")])
            .args(["--unsafe-no-fsync", "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(etcd_log)
            .spawn()
            .expect("start etcd");
        let etcd = Running(etcd, "etcd");
        assert!(
            wait_for_port(etcd_client, Duration::from_secs(30)),
            "etcd did not listen: {}",
            log_tail(&d.join("etcd.log"))
        );

        // One CA signs the API server's serving certificate and the admin's client
        // certificate; a separate key signs service account tokens.
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "test-cluster-ca");
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let serving_key = KeyPair::generate().unwrap();
        let serving = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap()
            .signed_by(&serving_key, &ca)
            .unwrap();
        let admin_key = KeyPair::generate().unwrap();
        let mut admin_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        admin_params.distinguished_name.push(DnType::CommonName, "test-admin");
        admin_params.distinguished_name.push(DnType::OrganizationName, "system:masters");
        let admin = admin_params.signed_by(&admin_key, &ca).unwrap();
        let sa_key = KeyPair::generate().unwrap();
        for (name, text) in [
            ("ca.crt", ca.pem()),
            ("apiserver.crt", serving.pem()),
            ("apiserver.key", serving_key.serialize_pem()),
            ("sa.key", sa_key.serialize_pem()),
            ("sa.pub", sa_key.public_key_pem()),
        ] {
            std::fs::write(d.join(name), text).unwrap();
        }

        let port = free_port();
        let api_log = std::fs::File::create(d.join("apiserver.log")).unwrap();
        let apiserver = Command::new(bin.join("kube-apiserver"))
            .args(["--etcd-servers", &format!("http://127.0.0.1:{etcd_client}")])
            // Loopback only; the `kubernetes` Service's endpoints are not kept (they
            // may not be loopback, and nothing here uses them).
            .args([
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--endpoint-reconciler-type=none",
            ])
            .args(["--secure-port", &port.to_string()])
            .arg(format!("--cert-dir={}", d.join("apiserver-certs").display()))
            .arg(format!("--tls-cert-file={}", d.join("apiserver.crt").display()))
            .arg(format!("--tls-private-key-file={}", d.join("apiserver.key").display()))
            .arg(format!("--client-ca-file={}", d.join("ca.crt").display()))
            .arg(format!("--service-account-key-file={}", d.join("sa.pub").display()))
            .arg(format!("--service-account-signing-key-file={}", d.join("sa.key").display()))
            .args(["--service-account-issuer", "https://kubernetes.default.svc.cluster.local"])
            .args(["--service-cluster-ip-range", "10.96.0.0/16"])
            .args(["--authorization-mode", "RBAC"])
            .args(["--enable-priority-and-fairness=false", "--profiling=false", "--v=1"])
            .stdout(Stdio::null())
            .stderr(api_log)
            .spawn()
            .expect("start kube-apiserver");
        let apiserver = Running(apiserver, "kube-apiserver");

        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let kubeconfig = d.join("kubeconfig");
        let config = serde_json::json!({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{ "name": "test", "cluster": {
                "server": format!("https://127.0.0.1:{port}"),
                "certificate-authority-data": b64(&ca.pem()) } }],
            "users": [{ "name": "admin", "user": {
                "client-certificate-data": b64(&admin.pem()),
                "client-key-data": b64(&admin_key.serialize_pem()) } }],
            "contexts": [{ "name": "test", "context": { "cluster": "test", "user": "admin" } }],
        });
        std::fs::write(&kubeconfig, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let cluster = Cluster { kubectl: bin.join("kubectl"), kubeconfig, apiserver, etcd, dir };

        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let ready = cluster.kubectl(&["get", "--raw", "/readyz"]);
            // The default namespace is created by the API server shortly after /readyz.
            if ready.status.success() && cluster.kubectl(&["get", "namespace", "default"]).status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready: {}\n{}",
                String::from_utf8_lossy(&ready.stderr),
                log_tail(&cluster.dir.path().join("apiserver.log"))
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        eprintln!("cluster: etcd + kube-apiserver ready in {:.1}s", started.elapsed().as_secs_f64());
        cluster
    }

    /// Runs kubectl against the cluster.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        if let Some(input) = stdin {
            child.stdin.take().unwrap().write_all(input).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl and panics with its output when it fails; returns stdout, stderr.
    pub fn must(&self, args: &[&str], stdin: Option<&[u8]>) -> (String, String) {
        let out = self.kubectl_stdin(args, stdin);
        let (stdout, stderr) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "kubectl {args:?} failed:\n{stdout}\n{stderr}");
        (stdout, stderr)
    }

    /// Creates an object from JSON; returns kubectl's stderr (warnings).
    pub fn create(&self, object: &Value) -> String {
        self.must(&["create", "-f", "-"], Some(&serde_json::to_vec(object).unwrap())).1
    }

    /// `kubectl get -o json`.
    pub fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get", "-o", "json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.must(&all, None).0).expect("kubectl get json")
    }

    /// A namespace with these labels and the `default` service account (created by
    /// the controller manager in a real cluster; there is none here, and the
    /// ServiceAccount admission plugin refuses pods without it).
    pub fn namespace(&self, name: &str, labels: Value) {
        self.create(&serde_json::json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name, "labels": labels } }));
        self.create(&serde_json::json!({ "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "default", "namespace": name } }));
    }

    pub fn apiserver_log(&self) -> String {
        log_tail(&self.dir.path().join("apiserver.log"))
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
