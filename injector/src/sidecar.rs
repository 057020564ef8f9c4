//! The `gosight` container the injector adds, and the node volumes it mounts.
//!
//! Privileges are the least that work, each tied to a feature:
//!
//! | what | why |
//! |---|---|
//! | `runAsUser: 0`, `runAsGroup: 0`, `runAsNonRoot: false` | the pinned-map directory on the node's bpffs is root's; gosight reads other users' `/proc/<pid>/exe` |
//! | `CAP_SYS_ADMIN` | attach uprobes: the kernel's uprobe perf PMU requires it (`perf_uprobe_event_init`, since the 2025 fix "perf: Require CAP_SYS_ADMIN for uprobes", in 6.16 and the stable kernels 5.4–6.15 after it; `CAP_PERFMON` alone gets `perf_event_open: Permission denied`). It also covers what `CAP_BPF`, `CAP_PERFMON` and `CAP_NET_ADMIN` would grant (loading the programs, the sockops/sk_msg programs and their cgroup attachment, entering the pod's network namespace to enrol connections that existed before gosight) |
//! | `CAP_SYS_PTRACE` | open `/proc/<pid>/exe`, `/proc/<pid>/environ` and `/proc/<pid>/maps` of the other containers' processes, whose capabilities the sidecar does not hold |
//! | hostPath `/sys/fs/bpf` | pin the maps the probes share (per gosight, removed at exit) |
//! | hostPath `/sys/fs/cgroup`, read-only, at `/host/sys/fs/cgroup` (propagation only) | the pod's cgroup, to attach the socket programs to (gosight finds it by the pod UID); the container's own `/sys/fs/cgroup` is only its own cgroup |
//!
//! Measured on kernel 6.18 under containerd's default seccomp profile, which
//! allows `bpf`, `perf_event_open` and `setns` to a container holding
//! `CAP_SYS_ADMIN` (tests/e2e/tests/kube_pods.rs).
//!
//! Everything else is dropped (`drop: [ALL]`), `privileged` and privilege escalation
//! are off and the root filesystem is read-only. The sidecar talks to no API
//! server, so it gets no service account token: the API server re-runs its
//! ServiceAccount admission plugin after a webhook changed a pod, which would add
//! the pod's token to the sidecar too, unless the container already has something
//! mounted at the token's path. An empty, read-only `emptyDir` sits there.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, HostPathVolumeSource, ObjectFieldSelector, ResourceRequirements,
    SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::config::SidecarConfig;
use crate::owner::Workload;

/// Where the node's cgroup tree is mounted in the sidecar.
pub const HOST_CGROUP_MOUNT: &str = "/host/sys/fs/cgroup";
/// Volume names the injector adds; a pod already using one is not injected.
pub const BPFFS_VOLUME: &str = "gosight-bpffs";
pub const HOST_CGROUP_VOLUME: &str = "gosight-host-cgroup";
pub const NO_TOKEN_VOLUME: &str = "gosight-no-api-token";
/// The variable every container of an injected pod gets, holding its name: how
/// gosight tells which container a process belongs to (`sidecar/src/pod.rs`).
pub const CONTAINER_NAME_VAR: &str = "GOSIGHT_CONTAINER_NAME";
/// Where the ServiceAccount admission plugin mounts the pod's API token.
const API_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Everything the sidecar is built from.
#[derive(Debug, Clone)]
pub struct SidecarInputs<'a> {
    pub config: &'a SidecarConfig,
    pub image: &'a str,
    pub propagation: bool,
    pub target_exe: Option<&'a str>,
    /// The containers gosight should trace (all of the pod's by default).
    pub traced_containers: &'a [String],
    pub service_name: Option<&'a str>,
    pub workload: &'a Workload,
}

/// The sidecar container and the volumes it needs.
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub container: Container,
    pub volumes: Vec<Volume>,
}

/// The sidecar's requests and limits, from configuration (empty values left out).
pub fn resources(config: &SidecarConfig) -> Option<ResourceRequirements> {
    let pick = |pairs: [(&str, &str); 2]| -> Option<BTreeMap<String, Quantity>> {
        let map: BTreeMap<_, _> = pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect();
        (!map.is_empty()).then_some(map)
    };
    let requests = pick([("cpu", &config.cpu_request), ("memory", &config.memory_request)]);
    let limits = pick([("cpu", &config.cpu_limit), ("memory", &config.memory_limit)]);
    (requests.is_some() || limits.is_some()).then(|| ResourceRequirements { requests, limits, ..Default::default() })
}

/// The capabilities the sidecar gets (the table above).
pub const CAPABILITIES: [&str; 2] = ["SYS_ADMIN", "SYS_PTRACE"];

/// Builds the sidecar.
pub fn build(inputs: &SidecarInputs) -> Sidecar {
    let config = inputs.config;
    let caps = CAPABILITIES.to_vec();
    let mut volumes = vec![
        host_path_volume(BPFFS_VOLUME, &config.bpffs),
        Volume { name: NO_TOKEN_VOLUME.into(), empty_dir: Some(Default::default()), ..Default::default() },
    ];
    let mut mounts = vec![
        VolumeMount { name: BPFFS_VOLUME.into(), mount_path: config.bpffs.clone(), ..Default::default() },
        VolumeMount {
            name: NO_TOKEN_VOLUME.into(),
            mount_path: API_TOKEN_PATH.into(),
            read_only: Some(true),
            ..Default::default()
        },
    ];
    if inputs.propagation {
        volumes.push(host_path_volume(HOST_CGROUP_VOLUME, "/sys/fs/cgroup"));
        mounts.push(VolumeMount {
            name: HOST_CGROUP_VOLUME.into(),
            mount_path: HOST_CGROUP_MOUNT.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
    let container = Container {
        name: config.sidecar_name.clone(),
        image: Some(inputs.image.to_string()),
        image_pull_policy: Some(config.sidecar_image_pull_policy.clone()).filter(|p| !p.is_empty()),
        env: Some(env(inputs)),
        resources: resources(config),
        volume_mounts: Some(mounts),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            // The image's default user is not root; its group would otherwise stay.
            run_as_group: Some(0),
            run_as_non_root: Some(false),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                add: Some(caps.into_iter().map(String::from).collect()),
                drop: Some(vec!["ALL".into()]),
            }),
            // The runtime's default profile, whatever the kubelet's default is: it
            // allows what gosight calls (bpf, perf_event_open, setns) to a
            // container holding CAP_SYS_ADMIN.
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), localhost_profile: None }),
            ..Default::default()
        }),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    Sidecar { container, volumes }
}

fn host_path_volume(name: &str, path: &str) -> Volume {
    Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource { path: path.into(), type_: Some("Directory".into()) }),
        ..Default::default()
    }
}

fn field_env(name: &str, field_path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            // apiVersion is what the API server would default it to: the patch
            // then reads back exactly as sent.
            field_ref: Some(ObjectFieldSelector { field_path: field_path.into(), api_version: Some("v1".into()) }),
            ..Default::default()
        }),
        value: None,
    }
}

fn value_env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), value_from: None }
}

/// The sidecar's environment. The downward-API variables come first so that the
/// later values can use them as `$(VAR)`, which the kubelet expands.
fn env(inputs: &SidecarInputs) -> Vec<EnvVar> {
    let config = inputs.config;
    let mut env = vec![
        field_env("K8S_NODE_NAME", "spec.nodeName"),
        field_env("K8S_NAMESPACE_NAME", "metadata.namespace"),
        field_env("K8S_POD_NAME", "metadata.name"),
        field_env("K8S_POD_UID", "metadata.uid"),
    ];
    if let Some(service) = inputs.service_name {
        env.push(value_env("OTEL_SERVICE_NAME", service));
    }
    env.push(value_env("OTEL_RESOURCE_ATTRIBUTES", resource_attributes(inputs)));
    if !config.otlp_endpoint.is_empty() {
        env.push(value_env("OTEL_EXPORTER_OTLP_ENDPOINT", &config.otlp_endpoint));
    }
    if !config.otlp_protocol.is_empty() {
        env.push(value_env("OTEL_EXPORTER_OTLP_PROTOCOL", &config.otlp_protocol));
    }
    if let Some(exe) = inputs.target_exe {
        env.push(value_env("OTEL_GO_AUTO_TARGET_EXE", exe));
    }
    env.push(value_env("GOSIGHT_TARGET_CONTAINERS", inputs.traced_containers.join(",")));
    env.push(value_env("GOSIGHT_BPFFS", &config.bpffs));
    env.push(value_env("GOSIGHT_PROPAGATION", if inputs.propagation { "on" } else { "off" }));
    env
}

/// OTEL_RESOURCE_ATTRIBUTES: the pod's identity (from the downward API), the
/// traced container when there is exactly one, the workload, and
/// `service.instance.id` = `<namespace>.<pod>.<container>` (OpenTelemetry's
/// Kubernetes convention; `<namespace>.<pod>` when several containers are traced).
fn resource_attributes(inputs: &SidecarInputs) -> String {
    let mut attributes: Vec<(String, String)> = vec![
        ("k8s.namespace.name".into(), "$(K8S_NAMESPACE_NAME)".into()),
        ("k8s.pod.name".into(), "$(K8S_POD_NAME)".into()),
        ("k8s.pod.uid".into(), "$(K8S_POD_UID)".into()),
        ("k8s.node.name".into(), "$(K8S_NODE_NAME)".into()),
    ];
    let single = match inputs.traced_containers {
        [one] => Some(one.as_str()),
        _ => None,
    };
    if let Some(container) = single {
        attributes.push(("k8s.container.name".into(), container.into()));
    }
    attributes.extend(inputs.workload.attributes.iter().map(|(k, v)| (k.to_string(), v.clone())));
    let instance = match single {
        Some(container) => format!("$(K8S_NAMESPACE_NAME).$(K8S_POD_NAME).{container}"),
        None => "$(K8S_NAMESPACE_NAME).$(K8S_POD_NAME)".into(),
    };
    attributes.push(("service.instance.id".into(), instance));
    // Kubernetes names cannot contain ',' or '=', the format's separators.
    attributes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(
        config: &'a SidecarConfig,
        workload: &'a Workload,
        traced: &'a [String],
        propagation: bool,
    ) -> SidecarInputs<'a> {
        SidecarInputs {
            config,
            image: "img",
            propagation,
            target_exe: None,
            traced_containers: traced,
            service_name: Some("svc"),
            workload,
        }
    }

    fn env_value(c: &Container, name: &str) -> Option<String> {
        c.env.as_ref()?.iter().find(|e| e.name == name)?.value.clone()
    }

    #[test]
    fn propagation_off_drops_the_cgroup_mount() {
        let config = SidecarConfig::defaults();
        let w = Workload::default();
        let traced = ["app".to_string()];
        let s = build(&inputs(&config, &w, &traced, false));
        let caps = s.container.security_context.as_ref().unwrap().capabilities.as_ref().unwrap();
        assert_eq!(caps.add.as_deref().unwrap(), ["SYS_ADMIN", "SYS_PTRACE"]);
        assert_eq!(caps.drop.as_deref().unwrap(), ["ALL"]);
        assert_eq!(s.volumes.len(), 2, "bpffs and the empty token directory");
        assert_eq!(s.container.command, None, "the image's entrypoint, no launcher");
        assert_eq!(env_value(&s.container, "GOSIGHT_PROPAGATION").as_deref(), Some("off"));
        let on = build(&inputs(&config, &w, &traced, true));
        assert_eq!(on.volumes.len(), 3, "and the node's cgroup tree");
        assert_eq!(on.container.security_context, s.container.security_context, "the same privileges");
    }

    #[test]
    fn several_traced_containers_have_no_container_name() {
        let config = SidecarConfig::defaults();
        let w = Workload::default();
        let traced = ["a".to_string(), "b".to_string()];
        let s = build(&inputs(&config, &w, &traced, true));
        let attrs = env_value(&s.container, "OTEL_RESOURCE_ATTRIBUTES").unwrap();
        assert!(!attrs.contains("k8s.container.name"), "{attrs}");
        assert!(attrs.ends_with("service.instance.id=$(K8S_NAMESPACE_NAME).$(K8S_POD_NAME)"), "{attrs}");
        assert_eq!(env_value(&s.container, "GOSIGHT_TARGET_CONTAINERS").as_deref(), Some("a,b"));
    }
}
