//! Who a pod belongs to, worked out from the pod alone (no API calls): its
//! controller owner reference, and the workload above it that Kubernetes'
//! naming conventions reveal.
//!
//! - A Deployment's pod is owned by ReplicaSet `<deployment>-<pod-template-hash>`
//!   and carries the label `pod-template-hash`: the Deployment is the ReplicaSet
//!   name without `-<hash>`.
//! - A CronJob's pod is owned by Job `<cronjob>-<scheduled time in minutes>`: a
//!   Job whose name ends in `-` and 8 or more digits is taken as a CronJob's.
//!   (A hand-made Job named like `backup-20240101` is read as CronJob `backup`.)
//! - StatefulSet, DaemonSet, Job, ReplicaSet and ReplicationController owners are
//!   the workload themselves. Other kinds (custom controllers) give no workload.

use k8s_openapi::api::core::v1::Pod;

/// The label the Deployment controller puts on its ReplicaSets' pods.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// Minutes since 1970 have had 8 digits since 1971 and keep them until 2160.
const CRONJOB_SUFFIX_MIN_DIGITS: usize = 8;

/// The pod's workload: OpenTelemetry resource attributes naming its owners, and the
/// name a service would most likely be known by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Workload {
    /// e.g. `[("k8s.replicaset.name", "web-5d4f8"), ("k8s.deployment.name", "web")]`,
    /// nearest owner first.
    pub attributes: Vec<(&'static str, String)>,
    /// The top-most owner's name (Deployment over ReplicaSet, CronJob over Job).
    pub name: Option<String>,
}

/// Works out the pod's workload from its controller owner reference (or its first
/// owner reference when none is marked controller).
pub fn workload(pod: &Pod) -> Workload {
    let refs = pod.metadata.owner_references.as_deref().unwrap_or_default();
    let Some(owner) = refs.iter().find(|r| r.controller == Some(true)).or_else(|| refs.first()) else {
        return Workload::default();
    };
    let name = owner.name.clone();
    if name.is_empty() {
        return Workload::default();
    }
    let group = owner.api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    match (group, owner.kind.as_str()) {
        ("apps", "ReplicaSet") => {
            let hash = pod.metadata.labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH));
            let deployment =
                hash.and_then(|h| name.strip_suffix(h.as_str())?.strip_suffix('-')).filter(|d| !d.is_empty());
            match deployment {
                Some(d) => Workload {
                    attributes: vec![("k8s.replicaset.name", name.clone()), ("k8s.deployment.name", d.to_string())],
                    name: Some(d.to_string()),
                },
                None => single("k8s.replicaset.name", name),
            }
        }
        ("apps", "StatefulSet") => single("k8s.statefulset.name", name),
        ("apps", "DaemonSet") => single("k8s.daemonset.name", name),
        ("batch", "Job") => match cronjob_of(&name) {
            Some(c) => Workload {
                attributes: vec![("k8s.job.name", name.clone()), ("k8s.cronjob.name", c.to_string())],
                name: Some(c.to_string()),
            },
            None => single("k8s.job.name", name),
        },
        ("", "ReplicationController") => single("k8s.replicationcontroller.name", name),
        _ => Workload::default(),
    }
}

fn single(attribute: &'static str, name: String) -> Workload {
    Workload { attributes: vec![(attribute, name.clone())], name: Some(name) }
}

/// The CronJob a Job named `<cronjob>-<minutes>` was created by.
fn cronjob_of(job: &str) -> Option<&str> {
    let (prefix, suffix) = job.rsplit_once('-')?;
    (suffix.len() >= CRONJOB_SUFFIX_MIN_DIGITS && suffix.bytes().all(|b| b.is_ascii_digit()) && !prefix.is_empty())
        .then_some(prefix)
}

/// The pod's name as far as it is known at admission: `metadata.name`, or for a
/// pod named by `generateName` (the server picks the suffix after admission) the
/// prefix without its trailing `-`.
pub fn pod_name(pod: &Pod) -> Option<String> {
    if let Some(name) = pod.metadata.name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    let prefix = pod.metadata.generate_name.as_deref()?.trim_end_matches('-');
    (!prefix.is_empty()).then(|| prefix.to_string())
}

/// OTEL_SERVICE_NAME: the gosight.dev/service-name annotation, then the
/// `app.kubernetes.io/name` label, then the workload's name, then the pod's name.
pub fn service_name(pod: &Pod, annotation: Option<&str>, workload: &Workload) -> Option<String> {
    let label = pod.metadata.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/name"));
    annotation
        .map(str::to_string)
        .or_else(|| label.map(|l| l.trim().to_string()).filter(|l| !l.is_empty()))
        .or_else(|| workload.name.clone())
        .or_else(|| pod_name(pod))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(meta: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "metadata": meta, "spec": { "containers": [] } })).unwrap()
    }

    fn owned_by(api_version: &str, kind: &str, name: &str, labels: serde_json::Value) -> Pod {
        pod(json!({
            "generateName": format!("{name}-"),
            "labels": labels,
            "ownerReferences": [
                { "apiVersion": "v1", "kind": "Other", "name": "not-the-controller", "uid": "u0" },
                { "apiVersion": api_version, "kind": kind, "name": name, "uid": "u1", "controller": true }
            ]
        }))
    }

    #[test]
    fn deployment_from_replicaset_and_hash_label() {
        let p = owned_by("apps/v1", "ReplicaSet", "web-7d9f6c5b8", json!({ "pod-template-hash": "7d9f6c5b8" }));
        let w = workload(&p);
        assert_eq!(w.name.as_deref(), Some("web"));
        assert_eq!(
            w.attributes,
            vec![("k8s.replicaset.name", "web-7d9f6c5b8".into()), ("k8s.deployment.name", "web".into())]
        );
        // Without the label (a bare ReplicaSet) or with a hash that is not the suffix.
        assert_eq!(
            workload(&owned_by("apps/v1", "ReplicaSet", "web-7d9f6c5b8", json!({}))).name.as_deref(),
            Some("web-7d9f6c5b8")
        );
        let other = owned_by("apps/v1", "ReplicaSet", "web-1", json!({ "pod-template-hash": "7d9f6c5b8" }));
        assert_eq!(workload(&other).attributes, vec![("k8s.replicaset.name", "web-1".into())]);
    }

    #[test]
    fn cronjob_from_job_name() {
        let w = workload(&owned_by("batch/v1", "Job", "nightly-report-29447040", json!({})));
        assert_eq!(w.name.as_deref(), Some("nightly-report"));
        assert_eq!(
            w.attributes,
            vec![("k8s.job.name", "nightly-report-29447040".into()), ("k8s.cronjob.name", "nightly-report".into())]
        );
        let plain = workload(&owned_by("batch/v1", "Job", "migrate-42", json!({})));
        assert_eq!(plain.attributes, vec![("k8s.job.name", "migrate-42".into())]);
        assert_eq!(plain.name.as_deref(), Some("migrate-42"));
    }

    #[test]
    fn statefulset_daemonset_and_unknown_kinds() {
        assert_eq!(
            workload(&owned_by("apps/v1", "StatefulSet", "db", json!({}))).attributes,
            vec![("k8s.statefulset.name", "db".into())]
        );
        assert_eq!(
            workload(&owned_by("apps/v1", "DaemonSet", "agent", json!({}))).attributes,
            vec![("k8s.daemonset.name", "agent".into())]
        );
        assert_eq!(workload(&owned_by("argoproj.io/v1alpha1", "Rollout", "web", json!({}))), Workload::default());
        // A kind name in the wrong group is not the built-in workload.
        assert_eq!(workload(&owned_by("example.com/v1", "Deployment", "web", json!({}))), Workload::default());
    }

    #[test]
    fn service_name_order() {
        let p = owned_by("apps/v1", "StatefulSet", "db", json!({ "app.kubernetes.io/name": "postgres" }));
        let w = workload(&p);
        assert_eq!(service_name(&p, Some("orders-db"), &w).as_deref(), Some("orders-db"));
        assert_eq!(service_name(&p, None, &w).as_deref(), Some("postgres"));
        let p = owned_by("apps/v1", "StatefulSet", "db", json!({}));
        assert_eq!(service_name(&p, None, &workload(&p)).as_deref(), Some("db"));
        let bare = pod(json!({ "name": "debug" }));
        assert_eq!(service_name(&bare, None, &workload(&bare)).as_deref(), Some("debug"));
        let generated = pod(json!({ "generateName": "scratch-" }));
        assert_eq!(service_name(&generated, None, &workload(&generated)).as_deref(), Some("scratch"));
        assert_eq!(pod_name(&pod(json!({}))), None);
    }
}
