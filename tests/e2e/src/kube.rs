//! A real single-node Kubernetes cluster for the end-to-end tests, started by
//! `scripts/kube-node.sh` (etcd, kube-apiserver, controller-manager, scheduler,
//! containerd + runc, kubelet, CNI bridge, kube-proxy), and the images the tests
//! run there, written by `scripts/build-images.sh` without a container engine.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::repo_root;

/// The running node; `down` (also on drop) stops it and removes its state.
pub struct Node {
    pub kubeconfig: PathBuf,
    pub node_ip: String,
    pub node_name: String,
    pub kube_dir: PathBuf,
    stopped: bool,
}

fn script(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo_root().join("scripts/kube-node.sh"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/kube-node.sh")
}

impl Node {
    /// Starts the node (stopping a previous one) and waits until it is Ready.
    pub fn up() -> Node {
        let out = script(&["up"]);
        assert!(out.status.success(), "kube-node.sh up failed (its logs: /var/lib/gosight-node/logs)");
        let text = String::from_utf8_lossy(&out.stdout);
        let vars: HashMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        let kube_dir = Command::new("bash").arg(repo_root().join("scripts/install-kube.sh")).output().unwrap();
        let kube_dir = String::from_utf8_lossy(&kube_dir.stdout).lines().last().unwrap().trim().to_string();
        Node {
            kubeconfig: PathBuf::from(vars["KUBECONFIG"]),
            node_ip: vars["NODE_IP"].to_string(),
            node_name: vars["NODE_NAME"].to_string(),
            kube_dir: PathBuf::from(kube_dir),
            stopped: false,
        }
    }

    /// Builds an image set (`pause`, `gosight`, `apps`) and imports it.
    pub fn load_images(&self, set: &str) {
        let out = Command::new("bash")
            .arg(repo_root().join("scripts/build-images.sh"))
            .arg(set)
            .stderr(Stdio::inherit())
            .output()
            .expect("build-images.sh");
        assert!(out.status.success(), "building the {set} images failed");
        let archives: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        let mut args = vec!["load"];
        args.extend(archives.iter().map(String::as_str));
        assert!(script(&args).status.success(), "loading {archives:?} failed");
    }

    pub fn kubectl_in(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(self.kube_dir.join("kubectl"));
        cmd.arg("--kubeconfig").arg(&self.kubeconfig).args(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl");
        if let Some(text) = stdin {
            child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// Runs kubectl; panics with its output when it fails. Returns (stdout, stderr).
    pub fn must(&self, args: &[&str], stdin: Option<&str>) -> (String, String) {
        let out = self.kubectl_in(args, stdin);
        let (o, e) =
            (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned());
        assert!(out.status.success(), "kubectl {args:?} failed:\n{o}\n{e}");
        (o, e)
    }

    pub fn kubectl(&self, args: &[&str]) -> String {
        self.must(args, None).0
    }

    pub fn apply(&self, yaml: &str) -> String {
        self.must(&["apply", "-f", "-"], Some(yaml)).1
    }

    pub fn get(&self, args: &[&str]) -> Value {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl(&all)).expect("kubectl get -o json")
    }

    /// Polls `what` until it returns Some, or panics after `timeout` with `describe`.
    pub fn wait<T>(&self, timeout: Duration, describe: &str, mut what: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = what() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {describe}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Running pods of a namespace matching a label selector.
    pub fn pods(&self, ns: &str, selector: &str) -> Vec<Value> {
        let v = self.get(&["pods", "-n", ns, "-l", selector]);
        v["items"].as_array().cloned().unwrap_or_default()
    }

    pub fn logs(&self, ns: &str, pod: &str, container: &str) -> String {
        let out = self.kubectl_in(&["logs", "-n", ns, pod, "-c", container], None);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn down(&mut self) {
        if !self.stopped {
            self.stopped = true;
            let _ = script(&["down"]);
        }
    }
}

impl Drop for Node {
    /// Stops the node, unless GOSIGHT_KEEP_NODE=1 keeps it for a look after a failure.
    fn drop(&mut self) {
        if std::env::var("GOSIGHT_KEEP_NODE").is_ok_and(|v| v == "1") {
            eprintln!("GOSIGHT_KEEP_NODE=1: the node keeps running (scripts/kube-node.sh down stops it)");
            return;
        }
        self.down();
    }
}

/// A container's memory from its cgroup v1 memory controller, from its
/// `containerd://<id>`: (resident now: rss + mapped files, peak usage).
pub fn container_memory(pod_uid: &str, container_id: &str) -> Option<(u64, u64)> {
    let id = container_id.rsplit("//").next()?;
    for qos in ["", "burstable/", "besteffort/"] {
        let dir = PathBuf::from(format!("/sys/fs/cgroup/memory/kubepods/{qos}pod{pod_uid}/{id}"));
        if dir.exists() {
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok()?.trim().parse::<u64>().ok();
            // Without the page cache of the files gosight read (its binaries' ELF).
            let stat = std::fs::read_to_string(dir.join("memory.stat")).ok()?;
            let field =
                |k: &str| stat.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(' ')?.trim().parse::<u64>().ok());
            let rss = field("total_rss")? + field("total_mapped_file").unwrap_or(0);
            return Some((rss, read("memory.max_usage_in_bytes")?));
        }
    }
    None
}
