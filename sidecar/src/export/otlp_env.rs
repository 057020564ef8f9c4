//! What `opentelemetry-otlp` 0.33 will resolve from the `OTEL_EXPORTER_OTLP_*` variables,
//! and the OTLP protocol they name (which `config` reads to pick the transport).
//!
//! The crate reads endpoint, headers, timeout, compression and (gRPC) insecure from the
//! environment itself; these functions mirror its rules so that the start-up log can
//! show the effective values and so that values it silently skips get a warning.
//! Nothing computed here is passed to the crate.

use std::time::Duration;

use anyhow::bail;

/// OTLP wire protocol, which also selects the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// gRPC over tonic.
    Grpc,
    /// Protobuf over HTTP (reqwest); the default.
    HttpProtobuf,
    /// JSON over HTTP (reqwest).
    HttpJson,
}

impl OtlpProtocol {
    /// The spelling used by the environment variables.
    pub fn as_str(self) -> &'static str {
        match self {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
            OtlpProtocol::HttpJson => "http/json",
        }
    }
}

/// The protocol as the variables spell it (`var` names the variable in the error).
pub(crate) fn parse_protocol(var: &str, raw: &str) -> anyhow::Result<OtlpProtocol> {
    Ok(match raw.trim().to_ascii_lowercase().as_str() {
        "grpc" => OtlpProtocol::Grpc,
        "http/protobuf" => OtlpProtocol::HttpProtobuf,
        "http/json" => OtlpProtocol::HttpJson,
        _ => bail!("{var}: unknown protocol {raw:?} (expected grpc, http/protobuf or http/json)"),
    })
}

/// Default OTLP request timeout applied by `opentelemetry-otlp` when none is set.
const OTLP_TIMEOUT_DEFAULT: Duration = Duration::from_millis(10_000);
const GRPC_ENDPOINT_DEFAULT: &str = "http://localhost:4317";
const HTTP_ENDPOINT_DEFAULT: &str = "http://localhost:4318";
const HTTP_TRACES_PATH: &str = "/v1/traces";

/// Mirrors opentelemetry-otlp's endpoint resolution (display only).
pub(crate) fn effective_endpoint(
    protocol: OtlpProtocol,
    get: &impl Fn(&str) -> Option<String>,
    lookup: &impl Fn(&str) -> Option<String>,
) -> String {
    let signal = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let generic = get("OTEL_EXPORTER_OTLP_ENDPOINT");
    match protocol {
        OtlpProtocol::Grpc => {
            let endpoint = signal.or(generic).unwrap_or_else(|| GRPC_ENDPOINT_DEFAULT.to_string());
            let has_scheme = endpoint.split_once("://").is_some_and(|(scheme, _)| !scheme.contains(['/', '?', '#']));
            // The crate treats an empty per-signal INSECURE as set (it does not fall back).
            let insecure = lookup("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
                .or_else(|| lookup("OTEL_EXPORTER_OTLP_INSECURE"))
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            match (has_scheme, insecure) {
                (true, _) => endpoint,
                (false, true) => format!("http://{endpoint}"),
                (false, false) => format!("https://{endpoint}"),
            }
        }
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => match (signal, generic) {
            (Some(url), _) => url,
            (None, base) => {
                let base = base.unwrap_or_else(|| HTTP_ENDPOINT_DEFAULT.to_string());
                match base.strip_suffix('/') {
                    Some(stripped) => format!("{stripped}{HTTP_TRACES_PATH}"),
                    None => format!("{base}{HTTP_TRACES_PATH}"),
                }
            }
        },
    }
}

/// Mirrors the crate: per-signal first, unparsable values are skipped (we also warn).
pub(crate) fn effective_timeout(get: &impl Fn(&str) -> Option<String>, warnings: &mut Vec<String>) -> Duration {
    for var in ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"] {
        if let Some(raw) = get(var) {
            match raw.trim().parse::<u64>() {
                Ok(ms) => return Duration::from_millis(ms),
                Err(_) => warnings
                    .push(format!("{var}={raw:?} is not a number of milliseconds; opentelemetry-otlp ignores it")),
            }
        }
    }
    OTLP_TIMEOUT_DEFAULT
}

/// Mirrors the crate: per-signal first, `none` stops, invalid values are skipped.
pub(crate) fn effective_compression(
    get: &impl Fn(&str) -> Option<String>,
    warnings: &mut Vec<String>,
) -> Option<String> {
    for var in ["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"] {
        let Some(raw) = get(var) else { continue };
        match raw.trim().to_ascii_lowercase().as_str() {
            "none" => return None,
            c @ ("gzip" | "zstd") => return Some(c.to_string()),
            _ => warnings.push(format!(
                "{var}={raw:?}: unsupported compression (gzip, zstd, none); opentelemetry-otlp ignores it"
            )),
        }
    }
    None
}

/// Header names as the crate parses `key=value,...` (per-signal variable wins even if empty).
pub(crate) fn header_names(lookup: &impl Fn(&str) -> Option<String>) -> Vec<String> {
    let Some(raw) = lookup("OTEL_EXPORTER_OTLP_TRACES_HEADERS").or_else(|| lookup("OTEL_EXPORTER_OTLP_HEADERS")) else {
        return Vec::new();
    };
    raw.split_terminator(',')
        .filter_map(|kv| kv.trim().split_once('='))
        .filter(|(k, v)| !k.trim().is_empty() && !v.trim().is_empty())
        .map(|(k, _)| k.trim().to_string())
        .collect()
}
