//! The injector against a real kube-apiserver and etcd: the shipped
//! MutatingWebhookConfiguration (pointed at a local `injector serve` by URL),
//! pods created in labelled and unlabelled namespaces and read back, the patch
//! accepted by the API server, pods still created with the injector stopped, and
//! `kubectl apply -k deploy/ --dry-run=server`.
//!
//! Needs `GOSIGHT_KUBE_DIR` (from `scripts/install-kube.sh`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, kube_dir, wait_for_port, Cluster, Running};
use serde_json::{json, Value};

const SIDECAR_IMAGE: &str = "registry.example/gosight:test";
const OTLP_ENDPOINT: &str = "http://collector.observability.svc:4318";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// `injector certs` for 127.0.0.1, then `injector serve` on a free port.
fn start_injector(dir: &Path) -> (Running, u16, String) {
    let injector = env!("CARGO_BIN_EXE_injector");
    let certs = dir.join("injector-certs");
    let out = Command::new(injector).args(["certs", "--ip", "127.0.0.1", "--out-dir"]).arg(&certs).output().unwrap();
    assert!(out.status.success(), "injector certs: {}", String::from_utf8_lossy(&out.stderr));
    let ca_bundle = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().trim().to_string();
    let port = free_port();
    let log = std::fs::File::create(dir.join("injector.log")).unwrap();
    let child = Command::new(injector)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-cert")
        .arg(certs.join("tls.crt"))
        .arg("--tls-key")
        .arg(certs.join("tls.key"))
        .env("GOSIGHT_SIDECAR_IMAGE", SIDECAR_IMAGE)
        .env("GOSIGHT_OTLP_ENDPOINT", OTLP_ENDPOINT)
        .env("GOSIGHT_OTLP_PROTOCOL", "http/protobuf")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    assert!(wait_for_port(port, Duration::from_secs(20)), "injector did not listen");
    (Running(child, "injector"), port, ca_bundle)
}

/// The shipped webhook configuration, each entry pointed at the local injector
/// by URL (the shipped one names the in-cluster Service) with its CA.
fn webhook_configuration(cluster: &Cluster, port: u16, ca_bundle: &str) -> Value {
    let file = repo_root().join("deploy/mutatingwebhookconfiguration.yaml");
    let (text, _) = cluster.must(&["create", "--dry-run=client", "-o", "json", "-f", file.to_str().unwrap()], None);
    let mut config: Value = serde_json::from_str(&text).unwrap();
    for webhook in config["webhooks"].as_array_mut().unwrap() {
        let path = webhook["clientConfig"]["service"]["path"].as_str().unwrap().to_string();
        webhook["clientConfig"] = json!({ "url": format!("https://127.0.0.1:{port}{path}"), "caBundle": ca_bundle });
    }
    config
}

fn app_container(name: &str) -> Value {
    json!({
        "name": name,
        "image": "registry.example/shop/api:1.4.2",
        "command": ["/app/api"],
        "args": ["--listen", ":8080"],
        "env": [{ "name": "MODE", "value": "prod" }],
        "ports": [{ "name": "http", "containerPort": 8080 }],
        "resources": { "requests": { "cpu": "100m", "memory": "128Mi" }, "limits": { "memory": "256Mi" } },
        "readinessProbe": { "httpGet": { "path": "/ready", "port": 8080 } },
        "securityContext": { "runAsUser": 1000, "allowPrivilegeEscalation": false }
    })
}

/// A pod as the Deployment controller would create it: generateName, the
/// pod-template-hash label and a ReplicaSet owner.
fn deployment_pod(namespace: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "checkout-7d9f6c5b8-", "namespace": namespace,
            "labels": { "app": "checkout", "pod-template-hash": "7d9f6c5b8" },
            "ownerReferences": [{ "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f6c5b8",
                                  "uid": "5c0a4a55-3f43-4f0c-9a7e-2f4f0c6f1c11", "controller": true, "blockOwnerDeletion": true }]
        },
        "spec": { "containers": [app_container("api")] }
    })
}

fn plain_pod(namespace: &str, name: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": namespace, "annotations": annotations },
        "spec": { "containers": [app_container("api")] }
    })
}

/// Creates the pod and reads it back; returns (pod, kubectl's warnings).
fn create_and_read(cluster: &Cluster, pod: &Value) -> (Value, String) {
    let namespace = pod["metadata"]["namespace"].as_str().unwrap();
    let (out, warnings) = cluster.must(&["create", "-f", "-", "-o", "name"], Some(&serde_json::to_vec(pod).unwrap()));
    let name = out.trim().trim_start_matches("pod/").to_string();
    (cluster.get(&["-n", namespace, "pod", &name]), warnings)
}

fn sidecar(pod: &Value) -> Option<&Value> {
    let lists = [&pod["spec"]["initContainers"], &pod["spec"]["containers"]];
    lists.into_iter().filter_map(Value::as_array).flatten().find(|c| c["name"] == "gosight")
}

fn env_of(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let value = match e.get("value") {
                Some(v) => v.as_str().unwrap().to_string(),
                None => format!(
                    "fieldRef {} {}",
                    e["valueFrom"]["fieldRef"]["apiVersion"], e["valueFrom"]["fieldRef"]["fieldPath"]
                ),
            };
            (e["name"].as_str().unwrap().to_string(), value)
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn downward() -> Vec<(&'static str, &'static str)> {
    vec![
        ("K8S_NODE_NAME", "fieldRef \"v1\" \"spec.nodeName\""),
        ("K8S_NAMESPACE_NAME", "fieldRef \"v1\" \"metadata.namespace\""),
        ("K8S_POD_NAME", "fieldRef \"v1\" \"metadata.name\""),
        ("K8S_POD_UID", "fieldRef \"v1\" \"metadata.uid\""),
    ]
}

/// The JSON with every `kube-api-access-<random>` name made `kube-api-access-*`.
fn without_token_suffix(value: &Value) -> Value {
    let text = serde_json::to_string(value).unwrap();
    let mut out = String::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("kube-api-access-") {
        out.push_str(&rest[..at]);
        out.push_str("kube-api-access-*");
        rest = rest[at + "kube-api-access-".len()..].trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    }
    out.push_str(rest);
    serde_json::from_str(&out).unwrap()
}

/// Waits until the API server calls the webhook (its configuration is picked up
/// asynchronously after it is created).
fn wait_for_webhook(cluster: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    for attempt in 0.. {
        let (pod, _) = create_and_read(cluster, &plain_pod("traced", &format!("probe-{attempt}"), json!({})));
        cluster
            .must(&["delete", "-n", "traced", "pod", pod["metadata"]["name"].as_str().unwrap(), "--wait=false"], None);
        if sidecar(&pod).is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "the API server never called the webhook:\n{}", cluster.apiserver_log());
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn webhook_injects_through_a_real_api_server() {
    let Some(bin) = kube_dir() else { return };
    let started = Instant::now();
    let cluster = Cluster::start(&bin);
    let (injector, port, ca_bundle) = start_injector(cluster.dir.path());
    cluster.create(&webhook_configuration(&cluster, port, &ca_bundle));
    cluster.namespace("traced", json!({ "gosight.dev/inject": "true" }));
    cluster.namespace("plain", json!({}));
    cluster.namespace("never", json!({ "gosight.dev/inject": "false" }));
    cluster.namespace(
        "baseline",
        json!({ "gosight.dev/inject": "true", "pod-security.kubernetes.io/enforce": "baseline" }),
    );
    // The injector's own namespace, even labelled, is never injected.
    cluster.namespace("gosight-system", json!({ "gosight.dev/inject": "true" }));
    wait_for_webhook(&cluster);

    // 1. Namespace opt-in, a Deployment's pod: the sidecar exactly as specified.
    let (pod, _) = create_and_read(&cluster, &deployment_pod("traced"));
    let (baseline_pod, _) = create_and_read(&cluster, &deployment_pod("plain"));
    assert!(sidecar(&baseline_pod).is_none(), "unlabelled namespace, no annotation: not injected");
    let gosight = sidecar(&pod).expect("sidecar injected in a labelled namespace");
    assert_eq!(pod["spec"]["initContainers"].as_array().unwrap().len(), 1, "native sidecar");
    assert_eq!(gosight["restartPolicy"], "Always");
    assert_eq!(gosight["image"], SIDECAR_IMAGE);
    assert_eq!(pod["spec"]["shareProcessNamespace"], true);
    assert_eq!(pod["metadata"]["annotations"]["gosight.dev/injected"], env!("CARGO_PKG_VERSION"));
    let attributes = "k8s.namespace.name=$(K8S_NAMESPACE_NAME),k8s.pod.name=$(K8S_POD_NAME),k8s.pod.uid=$(K8S_POD_UID),\
k8s.node.name=$(K8S_NODE_NAME),k8s.container.name=api,k8s.replicaset.name=checkout-7d9f6c5b8,k8s.deployment.name=checkout,\
service.instance.id=$(K8S_NAMESPACE_NAME).$(K8S_POD_NAME).api";
    let mut expected = downward();
    expected.extend([
        ("OTEL_SERVICE_NAME", "checkout"),
        ("OTEL_RESOURCE_ATTRIBUTES", attributes),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP_ENDPOINT),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("GOSIGHT_TARGET_CONTAINERS", "api"),
        ("GOSIGHT_BPFFS", "/sys/fs/bpf"),
        ("GOSIGHT_PROPAGATION", "on"),
    ]);
    assert_eq!(env_of(gosight), pairs(&expected));
    assert_eq!(
        gosight["securityContext"],
        json!({ "runAsUser": 0, "runAsGroup": 0, "runAsNonRoot": false, "privileged": false, "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": { "add": ["SYS_ADMIN", "SYS_PTRACE"], "drop": ["ALL"] },
                "seccompProfile": { "type": "RuntimeDefault" } })
    );
    assert_eq!(
        gosight["resources"],
        json!({ "requests": { "cpu": "50m", "memory": "64Mi" }, "limits": { "cpu": "500m", "memory": "256Mi" } })
    );
    assert_eq!(
        gosight["volumeMounts"],
        json!([{ "name": "gosight-bpffs", "mountPath": "/sys/fs/bpf" },
               { "name": "gosight-no-api-token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true },
               { "name": "gosight-host-cgroup", "mountPath": "/host/sys/fs/cgroup", "readOnly": true }]),
        "no service account token: the ServiceAccount plugin, re-run after the webhook, leaves the sidecar alone"
    );
    assert!(gosight.get("command").is_none(), "the image's entrypoint: gosight finds the pod's cgroup itself");
    for c in pod["spec"]["containers"].as_array().unwrap() {
        assert!(
            c["env"].as_array().unwrap().contains(&json!({ "name": "GOSIGHT_CONTAINER_NAME", "value": c["name"] })),
            "every app container is marked with its name: {c}"
        );
    }
    let volumes: Vec<&Value> = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["name"].as_str().unwrap().starts_with("gosight-"))
        .collect();
    assert_eq!(
        volumes,
        [
            &json!({ "name": "gosight-bpffs", "hostPath": { "path": "/sys/fs/bpf", "type": "Directory" } }),
            &json!({ "name": "gosight-no-api-token", "emptyDir": {} }),
            &json!({ "name": "gosight-host-cgroup", "hostPath": { "path": "/sys/fs/cgroup", "type": "Directory" } })
        ]
    );
    // The app's container is exactly what the same pod gets without the injector
    // (but for the random suffix of the service account token's volume, and the
    // one variable the injector appends).
    let mut marked = without_token_suffix(&baseline_pod["spec"]["containers"]);
    for c in marked.as_array_mut().unwrap() {
        let name = c["name"].clone();
        c["env"].as_array_mut().unwrap().push(json!({ "name": "GOSIGHT_CONTAINER_NAME", "value": name }));
    }
    assert_eq!(without_token_suffix(&pod["spec"]["containers"]), marked);
    assert!(pod["metadata"]["name"].as_str().unwrap().starts_with("checkout-7d9f6c5b8-"));

    // 2. Opt-in by annotation in an unlabelled namespace; two containers, one traced,
    //    a StatefulSet owner, a target executable, propagation off.
    let mut annotated = plain_pod(
        "plain",
        "orders-0",
        json!({ "gosight.dev/inject": "true", "gosight.dev/containers": "api", "gosight.dev/target-exe": "/app/*",
                "gosight.dev/propagation": "off" }),
    );
    annotated["metadata"]["labels"] = json!({ "app.kubernetes.io/name": "orders" });
    annotated["metadata"]["ownerReferences"] = json!([{ "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "orders", "uid": "0f7ee0a8-7c2b-4b8e-a0c9-5a8b5e8f1d22", "controller": true }]);
    annotated["spec"]["containers"].as_array_mut().unwrap().push(app_container("worker"));
    let (pod, _) = create_and_read(&cluster, &annotated);
    let gosight = sidecar(&pod).expect("annotated pod injected");
    let mut expected = downward();
    expected.extend([
        ("OTEL_SERVICE_NAME", "orders"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "k8s.namespace.name=$(K8S_NAMESPACE_NAME),k8s.pod.name=$(K8S_POD_NAME),k8s.pod.uid=$(K8S_POD_UID),\
k8s.node.name=$(K8S_NODE_NAME),k8s.container.name=api,k8s.statefulset.name=orders,\
service.instance.id=$(K8S_NAMESPACE_NAME).$(K8S_POD_NAME).api",
        ),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", OTLP_ENDPOINT),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_GO_AUTO_TARGET_EXE", "/app/*"),
        ("GOSIGHT_TARGET_CONTAINERS", "api"),
        ("GOSIGHT_BPFFS", "/sys/fs/bpf"),
        ("GOSIGHT_PROPAGATION", "off"),
    ]);
    assert_eq!(env_of(gosight), pairs(&expected));
    assert_eq!(gosight["securityContext"]["capabilities"]["add"], json!(["SYS_ADMIN", "SYS_PTRACE"]));
    assert!(gosight.get("command").is_none(), "no launcher without propagation");
    assert_eq!(gosight["volumeMounts"].as_array().unwrap().len(), 2, "bpffs and the empty token directory");
    assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 2);

    // 3. Not injected: an unannotated pod in an unlabelled namespace, a pod opted
    //    out in a labelled one, an annotated pod in a namespace labelled "false",
    //    a namespace whose Pod Security level would refuse the sidecar, and the
    //    injector's own namespace.
    for (namespace, name, annotations) in [
        ("plain", "bystander", json!({})),
        ("traced", "opted-out", json!({ "gosight.dev/inject": "false" })),
        ("never", "asked-anyway", json!({ "gosight.dev/inject": "true" })),
        ("baseline", "restricted-ns", json!({})),
        ("gosight-system", "own-namespace", json!({ "gosight.dev/inject": "true" })),
    ] {
        let (pod, _) = create_and_read(&cluster, &plain_pod(namespace, name, annotations));
        assert!(sidecar(&pod).is_none(), "{namespace}/{name} must not be injected");
        assert!(pod["spec"].get("shareProcessNamespace").is_none(), "{namespace}/{name} unchanged");
    }

    // 4. shareProcessNamespace: false is respected and the user is told why.
    let mut private = plain_pod("traced", "private-pids", json!({}));
    private["spec"]["shareProcessNamespace"] = json!(false);
    let (pod, warnings) = create_and_read(&cluster, &private);
    assert!(sidecar(&pod).is_none());
    assert_eq!(pod["spec"]["shareProcessNamespace"], false);
    assert!(
        warnings.contains("gosight: sidecar not injected: the pod sets shareProcessNamespace: false"),
        "{warnings}"
    );

    // 5. Injecting twice is a no-op: a pod that already has the sidecar (as the
    //    API server returned it) is created with that sidecar only.
    let (first, _) = create_and_read(&cluster, &plain_pod("traced", "once", json!({})));
    let again = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "once-again", "namespace": "traced",
                        "annotations": first["metadata"]["annotations"].clone() }, "spec": first["spec"].clone() });
    let (second, _) = create_and_read(&cluster, &again);
    let count = |pod: &Value, list: &str, prefix: &str| {
        pod["spec"][list]
            .as_array()
            .map_or(0, |l| l.iter().filter(|c| c["name"].as_str().unwrap().starts_with(prefix)).count())
    };
    assert_eq!(count(&second, "initContainers", "gosight") + count(&second, "containers", "gosight"), 1);
    assert_eq!(count(&second, "volumes", "gosight-"), 3);
    let (a, b) = (sidecar(&first).unwrap(), sidecar(&second).unwrap());
    for field in ["env", "securityContext", "resources", "image", "command"] {
        assert_eq!(a[field], b[field], "{field}");
    }

    // 6. With the injector stopped, pods are still created (failurePolicy: Ignore).
    drop(injector);
    let t = Instant::now();
    let (pod, _) = create_and_read(&cluster, &plain_pod("traced", "injector-down", json!({})));
    assert!(sidecar(&pod).is_none());
    eprintln!("pod created without the injector in {:.2}s", t.elapsed().as_secs_f64());
    eprintln!("webhook test done in {:.1}s", started.elapsed().as_secs_f64());
}

#[test]
fn deploy_kustomization_passes_server_dry_run() {
    let Some(bin) = kube_dir() else { return };
    let cluster = Cluster::start(&bin);
    let deploy = repo_root().join("deploy");
    // A server-side dry run cannot create the namespace the other objects live in,
    // so that one is created for real first.
    cluster.must(&["apply", "-f", deploy.join("namespace.yaml").to_str().unwrap()], None);
    let (out, warnings) = cluster.must(&["apply", "-k", deploy.to_str().unwrap(), "--dry-run=server"], None);
    for object in [
        "namespace/gosight-system",
        "serviceaccount/gosight-injector",
        "service/gosight-injector",
        "deployment.apps/gosight-injector",
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/gosight-injector",
    ] {
        assert!(out.contains(object), "{object} missing from:\n{out}");
    }
    assert!(!warnings.contains("PodSecurity"), "the injector's Deployment must meet the restricted level: {warnings}");
    // The certificate route of the README, for real: apply, the Secret from
    // `injector certs`, the caBundle patched into both webhook entries.
    cluster.must(&["apply", "-k", deploy.to_str().unwrap()], None);
    let certs = cluster.dir.path().join("certs");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_injector"))
        .args(["certs", "--out-dir", certs.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let ca = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_string();
    let (cert, key) = (certs.join("tls.crt"), certs.join("tls.key"));
    cluster.must(
        &[
            "-n",
            "gosight-system",
            "create",
            "secret",
            "tls",
            "gosight-injector-tls",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
        None,
    );
    // Every entry of the webhook configuration, as the README's patch does.
    let patch = (0..4)
        .map(|i| format!(r#"{{"op":"add","path":"/webhooks/{i}/clientConfig/caBundle","value":"{ca}"}}"#))
        .collect::<Vec<_>>()
        .join(",");
    let patch = format!("[{patch}]");
    cluster.must(&["patch", "mutatingwebhookconfiguration", "gosight-injector", "--type=json", "-p", &patch], None);
    let config = cluster.get(&["mutatingwebhookconfiguration", "gosight-injector"]);
    for webhook in config["webhooks"].as_array().unwrap() {
        assert_eq!(webhook["clientConfig"]["caBundle"], ca.as_str());
        assert_eq!(webhook["failurePolicy"], "Ignore");
        assert_eq!(webhook["clientConfig"]["service"]["name"], "gosight-injector");
    }

    // The cert-manager component renders when enabled as the comment says (its
    // CRDs are not installed here, so only client-side).
    let copy = cluster.dir.path().join("deploy");
    std::fs::create_dir_all(copy.join("cert-manager")).unwrap();
    for file in [
        "namespace.yaml",
        "serviceaccount.yaml",
        "deployment.yaml",
        "service.yaml",
        "mutatingwebhookconfiguration.yaml",
        "cert-manager/kustomization.yaml",
        "cert-manager/certificates.yaml",
    ] {
        std::fs::copy(deploy.join(file), copy.join(file)).unwrap();
    }
    let kustomization = std::fs::read_to_string(deploy.join("kustomization.yaml")).unwrap();
    assert!(kustomization.contains("# components:\n#   - cert-manager\n"), "the component line is documented");
    let enabled = kustomization.replace("# components:\n#   - cert-manager\n", "components:\n  - cert-manager\n");
    std::fs::write(copy.join("kustomization.yaml"), enabled).unwrap();
    let (rendered, _) = cluster.must(&["kustomize", copy.to_str().unwrap()], None);
    assert!(rendered.contains("cert-manager.io/inject-ca-from: gosight-system/gosight-injector"), "{rendered}");
    assert!(rendered.contains("kind: Certificate"), "{rendered}");
}
