//! What the injector puts into pods, as configured by the platform team: the
//! sidecar's image, resources and exporter settings, and which optional gosight
//! features (kernel-side context propagation) the sidecar is given privileges for.
//!
//! Every setting is a command-line flag with an environment variable, so the
//! shipped Deployment configures the injector with plain `env:` entries.

use clap::{Args, ValueEnum};

/// Where the sidecar goes in the pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SidecarMode {
    /// An init container with `restartPolicy: Always` (Kubernetes >= 1.29): starts
    /// before the app's containers and does not keep a Job's pod alive.
    Native,
    /// A regular container appended to `spec.containers`.
    Container,
}

/// The sidecar every injected pod gets.
#[derive(Debug, Clone, Args)]
pub struct SidecarConfig {
    /// Sidecar image (a pod may override it with the gosight.dev/sidecar-image annotation).
    #[arg(long, env = "GOSIGHT_SIDECAR_IMAGE", default_value = "gosight:0.1.0")]
    pub sidecar_image: String,

    /// imagePullPolicy of the sidecar (empty: the cluster's default).
    #[arg(long, env = "GOSIGHT_SIDECAR_IMAGE_PULL_POLICY", default_value = "IfNotPresent")]
    pub sidecar_image_pull_policy: String,

    /// Name of the injected container; a pod that has one by this name is left alone.
    #[arg(long, env = "GOSIGHT_SIDECAR_NAME", default_value = "gosight")]
    pub sidecar_name: String,

    /// Native sidecar (init container that keeps running) or regular container.
    #[arg(long, env = "GOSIGHT_SIDECAR_MODE", value_enum, default_value = "native")]
    pub sidecar_mode: SidecarMode,

    /// CPU request of the sidecar (empty: none).
    #[arg(long, env = "GOSIGHT_SIDECAR_CPU_REQUEST", default_value = "50m")]
    pub cpu_request: String,

    /// Memory request of the sidecar (empty: none).
    #[arg(long, env = "GOSIGHT_SIDECAR_MEMORY_REQUEST", default_value = "64Mi")]
    pub memory_request: String,

    /// CPU limit of the sidecar (empty: none).
    #[arg(long, env = "GOSIGHT_SIDECAR_CPU_LIMIT", default_value = "500m")]
    pub cpu_limit: String,

    /// Memory limit of the sidecar (empty: none).
    #[arg(long, env = "GOSIGHT_SIDECAR_MEMORY_LIMIT", default_value = "256Mi")]
    pub memory_limit: String,

    /// OTEL_EXPORTER_OTLP_ENDPOINT given to the sidecar (empty: gosight's default).
    #[arg(long, env = "GOSIGHT_OTLP_ENDPOINT", default_value = "")]
    pub otlp_endpoint: String,

    /// OTEL_EXPORTER_OTLP_PROTOCOL given to the sidecar: grpc, http/protobuf or
    /// http/json (empty: gosight's default).
    #[arg(long, env = "GOSIGHT_OTLP_PROTOCOL", default_value = "", value_parser = parse_otlp_protocol)]
    pub otlp_protocol: String,

    /// Give the sidecar what kernel-side context propagation needs (NET_ADMIN, the
    /// host's cgroup tree read-only); a pod may turn it off with
    /// gosight.dev/propagation: "off".
    #[arg(long, env = "GOSIGHT_SIDECAR_PROPAGATION", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub propagation: bool,

    /// The node's BPF filesystem, mounted into the sidecar at the same path (maps
    /// shared between the sidecar's probes are pinned there).
    #[arg(long, env = "GOSIGHT_SIDECAR_BPFFS", default_value = "/sys/fs/bpf")]
    pub bpffs: String,
}

impl SidecarConfig {
    /// The defaults, as `injector serve` with no flags and no environment has them
    /// (restated for tests and library users; a unit test checks they agree).
    pub fn defaults() -> Self {
        SidecarConfig {
            sidecar_image: "gosight:0.1.0".into(),
            sidecar_image_pull_policy: "IfNotPresent".into(),
            sidecar_name: "gosight".into(),
            sidecar_mode: SidecarMode::Native,
            cpu_request: "50m".into(),
            memory_request: "64Mi".into(),
            cpu_limit: "500m".into(),
            memory_limit: "256Mi".into(),
            otlp_endpoint: String::new(),
            otlp_protocol: String::new(),
            propagation: true,
            bpffs: "/sys/fs/bpf".into(),
        }
    }
}

/// `on`/`off` (also `true`/`false`, `1`/`0`), as gosight itself reads GOSIGHT_PROPAGATION.
pub fn parse_on_off(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        other => Err(format!("expected on or off, got {other:?}")),
    }
}

fn parse_otlp_protocol(value: &str) -> Result<String, String> {
    match value {
        "" | "grpc" | "http/protobuf" | "http/json" => Ok(value.to_string()),
        other => Err(format!("expected grpc, http/protobuf or http/json, got {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: SidecarConfig,
    }

    #[test]
    fn restated_defaults_match_clap_defaults() {
        // Only meaningful when none of the GOSIGHT_* variables is set in the test's
        // environment; the test process of `cargo test` does not set them.
        let parsed = Cli::try_parse_from(["injector"]).expect("defaults parse").config;
        let restated = SidecarConfig::defaults();
        assert_eq!(format!("{parsed:?}"), format!("{restated:?}"));
    }

    #[test]
    fn bad_protocol_and_switch_are_refused() {
        assert!(Cli::try_parse_from(["injector", "--otlp-protocol", "http"]).is_err());
        assert!(Cli::try_parse_from(["injector", "--propagation", "maybe"]).is_err());
        let c = Cli::try_parse_from(["injector", "--propagation", "off"]).unwrap();
        assert!(!c.config.propagation);
    }
}
