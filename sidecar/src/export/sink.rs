//! One exporter instance per target: an `opentelemetry_otlp::SpanExporter` whose
//! resource is the target's, the console printer, or the counting `none` sink.
//!
//! `SpanExporter::export` is an `async fn` in a trait (not object safe), so the kinds
//! are an enum rather than a `Box<dyn ..>`.

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry_otlp::{Protocol, RetryPolicy, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _};
use opentelemetry_sdk::Resource;

use super::config::{ExportConfig, ExporterKind, OtlpConfig};
use super::console;
use super::otlp_env::OtlpProtocol;

/// Retries inside one export call, for retryable failures only (connection errors,
/// gRPC UNAVAILABLE etc., HTTP 429/502/503/504). Backoff 100ms, 200ms, 400ms (capped
/// at 1s, plus up to 50ms jitter). `opentelemetry-otlp` stops early once its OTLP timeout
/// has elapsed; our batcher additionally bounds the whole call by `OTEL_BSP_EXPORT_TIMEOUT`.
fn retry_policy() -> RetryPolicy {
    RetryPolicy::recommended()
        .with_max_retries(3)
        .with_initial_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(1))
        .with_max_jitter(Duration::from_millis(50))
}

/// Where one target's spans are sent.
#[derive(Debug)]
pub(crate) enum Sink {
    Otlp(Box<opentelemetry_otlp::SpanExporter>),
    Console(Resource),
    Discard,
    /// Building the exporter failed; every export fails with this message.
    Broken(String),
}

impl Sink {
    /// Builds the sink for one target. Must run inside a tokio runtime (tonic channels
    /// and the async reqwest client need one).
    pub(crate) fn build(cfg: &ExportConfig, resource: &Resource) -> anyhow::Result<Sink> {
        Ok(match cfg.exporter {
            ExporterKind::Otlp => {
                let mut exporter = build_otlp(&cfg.otlp)?;
                exporter.set_resource(resource);
                Sink::Otlp(Box::new(exporter))
            }
            ExporterKind::Console => Sink::Console(resource.clone()),
            ExporterKind::None => Sink::Discard,
        })
    }

    /// Exports one batch of spans of this target.
    pub(crate) async fn export(&self, spans: Vec<SpanData>) -> Result<(), String> {
        match self {
            Sink::Otlp(exporter) => exporter.export(spans).await.map_err(|e| e.to_string()),
            Sink::Console(resource) => {
                console::print_batch(resource, &spans);
                Ok(())
            }
            Sink::Discard => Ok(()),
            Sink::Broken(msg) => Err(msg.clone()),
        }
    }

    /// Final shutdown. Note: `opentelemetry_otlp::SpanExporter` 0.33 does not forward
    /// `shutdown` to its transport (the trait default is a no-op); resources are freed
    /// when the sink is dropped.
    pub(crate) fn shutdown(&self) {
        if let Sink::Otlp(exporter) = self {
            let _ = exporter.shutdown();
        }
    }
}

fn build_otlp(cfg: &OtlpConfig) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    // The reqwest client is built without TLS (no reqwest-rustls / native-tls feature),
    // so an https endpoint would only fail later with an opaque "network error". (For
    // gRPC, tonic's builder reports the missing TLS feature itself.)
    if cfg.protocol != OtlpProtocol::Grpc && cfg.endpoint.starts_with("https://") {
        anyhow::bail!(
            "OTLP endpoint {} uses https, but TLS support is not compiled in \
             (opentelemetry-otlp feature reqwest-rustls); use http:// or a local collector",
            cfg.endpoint
        );
    }
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let built = match cfg.protocol {
        OtlpProtocol::Grpc => {
            let mut b = builder.with_tonic().with_protocol(Protocol::Grpc).with_retry_policy(retry_policy());
            if cfg.endpoint_explicit {
                b = b.with_endpoint(cfg.endpoint.clone());
            }
            if cfg.timeout_explicit {
                b = b.with_timeout(cfg.timeout);
            }
            b.build()
        }
        OtlpProtocol::HttpProtobuf | OtlpProtocol::HttpJson => {
            let protocol =
                if cfg.protocol == OtlpProtocol::HttpJson { Protocol::HttpJson } else { Protocol::HttpBinary };
            let mut b = builder.with_http().with_protocol(protocol).with_retry_policy(retry_policy());
            if cfg.endpoint_explicit {
                b = b.with_endpoint(cfg.endpoint.clone());
            }
            if cfg.timeout_explicit {
                b = b.with_timeout(cfg.timeout);
            }
            b.build()
        }
    };
    built.with_context(|| format!("building the OTLP {} span exporter for {}", cfg.protocol.as_str(), cfg.endpoint))
}
