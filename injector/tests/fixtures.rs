//! The webhook's answers to real `AdmissionReview` requests: the JSON in
//! `tests/fixtures/` was sent by kube-apiserver v1.36 to a capturing webhook (see
//! `tests/fixtures/README.md`); the malformed bodies are written here.

use base64::Engine;
use injector::config::SidecarConfig;
use injector::patch::OptIn;
use injector::review::{review, Malformed, Outcome, Reviewed};
use serde_json::{json, Value};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn config() -> SidecarConfig {
    let mut c = SidecarConfig::defaults();
    c.sidecar_image = "registry.example/gosight:test".into();
    c.otlp_endpoint = "http://collector.observability.svc:4318".into();
    c.otlp_protocol = "grpc".into();
    c
}

fn run(review_json: &Value, via: OptIn) -> Reviewed {
    review(&serde_json::to_vec(review_json).unwrap(), via, &config()).expect("a well-formed review")
}

/// The response's JSON patch applied to the request's pod (None without a patch).
fn patched(review_json: &Value, reviewed: &Reviewed) -> Option<Value> {
    let response = &reviewed.json["response"];
    assert_eq!(response["uid"], review_json["request"]["uid"], "uid echoed");
    assert_eq!(response["allowed"], true, "the webhook never refuses a pod");
    assert_eq!(reviewed.json["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(reviewed.json["kind"], "AdmissionReview");
    let patch = response.get("patch")?;
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD.decode(patch.as_str().expect("base64 patch")).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    let mut pod = review_json["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).expect("the patch applies to the pod");
    Some(pod)
}

/// The same review with the pod replaced (for injecting a second time).
fn with_object(review_json: &Value, pod: Value) -> Value {
    let mut again = review_json.clone();
    again["request"]["object"] = pod;
    again
}

fn sidecar(pod: &Value) -> &Value {
    pod["spec"]["initContainers"].as_array().unwrap().iter().find(|c| c["name"] == "gosight").expect("gosight sidecar")
}

fn env(container: &Value, name: &str) -> Option<String> {
    let e = container["env"].as_array()?.iter().find(|e| e["name"] == name)?;
    Some(e["value"].as_str()?.to_string())
}

/// The containers as the pod had them: each patched container with the one
/// variable the injector adds (GOSIGHT_CONTAINER_NAME = its name) taken out again.
fn without_name_variable(containers: &Value) -> Value {
    let mut containers = containers.clone();
    for c in containers.as_array_mut().unwrap() {
        let name = c["name"].clone();
        let env = c["env"].as_array_mut().expect("every container gets the variable");
        let before = env.len();
        env.retain(|e| !(e["name"] == "GOSIGHT_CONTAINER_NAME" && e["value"] == name));
        assert_eq!(env.len() + 1, before, "exactly one GOSIGHT_CONTAINER_NAME, with the container's name: {c}");
        if env.is_empty() {
            c.as_object_mut().unwrap().remove("env");
        }
    }
    containers
}

fn warnings(reviewed: &Reviewed) -> Vec<String> {
    serde_json::from_value(reviewed.json["response"]["warnings"].clone()).unwrap_or_default()
}

#[test]
fn namespace_opt_in_deployment_pod_gets_the_sidecar_and_keeps_its_containers() {
    let request = fixture("namespace-deployment-pod.json");
    let reviewed = run(&request, OptIn::Namespace);
    assert_eq!(reviewed.outcome, Outcome::Injected);
    assert_eq!(reviewed.object, "traced/checkout-7d9f6c5b8-*", "named for the log before it has a name");
    let pod = patched(&request, &reviewed).expect("a patch");
    let original = &request["request"]["object"];
    assert_eq!(
        without_name_variable(&pod["spec"]["containers"]),
        original["spec"]["containers"],
        "the app's containers keep every field"
    );
    assert_eq!(pod["spec"]["shareProcessNamespace"], true);
    let gosight = sidecar(&pod);
    let expected: Value = fixture("expected-sidecar-deployment.json");
    assert_eq!(gosight, &expected, "the sidecar exactly as specified");
    // Volumes: the pod's own first, then the node's bpffs, the empty directory over
    // the API token's path, and the node's cgroup tree.
    let volumes = pod["spec"]["volumes"].as_array().unwrap();
    let original_volumes = original["spec"]["volumes"].as_array().unwrap();
    assert_eq!(volumes[..original_volumes.len()], original_volumes[..]);
    let added: Vec<&str> = volumes[original_volumes.len()..].iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(added, ["gosight-bpffs", "gosight-no-api-token", "gosight-host-cgroup"]);
    assert_eq!(pod["metadata"]["annotations"]["gosight.dev/injected"], env!("CARGO_PKG_VERSION"));

    // Injecting twice is a no-op.
    let again = with_object(&request, pod);
    let second = run(&again, OptIn::Namespace);
    assert!(
        matches!(second.outcome, Outcome::Skipped(ref r) if r.starts_with("already injected")),
        "{:?}",
        second.outcome
    );
    assert!(patched(&again, &second).is_none());
    assert!(warnings(&second).is_empty());
}

#[test]
fn annotation_opt_in_with_options_and_two_containers() {
    let request = fixture("annotated-statefulset-pod.json");
    let reviewed = run(&request, OptIn::PodAnnotation);
    assert_eq!(reviewed.outcome, Outcome::Injected);
    let pod = patched(&request, &reviewed).unwrap();
    let original = &request["request"]["object"];
    assert_eq!(without_name_variable(&pod["spec"]["containers"]), original["spec"]["containers"]);
    let gosight = sidecar(&pod);
    assert_eq!(gosight["image"], "registry.example/gosight:pinned", "gosight.dev/sidecar-image");
    assert_eq!(env(gosight, "OTEL_SERVICE_NAME").as_deref(), Some("orders-api"), "gosight.dev/service-name first");
    assert_eq!(env(gosight, "OTEL_GO_AUTO_TARGET_EXE").as_deref(), Some("/app/*"));
    assert_eq!(env(gosight, "GOSIGHT_TARGET_CONTAINERS").as_deref(), Some("api"));
    assert_eq!(env(gosight, "GOSIGHT_PROPAGATION").as_deref(), Some("off"));
    let attributes = env(gosight, "OTEL_RESOURCE_ATTRIBUTES").unwrap();
    assert!(attributes.contains(",k8s.container.name=api,k8s.statefulset.name=orders,"), "{attributes}");
    assert!(attributes.ends_with("service.instance.id=$(K8S_NAMESPACE_NAME).$(K8S_POD_NAME).api"), "{attributes}");
    assert_eq!(gosight["securityContext"]["capabilities"]["add"], json!(["SYS_ADMIN", "SYS_PTRACE"]));
    assert!(gosight.get("command").is_none());
    // The annotation names a container the pod does not have: said, not fatal.
    assert_eq!(warnings(&reviewed), ["gosight: gosight.dev/containers: no such container(s): sidecar-proxy"]);
}

#[test]
fn every_container_traced_when_none_is_named() {
    let request = fixture("namespace-daemonset-pod.json");
    let reviewed = run(&request, OptIn::Namespace);
    let pod = patched(&request, &reviewed).unwrap();
    let gosight = sidecar(&pod);
    assert_eq!(env(gosight, "GOSIGHT_TARGET_CONTAINERS").as_deref(), Some("agent,exporter"));
    assert_eq!(env(gosight, "OTEL_SERVICE_NAME").as_deref(), Some("node-agent"), "app.kubernetes.io/name label");
    let attributes = env(gosight, "OTEL_RESOURCE_ATTRIBUTES").unwrap();
    assert!(!attributes.contains("k8s.container.name"), "{attributes}");
    assert!(attributes.contains(",k8s.daemonset.name=node-agent,"), "{attributes}");
    // A pod that sets shareProcessNamespace: true already gets no op for it.
    assert_eq!(request["request"]["object"]["spec"]["shareProcessNamespace"], true);
    let ops: Vec<json_patch::PatchOperation> = {
        let b64 = reviewed.json["response"]["patch"].as_str().unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
    };
    assert!(ops.iter().all(|op| !op.path().to_string().contains("shareProcessNamespace")));
}

#[test]
fn cronjob_pod_named_after_its_cronjob() {
    let request = fixture("namespace-cronjob-pod.json");
    let pod = patched(&request, &run(&request, OptIn::Namespace)).unwrap();
    let gosight = sidecar(&pod);
    assert_eq!(env(gosight, "OTEL_SERVICE_NAME").as_deref(), Some("nightly-report"));
    let attributes = env(gosight, "OTEL_RESOURCE_ATTRIBUTES").unwrap();
    assert!(
        attributes.contains(",k8s.job.name=nightly-report-29447040,k8s.cronjob.name=nightly-report,"),
        "{attributes}"
    );
}

#[test]
fn pods_that_did_not_opt_in_or_opted_out_are_left_alone() {
    for (file, via, reason) in [
        ("plain-pod.json", OptIn::PodAnnotation, "the pod is not opted in"),
        ("namespace-opted-out-pod.json", OptIn::Namespace, "the pod opts out"),
    ] {
        let request = fixture(file);
        let reviewed = run(&request, via);
        assert!(
            matches!(reviewed.outcome, Outcome::Skipped(ref r) if r.starts_with(reason)),
            "{file}: {:?}",
            reviewed.outcome
        );
        assert!(patched(&request, &reviewed).is_none(), "{file}");
        assert!(warnings(&reviewed).is_empty(), "{file}");
    }
}

#[test]
fn already_injected_pod_is_left_alone() {
    let request = fixture("namespace-already-injected-pod.json");
    let reviewed = run(&request, OptIn::Namespace);
    assert!(matches!(reviewed.outcome, Outcome::Skipped(ref r) if r.starts_with("already injected")));
    assert!(patched(&request, &reviewed).is_none());
}

#[test]
fn share_process_namespace_false_is_respected_with_a_warning() {
    let request = fixture("namespace-private-pids-pod.json");
    let reviewed = run(&request, OptIn::Namespace);
    assert!(patched(&request, &reviewed).is_none());
    assert_eq!(
        warnings(&reviewed),
        ["gosight: sidecar not injected: the pod sets shareProcessNamespace: false, and gosight must see the app's processes"]
    );
}

#[test]
fn not_a_pod_create_is_allowed_unchanged() {
    let mut request = fixture("plain-pod.json");
    request["request"]["operation"] = json!("UPDATE");
    request["request"]["oldObject"] = request["request"]["object"].clone();
    let reviewed = run(&request, OptIn::Namespace);
    assert!(matches!(reviewed.outcome, Outcome::NotApplicable(_)));
    assert!(patched(&request, &reviewed).is_none());
}

#[test]
fn a_pod_that_cannot_be_read_is_allowed_unchanged() {
    // A well-formed review whose object is not a valid Pod: an internal problem for
    // the webhook, never a reason to refuse the pod.
    let mut request = fixture("namespace-deployment-pod.json");
    request["request"]["object"]["spec"]["containers"] = json!("not a list");
    let reviewed = run(&request, OptIn::Namespace);
    assert!(matches!(reviewed.outcome, Outcome::InternalError(_)), "{:?}", reviewed.outcome);
    assert!(patched(&request, &reviewed).is_none());
}

#[test]
fn malformed_requests_are_refused_with_a_reason() {
    let good = fixture("plain-pod.json");
    let mut no_uid = good.clone();
    no_uid["request"]["uid"] = json!("");
    let mut v1beta1 = good.clone();
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut no_request = good.clone();
    no_request.as_object_mut().unwrap().remove("request");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"this is not json".to_vec(), "not an AdmissionReview"),
        (b"[1, 2, 3]".to_vec(), "not an AdmissionReview"),
        (
            serde_json::to_vec(&json!({ "kind": "Pod", "apiVersion": "v1" })).unwrap(),
            "expected apiVersion admission.k8s.io/v1",
        ),
        (serde_json::to_vec(&v1beta1).unwrap(), "expected apiVersion admission.k8s.io/v1"),
        (serde_json::to_vec(&no_request).unwrap(), "no request"),
        (serde_json::to_vec(&no_uid).unwrap(), "no uid"),
    ];
    for (body, reason) in cases {
        match review(&body, OptIn::Namespace, &config()) {
            Err(Malformed(text)) => assert!(text.contains(reason), "{text:?} should say {reason:?}"),
            Ok(r) => panic!("accepted {:?}: {:?}", String::from_utf8_lossy(&body), r.json),
        }
    }
}
