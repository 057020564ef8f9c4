//! Command line and environment settings of the sidecar.
//!
//! Exporter settings come from the standard `OTEL_*` variables and are read by
//! [`crate::export`]; this module holds what selects and drives the targets.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use gosight_uprobes::{Sampler, Sampling};

/// Zero-code OpenTelemetry tracing for Go services.
///
/// Finds the Go processes it can see (all of them by default, except itself),
/// attaches eBPF uprobes to net/http, and exports spans over OTLP. Exporter settings
/// come from the standard OTEL_* environment variables (OTEL_TRACES_EXPORTER,
/// OTEL_EXPORTER_OTLP_*, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
/// OTEL_TRACES_SAMPLER, OTEL_BSP_*). Log level: OTEL_LOG_LEVEL or RUST_LOG.
#[derive(Debug, Clone, Parser)]
#[command(name = "gosight", version, about, long_about)]
pub struct Config {
    /// Trace only these process ids (repeat or comma-separate).
    #[arg(long = "pid", value_delimiter = ',')]
    pub pids: Vec<u32>,

    /// Trace only processes whose executable matches this path or glob
    /// (`/app/server`, `/usr/local/bin/*`, or a bare file name such as `server`).
    #[arg(long, env = "OTEL_GO_AUTO_TARGET_EXE")]
    pub target_exe: Option<String>,

    /// In a pod: trace only the processes of these containers (comma-separated
    /// names; empty = every container). The injector sets it from the pod's
    /// `gosight.dev/containers` annotation and marks each container's processes
    /// with GOSIGHT_CONTAINER_NAME.
    #[arg(long, env = "GOSIGHT_TARGET_CONTAINERS", value_delimiter = ',')]
    pub target_containers: Vec<String>,

    /// The pod's UID (the injector passes it from the downward API): names the
    /// pod's cgroup on the node, where propagation attaches.
    #[arg(long, env = "K8S_POD_UID", hide = true)]
    pub pod_uid: Option<String>,

    /// How often /proc is rescanned for targets that started or exited.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub scan_interval: Duration,

    /// How often the kernel-to-wall-clock offset is re-estimated.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub clock_refresh: Duration,

    /// Root of the proc filesystem to scan.
    #[arg(long, default_value = "/proc", hide = true)]
    pub proc_root: PathBuf,

    /// Propagate W3C trace context into outgoing HTTP/1 requests, inserted in the
    /// kernel as they leave (sockops + sk_msg; the apps' memory is never written).
    #[arg(long, env = "GOSIGHT_PROPAGATION", default_value = "on", value_parser = parse_on_off)]
    pub propagation: bool,

    /// cgroup v2 directory whose TCP connections get context propagation
    /// (default: the pod, i.e. the parent of gosight's own cgroup, or the root).
    #[arg(long, env = "GOSIGHT_PROPAGATION_CGROUP")]
    pub propagation_cgroup: Option<PathBuf>,

    /// How enrolled sockets are handled: `auto` (the start-up self-check tries
    /// sk_msg alone, then with a pass-through stream verdict, and keeps the first
    /// that behaves), `plain` or `verdict` (that one only, still checked).
    #[arg(long, env = "GOSIGHT_PROPAGATION_MODE", default_value = "auto", value_parser = ["auto", "plain", "verdict"])]
    pub propagation_mode: String,

    /// Watch every TCP connection of gosight's network namespace (the pod) with the
    /// kernel socket probe: connection metrics, and network facts on the spans.
    #[arg(long, env = "GOSIGHT_SOCKET_PROBE", default_value = "on", value_parser = parse_on_off)]
    pub socket_probe: bool,

    /// Offsets database file laid over the embedded one (a ConfigMap mount in
    /// Kubernetes): it extends it, or replaces it when it says `"replace": true`.
    #[arg(long, env = "GOSIGHT_OFFSETS_DB")]
    pub offsets_db: Option<PathBuf>,

    /// BPF filesystem where maps shared between probes are pinned (mounted there
    /// if needed and allowed).
    #[arg(long, env = "GOSIGHT_BPFFS", default_value = "/sys/fs/bpf")]
    pub bpffs: PathBuf,

    /// Time allowed for flushing spans at shutdown.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Parses `250ms`, `10s`, `2m` or a bare number of milliseconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "ms"),
    };
    let n: u64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("invalid duration unit in {s:?} (use ms, s or m)")),
    }
}

/// `on`/`off` (also true/false, 1/0, yes/no).
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "1" | "yes" => Ok(true),
        "off" | "false" | "0" | "no" => Ok(false),
        other => Err(format!("expected on or off, got {other:?}")),
    }
}

/// The sampler from `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (default
/// `parentbased_always_on`), as the probes apply it in the kernel. Err names an
/// unsupported value; the caller falls back to the default.
pub fn sampling_from(sampler: Option<&str>, arg: Option<&str>) -> Result<Sampling, String> {
    let ratio = || -> Result<f64, String> {
        match arg.map(str::trim) {
            None | Some("") => Ok(1.0),
            Some(a) => a
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("OTEL_TRACES_SAMPLER_ARG={a:?} is not a ratio in [0, 1]")),
        }
    };
    let s = sampler.map(|s| s.trim().to_ascii_lowercase()).unwrap_or_default();
    let (root, parent_based) = match s.as_str() {
        "" | "parentbased_always_on" => (Sampler::AlwaysOn, true),
        "always_on" => (Sampler::AlwaysOn, false),
        "always_off" => (Sampler::AlwaysOff, false),
        "parentbased_always_off" => (Sampler::AlwaysOff, true),
        "traceidratio" => (Sampler::TraceIdRatio(ratio()?), false),
        "parentbased_traceidratio" => (Sampler::TraceIdRatio(ratio()?), true),
        other => return Err(format!("OTEL_TRACES_SAMPLER={other:?} is not supported")),
    };
    Ok(Sampling { root, parent_based })
}

/// The log filter: `RUST_LOG` wins (it is the more specific), else `OTEL_LOG_LEVEL`
/// (`debug`, `info`, `warn`, `error`), else `info`.
pub fn log_filter(rust_log: Option<String>, otel_log_level: Option<String>) -> String {
    if let Some(f) = rust_log.filter(|s| !s.trim().is_empty()) {
        return f;
    }
    match otel_log_level.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        Some(l) if ["trace", "debug", "info", "warn", "error"].contains(&l.as_str()) => l,
        Some(l) if l == "warning" => "warn".into(),
        _ => "info".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_millis(7)));
        assert!(parse_duration("1h").is_err());
        assert!(parse_duration("x").is_err());
    }

    #[test]
    fn log_level_precedence() {
        assert_eq!(log_filter(Some("gosight=trace".into()), Some("error".into())), "gosight=trace");
        assert_eq!(log_filter(None, Some("DEBUG".into())), "debug");
        assert_eq!(log_filter(None, Some("bogus".into())), "info");
        assert_eq!(log_filter(None, None), "info");
    }

    #[test]
    fn samplers() {
        assert_eq!(sampling_from(None, None), Ok(Sampling { root: Sampler::AlwaysOn, parent_based: true }));
        assert_eq!(
            sampling_from(Some("always_off"), None),
            Ok(Sampling { root: Sampler::AlwaysOff, parent_based: false })
        );
        assert_eq!(
            sampling_from(Some("parentbased_traceidratio"), Some("0.25")),
            Ok(Sampling { root: Sampler::TraceIdRatio(0.25), parent_based: true })
        );
        assert!(sampling_from(Some("traceidratio"), Some("2")).is_err());
        assert!(sampling_from(Some("xray"), None).is_err());
    }

    #[test]
    fn pids_comma_or_repeated() {
        let c = Config::parse_from(["gosight", "--pid", "1,2", "--pid", "3"]);
        assert_eq!(c.pids, vec![1, 2, 3]);
    }
}
