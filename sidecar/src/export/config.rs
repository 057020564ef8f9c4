//! Export settings read from the standard OpenTelemetry environment variables.
//!
//! Who reads what:
//!
//! * Read here: `OTEL_TRACES_EXPORTER`, the OTLP protocol
//!   (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, then `OTEL_EXPORTER_OTLP_PROTOCOL`), which picks the
//!   transport, and the batching variables `OTEL_BSP_*`, because we run our own batcher
//!   instead of the SDK's `BatchSpanProcessor`.
//! * Read by `opentelemetry-otlp` 0.33 itself when an exporter is built:
//!   `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, `_HEADERS`, `_TIMEOUT`, `_COMPRESSION` (both
//!   transports) and `_INSECURE` (gRPC only). We never pass these on, so the crate's
//!   rules apply (for HTTP the per-signal endpoint is used as is, the generic one gets
//!   `/v1/traces` appended). We only look at them to describe the effective settings
//!   in the start-up log and to warn about values the crate would silently ignore
//!   (its own warnings are compiled out without its `internal-logs` feature).
//!
//! All parsing goes through a lookup closure so tests never touch the process env.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::bail;

use super::otlp_env::{
    effective_compression, effective_endpoint, effective_timeout, header_names, parse_protocol, OtlpProtocol,
};

/// Where spans go (`OTEL_TRACES_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExporterKind {
    /// OTLP to a collector (default).
    Otlp,
    /// Human-readable lines on stdout.
    Console,
    /// Count and discard.
    None,
}

/// Settings of our batcher (`OTEL_BSP_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// Longest time a span waits in the queue before an export is attempted.
    pub schedule_delay: Duration,
    /// Bound on one export call, retries included.
    pub export_timeout: Duration,
    /// Capacity of the single queue shared by all targets.
    pub max_queue_size: usize,
    /// Most spans handed to the exporters per pass; a full batch triggers an export.
    pub max_export_batch_size: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            schedule_delay: Duration::from_millis(5_000),
            export_timeout: Duration::from_millis(30_000),
            max_queue_size: 2_048,
            max_export_batch_size: 512,
        }
    }
}

/// OTLP settings. Apart from `protocol`, the values describe what `opentelemetry-otlp`
/// will resolve from the environment; they are passed to it only when set explicitly
/// through [`ExportConfig::with_otlp_endpoint`] / [`ExportConfig::with_otlp_timeout`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// Transport and encoding.
    pub protocol: OtlpProtocol,
    /// Effective endpoint URL (for HTTP including the `/v1/traces` path).
    pub endpoint: String,
    /// Effective per-request timeout (also the crate's retry deadline).
    pub timeout: Duration,
    /// Effective compression (`gzip`, `zstd`), `None` for uncompressed.
    pub compression: Option<String>,
    /// Names of the extra headers / gRPC metadata (values are not kept: they may be secrets).
    pub header_names: Vec<String>,
    pub(crate) endpoint_explicit: bool,
    pub(crate) timeout_explicit: bool,
}

/// Everything the export stage needs; see the module docs for the variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// Selected exporter.
    pub exporter: ExporterKind,
    /// OTLP settings (unused unless `exporter` is [`ExporterKind::Otlp`]).
    pub otlp: OtlpConfig,
    /// Batching settings.
    pub batch: BatchConfig,
}

impl ExportConfig {
    /// Reads the process environment; invalid batching values are logged (once) and
    /// replaced by their defaults, an unknown exporter or protocol is an error.
    pub fn from_env() -> anyhow::Result<ExportConfig> {
        let (cfg, warnings) = Self::from_lookup(|name| std::env::var(name).ok())?;
        for warning in warnings {
            tracing::warn!("{warning}");
        }
        Ok(cfg)
    }

    /// Like [`ExportConfig::from_env`] but reads variables through `lookup` and returns
    /// the warnings instead of logging them.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<(ExportConfig, Vec<String>)> {
        let mut warnings = Vec::new();
        // Empty values count as unset, as in opentelemetry-otlp.
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let exporter = match get("OTEL_TRACES_EXPORTER") {
            None => ExporterKind::Otlp,
            Some(raw) => parse_exporter(&raw)?,
        };
        let protocol = match (get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), get("OTEL_EXPORTER_OTLP_PROTOCOL")) {
            (Some(v), _) => parse_protocol("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", &v)?,
            (None, Some(v)) => parse_protocol("OTEL_EXPORTER_OTLP_PROTOCOL", &v)?,
            (None, None) => OtlpProtocol::HttpProtobuf,
        };
        let otlp = OtlpConfig {
            protocol,
            endpoint: effective_endpoint(protocol, &get, &lookup),
            timeout: effective_timeout(&get, &mut warnings),
            compression: effective_compression(&get, &mut warnings),
            header_names: header_names(&lookup),
            endpoint_explicit: false,
            timeout_explicit: false,
        };

        let defaults = BatchConfig::default();
        let ms = |d: Duration| d.as_millis() as u64;
        let mut batch = BatchConfig {
            schedule_delay: Duration::from_millis(positive(
                &get,
                "OTEL_BSP_SCHEDULE_DELAY",
                ms(defaults.schedule_delay),
                &mut warnings,
            )),
            export_timeout: Duration::from_millis(positive(
                &get,
                "OTEL_BSP_EXPORT_TIMEOUT",
                ms(defaults.export_timeout),
                &mut warnings,
            )),
            max_queue_size: positive(&get, "OTEL_BSP_MAX_QUEUE_SIZE", defaults.max_queue_size as u64, &mut warnings)
                as usize,
            max_export_batch_size: positive(
                &get,
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
                defaults.max_export_batch_size as u64,
                &mut warnings,
            ) as usize,
        };
        if batch.max_export_batch_size > batch.max_queue_size {
            // Silent when the batch size is the default (as in the SDK's batch config).
            if get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").is_some() {
                warnings.push(format!(
                    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE={} exceeds OTEL_BSP_MAX_QUEUE_SIZE={}; using {}",
                    batch.max_export_batch_size, batch.max_queue_size, batch.max_queue_size
                ));
            }
            batch.max_export_batch_size = batch.max_queue_size;
        }
        Ok((ExportConfig { exporter, otlp, batch }, warnings))
    }

    /// Overrides the OTLP endpoint; the URL is used as is (no `/v1/traces` is added).
    pub fn with_otlp_endpoint(mut self, url: impl Into<String>) -> Self {
        self.otlp.endpoint = url.into();
        self.otlp.endpoint_explicit = true;
        self
    }

    /// Overrides the OTLP per-request timeout (and the crate's retry deadline).
    pub fn with_otlp_timeout(mut self, timeout: Duration) -> Self {
        self.otlp.timeout = timeout;
        self.otlp.timeout_explicit = true;
        self
    }

    /// One line for the start-up log: exporter kind, protocol, endpoint, batching.
    pub fn describe(&self) -> String {
        let b = &self.batch;
        let mut s = match self.exporter {
            ExporterKind::Otlp => {
                let o = &self.otlp;
                let mut s = format!(
                    "exporter=otlp protocol={} endpoint={} timeout={}ms compression={}",
                    o.protocol.as_str(),
                    o.endpoint,
                    o.timeout.as_millis(),
                    o.compression.as_deref().unwrap_or("none"),
                );
                if !o.header_names.is_empty() {
                    let _ = write!(s, " headers=[{}]", o.header_names.join(","));
                }
                s
            }
            ExporterKind::Console => "exporter=console (stdout)".to_string(),
            ExporterKind::None => "exporter=none (spans are counted and discarded)".to_string(),
        };
        let _ = write!(
            s,
            " batch(delay={}ms, max_batch={}, max_queue={}, export_timeout={}ms)",
            b.schedule_delay.as_millis(),
            b.max_export_batch_size,
            b.max_queue_size,
            b.export_timeout.as_millis()
        );
        s
    }
}

fn parse_exporter(raw: &str) -> anyhow::Result<ExporterKind> {
    let names: Vec<String> = raw.split(',').map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect();
    let [name] = names.as_slice() else {
        bail!("OTEL_TRACES_EXPORTER={raw:?}: exactly one of otlp, console, none is supported");
    };
    Ok(match name.as_str() {
        "otlp" => ExporterKind::Otlp,
        "console" => ExporterKind::Console,
        "none" => ExporterKind::None,
        other => bail!("OTEL_TRACES_EXPORTER: unknown exporter {other:?} (expected otlp, console or none)"),
    })
}

/// A positive integer variable; anything else warns and yields `default`.
fn positive(get: &impl Fn(&str) -> Option<String>, var: &str, default: u64, warnings: &mut Vec<String>) -> u64 {
    let Some(raw) = get(var) else { return default };
    match raw.trim().parse::<u64>() {
        Ok(v) if v > 0 => v,
        _ => {
            warnings.push(format!("{var}={raw:?} is not a positive integer; using the default {default}"));
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Parses a config from `vars` alone, without touching the process environment.
    fn parse(vars: &[(&str, &str)]) -> anyhow::Result<(ExportConfig, Vec<String>)> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ExportConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let (cfg, warnings) = parse(&[]).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(cfg.exporter, ExporterKind::Otlp);
        assert_eq!(cfg.otlp.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(cfg.otlp.endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(cfg.otlp.timeout, Duration::from_secs(10));
        assert_eq!(cfg.otlp.compression, None);
        assert_eq!(cfg.batch, BatchConfig::default());
        assert_eq!(cfg.batch.schedule_delay, Duration::from_millis(5000));
        assert_eq!(cfg.batch.export_timeout, Duration::from_millis(30000));
        assert_eq!(cfg.batch.max_queue_size, 2048);
        assert_eq!(cfg.batch.max_export_batch_size, 512);
        let line = cfg.describe();
        assert!(line.contains("exporter=otlp"), "{line}");
        assert!(line.contains("protocol=http/protobuf"), "{line}");
        assert!(line.contains("endpoint=http://localhost:4318/v1/traces"), "{line}");
    }

    #[test]
    fn exporter_kinds_and_unknown() {
        for (v, k) in [
            ("otlp", ExporterKind::Otlp),
            ("console", ExporterKind::Console),
            ("NONE", ExporterKind::None),
            (" console ", ExporterKind::Console),
            ("", ExporterKind::Otlp),
        ] {
            assert_eq!(parse(&[("OTEL_TRACES_EXPORTER", v)]).unwrap().0.exporter, k);
        }
        let err = parse(&[("OTEL_TRACES_EXPORTER", "zipkin")]).unwrap_err();
        assert!(err.to_string().contains("zipkin"), "{err}");
        let err = parse(&[("OTEL_TRACES_EXPORTER", "otlp,console")]).unwrap_err();
        assert!(err.to_string().contains("otlp,console"), "{err}");
    }

    #[test]
    fn batch_values_and_invalid_fall_back_with_one_warning_each() {
        let (cfg, warnings) = parse(&[
            ("OTEL_BSP_SCHEDULE_DELAY", "250"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "1000"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
        ])
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(cfg.batch.schedule_delay, Duration::from_millis(250));
        assert_eq!(cfg.batch.export_timeout, Duration::from_millis(1000));
        assert_eq!(cfg.batch.max_queue_size, 100);
        assert_eq!(cfg.batch.max_export_batch_size, 10);

        let (cfg, warnings) = parse(&[
            ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
            ("OTEL_BSP_EXPORT_TIMEOUT", "-5"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1.5"),
        ])
        .unwrap();
        assert_eq!(cfg.batch, BatchConfig::default());
        assert_eq!(warnings.len(), 4, "{warnings:?}");
        assert!(warnings[0].contains("OTEL_BSP_SCHEDULE_DELAY"));

        let (cfg, warnings) =
            parse(&[("OTEL_BSP_MAX_QUEUE_SIZE", "64"), ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512")]).unwrap();
        assert_eq!(cfg.batch.max_export_batch_size, 64);
        assert_eq!(warnings.len(), 1);

        let (cfg, warnings) = parse(&[("OTEL_BSP_MAX_QUEUE_SIZE", "64")]).unwrap();
        assert_eq!(cfg.batch.max_export_batch_size, 64);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn explicit_overrides() {
        let (cfg, _) = parse(&[]).unwrap();
        let cfg = cfg.with_otlp_endpoint("http://127.0.0.1:1/v1/traces").with_otlp_timeout(Duration::from_millis(200));
        assert!(cfg.otlp.endpoint_explicit && cfg.otlp.timeout_explicit);
        assert!(cfg.describe().contains("endpoint=http://127.0.0.1:1/v1/traces"));
        assert!(cfg.describe().contains("timeout=200ms"));
    }

    #[test]
    fn protocol_precedence_and_endpoints() {
        let (cfg, _) = parse(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap();
        assert_eq!(cfg.otlp.protocol, OtlpProtocol::Grpc);
        assert_eq!(cfg.otlp.endpoint, "http://localhost:4317");

        let (cfg, _) = parse(&[
            ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
        ])
        .unwrap();
        assert_eq!(cfg.otlp.protocol, OtlpProtocol::HttpJson);
        assert_eq!(cfg.otlp.endpoint, "http://collector:4318/v1/traces");

        let (cfg, _) = parse(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:9999/custom"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
        ])
        .unwrap();
        assert_eq!(cfg.otlp.endpoint, "http://c:9999/custom");

        let (cfg, _) = parse(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "GRPC"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
        ])
        .unwrap();
        assert_eq!(cfg.otlp.endpoint, "http://collector:4317");

        let err = parse(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")]).unwrap_err();
        assert!(err.to_string().contains("thrift"), "{err}");
    }

    #[test]
    fn otlp_timeout_compression_headers() {
        let (cfg, warnings) = parse(&[
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "abc"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "GZIP"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=secret, x-tenant=a%20b,broken"),
        ])
        .unwrap();
        assert_eq!(cfg.otlp.timeout, Duration::from_millis(2500));
        assert_eq!(cfg.otlp.compression.as_deref(), Some("gzip"));
        assert_eq!(cfg.otlp.header_names, vec!["api-key", "x-tenant"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"));
        assert!(!cfg.describe().contains("secret"));

        let (cfg, _) =
            parse(&[("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"), ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")])
                .unwrap();
        assert_eq!(cfg.otlp.compression, None);
    }
}
