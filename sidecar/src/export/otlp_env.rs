//! What `opentelemetry-otlp` 0.33 will resolve from the `OTEL_EXPORTER_OTLP_*` variables.
//!
//! The crate reads endpoint, headers, timeout, compression and (gRPC) insecure from the
//! environment itself; these functions mirror its rules so that the start-up log can
//! show the effective values and so that values it silently skips get a warning.
//! Nothing computed here is passed to the crate.

use std::time::Duration;

use super::config::OtlpProtocol;

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

#[cfg(test)]
mod tests {
    use super::super::config::tests::parse;
    use super::super::config::OtlpProtocol;
    use std::time::Duration;

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
