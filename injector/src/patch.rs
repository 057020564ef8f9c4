//! The injection decision for one pod, and the JSON patch (RFC 6902) that adds
//! the sidecar. The patch only *adds*: the pod's own containers are never
//! rewritten, so they keep every field they had, including fields this injector's
//! Kubernetes types do not know.

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;

use crate::annotations::{self, PodOptions};
use crate::config::{SidecarConfig, SidecarMode};
use crate::owner;
use crate::sidecar::{self, SidecarInputs, BPFFS_VOLUME, CONTAINER_NAME_VAR, HOST_CGROUP_VOLUME, NO_TOKEN_VOLUME};

/// How the pod reached the webhook; each is a separate webhook entry (and URL
/// path) in the MutatingWebhookConfiguration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptIn {
    /// The API server matched the namespace's `gosight.dev/inject: "true"` label.
    Namespace,
    /// The pod must carry the `gosight.dev/inject: "true"` annotation itself.
    PodAnnotation,
    /// The namespace opted in but enforces this Pod Security level, which refuses
    /// the sidecar's capabilities and hostPath volumes: the pod is admitted as it
    /// is, with the reason as a warning and an annotation.
    PodSecurity(&'static str),
}

/// What to do with a pod.
#[derive(Debug)]
pub enum Decision {
    /// Leave the pod as it is. `reason` is logged; `warnings` go back to the user.
    Skip { reason: String, warnings: Vec<String> },
    /// Apply `patch`.
    Inject { patch: Patch, warnings: Vec<String> },
    /// Leave the pod without the sidecar, but say why on it: `patch` only adds the
    /// `gosight.dev/not-injected` annotation.
    Decline { reason: String, warnings: Vec<String>, patch: Patch },
}

/// Decides what to do with a pod being created and builds the patch.
pub fn decide(pod: &Pod, via: OptIn, config: &SidecarConfig) -> Result<Decision, serde_json::Error> {
    let options = annotations::read(pod.metadata.annotations.as_ref());
    let mut warnings = options.warnings.clone();
    let skip = |reason: &str, mut warnings: Vec<String>, warn: bool| {
        if warn {
            warnings.push(format!("gosight: sidecar not injected: {reason}"));
        }
        Ok(Decision::Skip { reason: reason.to_string(), warnings })
    };

    match (via, options.inject) {
        (_, Some(false)) => return skip("the pod opts out (gosight.dev/inject: \"false\")", warnings, false),
        (OptIn::PodSecurity(level), _) => {
            let reason = format!(
                "the namespace enforces Pod Security \"{level}\", which refuses the sidecar's capabilities \
                 ({}) and hostPath volumes; label the namespace privileged to trace it",
                sidecar::CAPABILITIES.join(", ")
            );
            warnings.push(format!("gosight: sidecar not injected: {reason}"));
            let note = Value::String(reason.clone());
            let op = match pod.metadata.annotations {
                Some(_) => add(&["metadata", "annotations", annotations::NOT_INJECTED], note),
                None => add(&["metadata", "annotations"], serde_json::json!({ annotations::NOT_INJECTED: note })),
            };
            return Ok(Decision::Decline { reason, warnings, patch: Patch(vec![op]) });
        }
        (OptIn::PodAnnotation, None) => return skip("the pod is not opted in", warnings, false),
        _ => {}
    }
    let Some(spec) = pod.spec.as_ref() else { return skip("the pod has no spec", warnings, true) };
    let init = spec.init_containers.as_deref().unwrap_or_default();
    if spec.containers.iter().chain(init).any(|c| c.name == config.sidecar_name) {
        return skip(
            &format!("already injected (the pod has a container named {:?})", config.sidecar_name),
            warnings,
            false,
        );
    }
    if let Some(v) = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| [BPFFS_VOLUME, HOST_CGROUP_VOLUME, NO_TOKEN_VOLUME].contains(&v.name.as_str()))
    {
        return skip(&format!("the pod already has a volume named {:?}", v.name), warnings, true);
    }
    if spec.share_process_namespace == Some(false) {
        return skip(
            "the pod sets shareProcessNamespace: false, and gosight must see the app's processes",
            warnings,
            true,
        );
    }
    if spec.host_pid == Some(true) {
        return skip("the pod uses hostPID, so gosight would see every process of the node", warnings, true);
    }
    let traced = match traced_containers(&spec.containers, &options) {
        Ok(names) => names,
        Err(reason) => return skip(&reason, warnings, true),
    };
    if let Some(wanted) = &options.containers {
        let unknown: Vec<&str> = wanted.iter().filter(|w| !traced.contains(w)).map(String::as_str).collect();
        if !unknown.is_empty() {
            warnings.push(format!(
                "gosight: {}: no such container(s): {}",
                annotations::CONTAINERS,
                unknown.join(", ")
            ));
        }
    }

    let workload = owner::workload(pod);
    let service_name = owner::service_name(pod, options.service_name.as_deref(), &workload);
    let inputs = SidecarInputs {
        config,
        image: options.sidecar_image.as_deref().unwrap_or(&config.sidecar_image),
        propagation: options.propagation.unwrap_or(config.propagation),
        target_exe: options.target_exe.as_deref(),
        traced_containers: &traced,
        service_name: service_name.as_deref(),
        workload: &workload,
    };
    let sidecar = sidecar::build(&inputs);

    let mut ops = Vec::new();
    // Each container's processes carry its name, so gosight can tell them apart
    // in the shared process namespace (an addition: the variable is appended).
    for (i, c) in spec.containers.iter().enumerate() {
        if c.env.iter().flatten().any(|e| e.name == CONTAINER_NAME_VAR) {
            continue;
        }
        let index = i.to_string();
        let var = serde_json::json!({ "name": CONTAINER_NAME_VAR, "value": c.name });
        append(&mut ops, &["spec", "containers", &index, "env"], c.env.is_some(), vec![var]);
    }
    if spec.share_process_namespace != Some(true) {
        ops.push(add(&["spec", "shareProcessNamespace"], Value::Bool(true)));
    }
    let list = match config.sidecar_mode {
        SidecarMode::Native => "initContainers",
        SidecarMode::Container => "containers",
    };
    let mut container = sidecar.container;
    if config.sidecar_mode == SidecarMode::Native {
        // A native sidecar: an init container that keeps running beside the app.
        container.restart_policy = Some("Always".into());
    }
    let container = serde_json::to_value(&container)?;
    let list_present = match config.sidecar_mode {
        SidecarMode::Native => spec.init_containers.is_some(),
        SidecarMode::Container => true,
    };
    append(&mut ops, &["spec", list], list_present, vec![container]);
    let volumes = sidecar.volumes.iter().map(serde_json::to_value).collect::<Result<Vec<_>, _>>()?;
    append(&mut ops, &["spec", "volumes"], spec.volumes.is_some(), volumes);
    let stamp = Value::String(env!("CARGO_PKG_VERSION").into());
    match pod.metadata.annotations {
        Some(_) => ops.push(add(&["metadata", "annotations", annotations::INJECTED], stamp)),
        None => ops.push(add(&["metadata", "annotations"], serde_json::json!({ annotations::INJECTED: stamp }))),
    }
    Ok(Decision::Inject { patch: Patch(ops), warnings })
}

/// The containers gosight is to trace: those the annotation names (in the pod's
/// order), else all of the pod's regular containers.
fn traced_containers(containers: &[Container], options: &PodOptions) -> Result<Vec<String>, String> {
    let names = containers.iter().map(|c| c.name.clone());
    match &options.containers {
        None => Ok(names.collect()),
        Some(wanted) => {
            let found: Vec<String> = names.filter(|n| wanted.contains(n)).collect();
            if found.is_empty() {
                Err(format!("{} names no container of the pod ({})", annotations::CONTAINERS, wanted.join(", ")))
            } else {
                Ok(found)
            }
        }
    }
}

fn add(tokens: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path: PointerBuf::from_tokens(tokens.iter().copied()), value })
}

/// Appends `items` to the array at `tokens`, creating it when absent.
fn append(ops: &mut Vec<PatchOperation>, tokens: &[&str], present: bool, items: Vec<Value>) {
    if present {
        let mut path = tokens.to_vec();
        path.push("-");
        ops.extend(items.into_iter().map(|item| add(&path, item)));
    } else {
        ops.push(add(tokens, Value::Array(items)));
    }
}
