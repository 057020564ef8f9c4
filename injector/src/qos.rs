//! A pod's QoS class, computed the way the kubelet does from the containers'
//! CPU and memory requests and limits. It decides where the kubelet puts the
//! pod's cgroup (`kubepods/burstable/pod<uid>` and the like), which the sidecar
//! needs to watch the pod's connections for context propagation.
//!
//! Not covered: pod-level `spec.resources` (alpha/beta PodLevelResources), which
//! also enters the kubelet's decision.

use k8s_openapi::api::core::v1::Container;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

const RESOURCES: [&str; 2] = ["cpu", "memory"];

/// The QoS class of a pod made of these containers (init containers included).
pub fn qos_class<'a>(containers: impl IntoIterator<Item = &'a Container>) -> QosClass {
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
        let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
        for resource in RESOURCES {
            let request = requests.and_then(|m| m.get(resource)).and_then(|q| quantity(&q.0)).filter(|v| *v != 0.0);
            let limit = limits.and_then(|m| m.get(resource)).and_then(|q| quantity(&q.0)).filter(|v| *v != 0.0);
            any |= request.is_some() || limit.is_some();
            match (request, limit) {
                (_, None) => guaranteed = false,
                // A missing request defaults to the limit (the API server's defaulting).
                (None, Some(_)) => {}
                (Some(r), Some(l)) if !same(r, l) => guaranteed = false,
                _ => {}
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => QosClass::BestEffort,
        (true, true) => QosClass::Guaranteed,
        (true, false) => QosClass::Burstable,
    }
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()) * 4.0
}

/// A Kubernetes quantity (`500m`, `1.5Gi`, `2e3`, `128974848`) in base units.
pub fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let digits = exponent.strip_prefix('e').or_else(|| exponent.strip_prefix('E'))?;
            10f64.powi(digits.parse().ok()?)
        }
    };
    Some(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(resources: serde_json::Value) -> Container {
        serde_json::from_value(json!({ "name": "c", "resources": resources })).unwrap()
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("0.5"), Some(0.5));
        assert_eq!(quantity("1Gi"), Some(1073741824.0));
        assert_eq!(quantity("1e3"), Some(1000.0));
        assert_eq!(quantity("2E"), Some(2e18));
        assert_eq!(quantity("12Q"), None);
        assert_eq!(quantity(""), None);
    }

    #[test]
    fn classes() {
        let none = container(json!({}));
        let equal = container(
            json!({ "requests": { "cpu": "500m", "memory": "1Gi" }, "limits": { "cpu": "0.5", "memory": "1024Mi" } }),
        );
        let limits_only = container(json!({ "limits": { "cpu": "1", "memory": "1Gi" } }));
        let burst = container(json!({ "requests": { "cpu": "100m" } }));
        assert_eq!(qos_class([&none, &none]), QosClass::BestEffort);
        assert_eq!(qos_class([&equal, &limits_only]), QosClass::Guaranteed);
        assert_eq!(qos_class([&equal, &burst]), QosClass::Burstable);
        assert_eq!(qos_class([&equal, &none]), QosClass::Burstable);
    }
}
