//! gosight in real pods: a real single-node Kubernetes (scripts/kube-node.sh), the
//! injector deployed with `kubectl apply -k deploy/` and called by the API server
//! over the cluster network, workloads written as users write them (Deployments
//! and Services), and a real collector on the node receiving what the injected
//! sidecars export. The sidecar runs with exactly the securityContext the injector
//! writes, under the runtime's default seccomp profile.
//!
//! One test, in steps, because the node takes a minute to start:
//! 1. a client pod calls web (HTTP, 2 replicas) → greeter (gRPC) through the
//!    Services with a traceparent it chose: one trace across the pods, every
//!    parent right, k8s.* resource attributes, nothing from the non-Go container or
//!    the Go container the containers annotation leaves out;
//! 2. the app container's process is killed: the restarted app is traced again;
//! 3. `kubectl delete pod`: gosight's last line accounts for every span and its
//!    pins are gone from the node's bpffs;
//! 4. a namespace enforcing Pod Security `baseline`: admitted, not injected, with
//!    the reason as a warning and an annotation;
//! 5. the sidecar's memory, steady and peak, printed for BENCHMARKS.md.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use gosight_e2e::collector::{require_collector, Collector, Span};
use gosight_e2e::kube::{container_memory, Node};
use gosight_e2e::{repo_root, require, serial};
use serde_json::Value;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_AFTER_RESTART: &str = "5cf92f3577b34da6a3ce929d0e0e4737";

fn workloads() -> String {
    r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {gosight.dev/inject: "true"}
---
apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: shop}
spec:
  selector: {app: greeter}
  ports: [{name: grpc, port: 50051, targetPort: 50051}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: side, port: 8090, targetPort: 8090}
  - {name: notgo, port: 8091, targetPort: 8091}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: greeter, namespace: shop}
spec:
  replicas: 1
  selector: {matchLabels: {app: greeter}}
  template:
    metadata: {labels: {app: greeter}}
    spec:
      containers:
      - name: greeter
        image: gosight-test/grpc-apps:1
        imagePullPolicy: Never
        command: ["/app/grpc-server", "-addr", "0.0.0.0:50051"]
        readinessProbe: {tcpSocket: {port: 50051}, periodSeconds: 1}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
      annotations: {gosight.dev/containers: web}
    spec:
      containers:
      - name: web
        image: gosight-test/grpc-apps:1
        imagePullPolicy: Never
        command: ["/app/grpc-server", "-addr", "127.0.0.1:0", "-http-addr", "0.0.0.0:8080",
                  "-grpc-target", "$(GREETER_SERVICE_HOST):$(GREETER_SERVICE_PORT)"]
        readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
      - name: side
        image: gosight-test/httpserver:1
        imagePullPolicy: Never
        command: ["/app/httpserver", "-addr", "0.0.0.0:8090"]
      - name: notgo
        image: gosight-test/notgo:1
        imagePullPolicy: Never
        command: ["/app/notgo", "8091"]
"#
    .to_string()
}

/// A pod in the (labelled) namespace that opts out, calling through the Services.
fn client_pod(name: &str, trace: &str, n: u32) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: shop
  annotations: {{gosight.dev/inject: "false"}}
spec:
  restartPolicy: Never
  containers:
  - name: client
    image: gosight-test/rawclient:1
    imagePullPolicy: Never
    command: ["/bin/sh", "-c"]
    args:
    - >-
      /app/rawclient -url "http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/grpc" -n {n} -keepalive=false
      -interval 100ms -print-body -header "traceparent: 00-{trace}-{{i}}-01" &&
      /app/rawclient -url "http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT_SIDE/health" -n 3 -keepalive=false &&
      /app/rawclient -url "http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT_NOTGO/" -n 3 -keepalive=false -print-body
"#
    )
}

fn name(v: &Value) -> String {
    v["metadata"]["name"].as_str().unwrap().to_string()
}

fn run_client(node: &Node, pod: &str, trace: &str, n: u32) -> String {
    node.apply(&client_pod(pod, trace, n));
    let phase = node.wait(Duration::from_secs(90), "the client pod to finish", || {
        let p = node.get(&["pod", "-n", "shop", pod]);
        let phase = p["status"]["phase"].as_str().unwrap_or_default().to_string();
        (phase == "Succeeded" || phase == "Failed").then_some(phase)
    });
    let out = node.logs("shop", pod, "client");
    assert_eq!(phase, "Succeeded", "client pod failed:\n{out}");
    out
}

/// Waits until a pod's sidecar has attached to (at least) `n` targets.
fn wait_attached(node: &Node, pod: &str, n: usize) -> String {
    node.wait(Duration::from_secs(60), &format!("gosight in {pod} to attach {n} time(s)"), || {
        let logs = node.logs("shop", pod, "gosight");
        (logs.matches("context propagation: target registered").count() >= n).then_some(logs)
    })
}

fn span_ids(spans: &[Span]) -> HashMap<&str, &Span> {
    spans.iter().map(|s| (s.span_id.as_str(), s)).collect()
}

/// gosight's pin directories on the node's bpffs, by pid-namespace inode.
fn pins() -> HashSet<String> {
    std::fs::read_dir("/sys/fs/bpf")
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|n: &String| n.starts_with("gosight-"))
        .collect()
}

/// The node's pid of a pod's gosight, found by the pod UID in its cgroup.
fn host_pid_of_sidecar(pod_uid: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        (comm.trim() == "gosight" && cg.contains(pod_uid)).then_some(pid)
    })
}

#[test]
fn injected_sidecar_traces_real_pods() {
    let _guard = serial();
    // SAFETY: geteuid has no preconditions.
    if !require("root (a Kubernetes node)", unsafe { libc::geteuid() } == 0) {
        return;
    }
    let Some(otelcol) = require_collector() else { return };
    let mut node = Node::up();
    node.load_images("gosight");
    node.load_images("apps");
    let collector = Collector::start_on(&otelcol, "0.0.0.0");
    let http_port = collector.http_endpoint.rsplit(':').next().unwrap().to_string();
    let otlp = format!("http://{}:{http_port}", node.node_ip);

    // The injector, exactly as the README's "try it on a cluster" says.
    let certs = gosight_e2e::tmpdir("kube-certs");
    let injector = repo_root().join("target/release/injector");
    let out = std::process::Command::new(&injector).args(["certs", "--out-dir"]).arg(&certs).output().unwrap();
    assert!(out.status.success());
    let ca = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string();
    // The collector's address goes in with a kustomize overlay over deploy/, as a
    // user's own settings would.
    let overlay = repo_root().join("target/kube-overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            r#"resources: [../../deploy]
patches:
- patch: |-
    apiVersion: apps/v1
    kind: Deployment
    metadata: {{name: gosight-injector, namespace: gosight-system}}
    spec:
      template:
        spec:
          containers:
          - name: injector
            env:
            - {{name: GOSIGHT_OTLP_ENDPOINT, value: "{otlp}"}}
"#
        ),
    )
    .unwrap();
    node.kubectl(&["apply", "-k", overlay.to_str().unwrap()]);
    node.kubectl(&[
        "-n",
        "gosight-system",
        "create",
        "secret",
        "tls",
        "gosight-injector-tls",
        "--cert",
        certs.join("tls.crt").to_str().unwrap(),
        "--key",
        certs.join("tls.key").to_str().unwrap(),
    ]);
    let patch = (0..4)
        .map(|i| format!(r#"{{"op":"add","path":"/webhooks/{i}/clientConfig/caBundle","value":"{ca}"}}"#))
        .collect::<Vec<_>>()
        .join(",");
    node.kubectl(&[
        "patch",
        "mutatingwebhookconfiguration",
        "gosight-injector",
        "--type=json",
        "-p",
        &format!("[{patch}]"),
    ]);
    node.kubectl(&["-n", "gosight-system", "rollout", "status", "deployment/gosight-injector", "--timeout=120s"]);

    // 1. The workloads and one trace across the pods. The webhook is called through
    // its Service, which the API server can reach a moment after the rollout:
    // until a server-side dry run of a pod comes back injected, a pod created now
    // would be admitted without the sidecar (failurePolicy: Ignore).
    let yaml = workloads();
    let (namespace, rest) = yaml.split_once("---").unwrap();
    node.apply(namespace);
    let probe = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": "shop"},
        "spec": {"containers": [{"name": "app", "image": "gosight-test/httpserver:1"}]}}"#;
    node.wait(Duration::from_secs(60), "the webhook to inject (server-side dry run)", || {
        let out = node.kubectl_in(&["create", "--dry-run=server", "-o", "json", "-f", "-"], Some(probe));
        String::from_utf8_lossy(&out.stdout).contains("\"name\": \"gosight\"").then_some(())
    });
    node.apply(rest);
    for d in ["greeter", "web"] {
        node.kubectl(&["-n", "shop", "rollout", "status", &format!("deployment/{d}"), "--timeout=180s"]);
    }
    let web_pods = node.pods("shop", "app=web");
    let greeter_pods = node.pods("shop", "app=greeter");
    assert_eq!(web_pods.len(), 2);
    for p in web_pods.iter().chain(&greeter_pods) {
        let init = p["spec"]["initContainers"].as_array().cloned().unwrap_or_default();
        assert!(
            init.iter().any(|c| c["name"] == "gosight"),
            "{} was not injected: {}",
            name(p),
            p["metadata"]["annotations"]
        );
        let logs = wait_attached(&node, &name(p), 1);
        assert!(logs.contains("probe attached"), "{logs}");
        assert!(!logs.contains("stands down: probe net_http_server"), "{logs}");
        assert!(logs.contains("cgroup=/host/sys/fs/cgroup/unified/kubepods/"), "the pod's cgroup found: {logs}");
        assert!(!logs.contains("lockdown=\"unknown"), "lockdown told with the sidecar's privileges: {logs}");
    }
    // The sidecar as written by the injector: no test-only privileges.
    let sidecar =
        web_pods[0]["spec"]["initContainers"].as_array().unwrap().iter().find(|c| c["name"] == "gosight").unwrap();
    let sc = &sidecar["securityContext"];
    assert_eq!(sc["capabilities"]["add"], serde_json::json!(["SYS_ADMIN", "SYS_PTRACE"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(sc["privileged"], false);

    let out = run_client(&node, "client", TRACE, 20);
    assert_eq!(out.matches("\"status\":200").count(), 26, "{out}");
    assert!(out.contains("not go"), "{out}");
    assert!(
        out.contains(&format!(r#"incoming_traceparent\":\"00-{TRACE}-"#)),
        "the app saw the client's header: {out}"
    );
    assert_eq!(out.matches(r#"\"status\":\"SERVING\""#).count(), 20, "the greeter answered every call: {out}");

    let spans = collector.wait_for(Duration::from_secs(60), |s| {
        s.iter().filter(|x| x.trace_id == TRACE && x.scope.contains("grpc") && x.kind == 2).count() >= 20
    });
    let trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == TRACE).collect();
    let by_id = span_ids(&spans);
    let servers: Vec<&&Span> = trace.iter().filter(|s| s.kind == 2 && s.name == "GET /grpc").collect();
    assert_eq!(servers.len(), 20, "one HTTP server span per request: {trace:#?}");
    let mut pods_seen = HashSet::new();
    for (i, s) in servers.iter().enumerate() {
        assert!(s.parent_span_id.starts_with("00000000000000"), "the client's span ids are request numbers: {s:?}");
        assert_eq!(s.resource_str("k8s.namespace.name"), Some("shop"));
        assert_eq!(s.resource_str("k8s.deployment.name"), Some("web"));
        assert_eq!(s.resource_str("k8s.node.name"), Some(node.node_name.as_str()));
        assert_eq!(s.resource_str("k8s.container.name"), Some("web"));
        assert_eq!(s.resource_str("service.name"), Some("web"), "service.name as the injector derives it");
        let pod = s.resource_str("k8s.pod.name").unwrap();
        assert!(pod.starts_with("web-") && !pod.contains("$("), "expanded pod name: {pod}");
        pods_seen.insert(pod.to_string());
        // Its gRPC client child, and the greeter's server span under that.
        let client = trace
            .iter()
            .find(|c| c.kind == 3 && c.parent_span_id == s.span_id)
            .unwrap_or_else(|| panic!("request {i}: no gRPC client span under {s:?}"));
        assert_eq!(client.resource_str("k8s.pod.name"), Some(pod));
        let server = trace
            .iter()
            .find(|g| g.kind == 2 && g.parent_span_id == client.span_id)
            .unwrap_or_else(|| panic!("request {i}: no greeter span under {client:?}"));
        assert_eq!(server.resource_str("k8s.deployment.name"), Some("greeter"));
        assert_eq!(server.resource_str("service.name"), Some("greeter"));
        assert_eq!(server.name, "grpc.health.v1.Health/Check");
        assert!(
            server.start_ns >= client.start_ns && server.end_ns <= client.end_ns,
            "times nest: {client:?} {server:?}"
        );
        assert!(client.start_ns >= s.start_ns && client.end_ns <= s.end_ns, "times nest: {s:?} {client:?}");
        assert!(by_id.contains_key(client.parent_span_id.as_str()));
    }
    let all_web: HashSet<String> = web_pods.iter().map(name).collect();
    assert_eq!(pods_seen, all_web, "spans from every web replica");
    // Nothing from the Go container left out by the annotation, nor from notgo.
    assert!(
        !spans.iter().any(|s| s.attr_str("url.path") == Some("/health") || s.attr_int("server.port") == Some(8090)),
        "the 'side' container was traced"
    );
    assert!(!spans.iter().any(|s| s.attr_int("server.port") == Some(8091)), "the non-Go container was traced");
    for p in &web_pods {
        let logs = node.logs("shop", &name(p), "gosight");
        assert_eq!(logs.matches("target found").count(), 1, "only the web container's process: {logs}");
        assert!(logs.contains("exe=/app/grpc-server"), "{logs}");
    }

    // 5 (measured while everything runs). The sidecar's memory, steady.
    let mut memory = Vec::new();
    for p in web_pods.iter().chain(&greeter_pods) {
        let status = p["status"]["initContainerStatuses"].as_array().unwrap();
        let id = status.iter().find(|c| c["name"] == "gosight").unwrap()["containerID"].as_str().unwrap();
        let uid = p["metadata"]["uid"].as_str().unwrap();
        let (now, peak) = container_memory(uid, id).expect("the sidecar's memory cgroup");
        // The process's own peak resident set (VmHWM), attach included.
        let pid = host_pid_of_sidecar(uid).expect("the sidecar's process");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let hwm_kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        memory.push((name(p), now, hwm_kb * 1024, peak));
    }
    for (pod, now, hwm, peak) in &memory {
        println!(
            "sidecar memory: pod={pod} steady_resident_bytes={now} peak_resident_bytes={hwm} cgroup_peak_with_page_cache_bytes={peak}"
        );
        // The injector's defaults (deploy/deployment.yaml): request 64Mi, limit 256Mi.
        assert!(*hwm < 256 << 20, "the sidecar's peak resident memory is over its 256Mi limit");
    }

    // 2. The app container's process dies; the kubelet restarts it; traced again.
    let victim = name(&web_pods[0]);
    node.must(&["exec", "-n", "shop", &victim, "-c", "web", "--", "/bin/sh", "-c", "kill $(pidof grpc-server)"], None);
    node.wait(Duration::from_secs(60), "the web container to restart", || {
        let p = node.get(&["pod", "-n", "shop", &victim]);
        let st = p["status"]["containerStatuses"].as_array()?.iter().find(|c| c["name"] == "web")?.clone();
        (st["restartCount"].as_i64()? >= 1 && st["ready"] == true).then_some(())
    });
    let logs = wait_attached(&node, &victim, 2);
    assert!(logs.contains("target exited") || logs.matches("target found").count() == 2, "{logs}");
    run_client(&node, "client-after-restart", TRACE_AFTER_RESTART, 20);
    let spans = collector.wait_for(Duration::from_secs(60), |s| {
        s.iter().any(|x| {
            x.trace_id == TRACE_AFTER_RESTART && x.kind == 2 && x.resource_str("k8s.pod.name") == Some(victim.as_str())
        })
    });
    let after: Vec<&Span> = spans
        .iter()
        .filter(|s| s.trace_id == TRACE_AFTER_RESTART && s.resource_str("k8s.pod.name") == Some(victim.as_str()))
        .collect();
    assert!(after.iter().any(|s| s.kind == 2 && s.name == "GET /grpc"), "the restarted app is traced again");

    // 3. kubectl delete pod: the last line accounts for every span; no pins left.
    let doomed = &web_pods[1];
    let doomed_name = name(doomed);
    let uid = doomed["metadata"]["uid"].as_str().unwrap().to_string();
    let host_pid = host_pid_of_sidecar(&uid).expect("the sidecar's process on the node");
    let pidns = std::fs::read_link(format!("/proc/{host_pid}/ns/pid")).unwrap().to_string_lossy().into_owned();
    let pidns = pidns.trim_start_matches("pid:[").trim_end_matches(']').to_string();
    let log_file = gosight_e2e::tmpdir("kube-delete").join("gosight.log");
    let follower = std::process::Command::new(node.kube_dir.join("kubectl"))
        .arg("--kubeconfig")
        .arg(&node.kubeconfig)
        .args(["logs", "-f", "-n", "shop", &doomed_name, "-c", "gosight"])
        .stdout(std::fs::File::create(&log_file).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    node.kubectl(&["delete", "pod", "-n", "shop", &doomed_name, "--timeout=60s"]);
    let mut follower = follower;
    let _ = follower.wait();
    let log = std::fs::read_to_string(&log_file).unwrap();
    let last = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.contains("span export shut down"), "the last line accounts for the spans: {last}\n{log}");
    assert!(last.contains("dropped_queue_full=0 dropped_export_failed=0"), "{last}");
    let exported: usize = last.split("exported=").nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    let received =
        collector.spans().iter().filter(|s| s.resource_str("k8s.pod.name") == Some(doomed_name.as_str())).count();
    assert_eq!(exported, received, "every span gosight exported reached the collector");
    assert!(!pins().iter().any(|p| p.starts_with(&format!("gosight-{pidns}-"))), "pins left: {:?}", pins());

    // 4. A namespace enforcing baseline: admitted, not injected, reason visible.
    node.apply(
        r#"
apiVersion: v1
kind: Namespace
metadata:
  name: strict
  labels: {gosight.dev/inject: "true", pod-security.kubernetes.io/enforce: baseline}
"#,
    );
    let (_, warnings) = node.must(
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: Pod
metadata: {name: app, namespace: strict}
spec:
  containers:
  - {name: app, image: gosight-test/httpserver:1, imagePullPolicy: Never, command: ["/app/httpserver", "-addr", "0.0.0.0:8080"]}
"#,
        ),
    );
    assert!(warnings.contains("gosight: sidecar not injected"), "the reason as a warning: {warnings}");
    assert!(warnings.contains("baseline"), "{warnings}");
    let pod = node.get(&["pod", "-n", "strict", "app"]);
    assert!(pod["spec"]["initContainers"].is_null(), "not injected: {}", pod["spec"]);
    let reason = pod["metadata"]["annotations"]["gosight.dev/not-injected"].as_str().unwrap_or_default();
    assert!(reason.contains("Pod Security"), "the reason on the pod: {}", pod["metadata"]);

    drop(collector);
    node.down();
}
