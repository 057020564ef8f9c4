//! The labels and annotations the injector reads and writes, all under the
//! `gosight.dev/` domain, and the per-pod options read from them.

use std::collections::BTreeMap;

use crate::config::parse_on_off;

/// Pod annotation (`"true"` opts the pod in, `"false"` opts it out of a labelled
/// namespace) and namespace label (`"true"` opts every pod of the namespace in).
pub const INJECT: &str = "gosight.dev/inject";
/// Pod annotation: OTEL_GO_AUTO_TARGET_EXE for the sidecar (a path, glob or file name).
pub const TARGET_EXE: &str = "gosight.dev/target-exe";
/// Pod annotation: comma-separated names of the containers to trace.
pub const CONTAINERS: &str = "gosight.dev/containers";
/// Pod annotation: the sidecar image for this pod.
pub const SIDECAR_IMAGE: &str = "gosight.dev/sidecar-image";
/// Pod annotation: OTEL_SERVICE_NAME, before any derived name.
pub const SERVICE_NAME: &str = "gosight.dev/service-name";
/// Pod annotation: `"on"`/`"off"`, kernel-side context propagation for this pod.
pub const PROPAGATION: &str = "gosight.dev/propagation";
/// Pod annotation written by the injector: the injector version that added the sidecar.
pub const INJECTED: &str = "gosight.dev/injected";
/// Set on a pod the injector was asked about but left alone, with the reason.
pub const NOT_INJECTED: &str = "gosight.dev/not-injected";

/// What the pod asked for, read from its annotations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodOptions {
    /// The value of `gosight.dev/inject`: Some(true) in, Some(false) out.
    pub inject: Option<bool>,
    pub target_exe: Option<String>,
    /// Container names, in the annotation's order, without duplicates.
    pub containers: Option<Vec<String>>,
    pub sidecar_image: Option<String>,
    pub service_name: Option<String>,
    pub propagation: Option<bool>,
    /// Problems with the annotations, worded for the user (admission warnings).
    pub warnings: Vec<String>,
}

/// Reads the options from a pod's annotations. Values are trimmed; an empty value
/// counts as absent; a value that cannot be understood is ignored with a warning.
pub fn read(annotations: Option<&BTreeMap<String, String>>) -> PodOptions {
    let mut options = PodOptions::default();
    let Some(annotations) = annotations else { return options };
    let get = |key: &str| annotations.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());

    if let Some(value) = get(INJECT) {
        match value {
            "true" => options.inject = Some(true),
            "false" => options.inject = Some(false),
            other => options
                .warnings
                .push(format!("gosight: annotation {INJECT}={other:?} ignored: use \"true\" or \"false\"")),
        }
    }
    options.target_exe = get(TARGET_EXE).map(str::to_string);
    if let Some(value) = get(CONTAINERS) {
        let mut names: Vec<String> = Vec::new();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
        if !names.is_empty() {
            options.containers = Some(names);
        }
    }
    options.sidecar_image = get(SIDECAR_IMAGE).map(str::to_string);
    options.service_name = get(SERVICE_NAME).map(str::to_string);
    if let Some(value) = get(PROPAGATION) {
        match parse_on_off(value) {
            Ok(on) => options.propagation = Some(on),
            Err(_) => options
                .warnings
                .push(format!("gosight: annotation {PROPAGATION}={value:?} ignored: use \"on\" or \"off\"")),
        }
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn reads_every_option() {
        let a = map(&[
            (INJECT, "true"),
            (TARGET_EXE, "/app/*"),
            (CONTAINERS, " api, worker ,api,, "),
            (SIDECAR_IMAGE, "registry.example/gosight:1"),
            (SERVICE_NAME, "checkout"),
            (PROPAGATION, "off"),
        ]);
        let o = read(Some(&a));
        assert_eq!(o.inject, Some(true));
        assert_eq!(o.target_exe.as_deref(), Some("/app/*"));
        assert_eq!(o.containers, Some(vec!["api".to_string(), "worker".to_string()]));
        assert_eq!(o.sidecar_image.as_deref(), Some("registry.example/gosight:1"));
        assert_eq!(o.service_name.as_deref(), Some("checkout"));
        assert_eq!(o.propagation, Some(false));
        assert!(o.warnings.is_empty());
    }

    #[test]
    fn bad_values_warn_and_empty_values_are_absent() {
        let o = read(Some(&map(&[(INJECT, "yes please"), (PROPAGATION, "sometimes"), (CONTAINERS, " , ")])));
        assert_eq!(o.inject, None);
        assert_eq!(o.propagation, None);
        assert_eq!(o.containers, None);
        assert_eq!(o.warnings.len(), 2, "{:?}", o.warnings);
        assert_eq!(read(None), PodOptions::default());
    }
}
