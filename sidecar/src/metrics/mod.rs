//! The one metrics pipeline of gosight: the meter provider and its OTLP (or
//! console) exporter, shared by every instrument — the socket probe's connection
//! metrics (`connections::metrics`) and the RED metrics derived from every probe
//! call ([`red`]).
//!
//! Settings are the standard ones: `OTEL_METRICS_EXPORTER` (`otlp`, the default;
//! `console`; `none`: no provider, no instruments, and the probes send nothing
//! extra), the protocol from `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL` then
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (default `http/protobuf`), and — read by
//! `opentelemetry-otlp` itself — `OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT`, `_HEADERS`,
//! `_TIMEOUT`, `_COMPRESSION`; the interval from `OTEL_METRIC_EXPORT_INTERVAL`.
//!
//! The provider has one resource (gosight's `telemetry.distro.*`): which process a
//! point describes is in the point's own attributes (`service.name` for RED
//! metrics, `process.pid` for connection metrics).

pub mod cardinality;
pub mod red;
pub mod table;

use anyhow::{bail, Context};
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::Resource;

use crate::export::{parse_protocol, OtlpProtocol};

/// Where metrics go (`OTEL_METRICS_EXPORTER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsExporter {
    Otlp(OtlpProtocol),
    Console,
    None,
}

impl MetricsExporter {
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<MetricsExporter> {
        let kind = env("OTEL_METRICS_EXPORTER").unwrap_or_default();
        Ok(match kind.trim() {
            "" | "otlp" => {
                let var = ["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"]
                    .into_iter()
                    .find_map(|k| env(k).filter(|v| !v.trim().is_empty()).map(|v| (k, v)));
                MetricsExporter::Otlp(match var {
                    Some((k, v)) => parse_protocol(k, &v)?,
                    None => OtlpProtocol::HttpProtobuf,
                })
            }
            "console" => MetricsExporter::Console,
            "none" => MetricsExporter::None,
            other => bail!("OTEL_METRICS_EXPORTER={other}: expected otlp, console or none"),
        })
    }
}

/// The meter provider and its periodic exporter.
pub struct MetricsPipeline {
    provider: SdkMeterProvider,
    kind: MetricsExporter,
}

impl MetricsPipeline {
    /// The pipeline `OTEL_METRICS_EXPORTER` asks for; `None` when it says `none`,
    /// or (with one log line) when the settings are unusable. Must run inside the
    /// tokio runtime (the reader exports from a tokio task).
    pub fn from_env() -> Option<MetricsPipeline> {
        let env = |k: &str| std::env::var(k).ok();
        let kind = match MetricsExporter::from_env(&env) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!("metrics off: {e}");
                return None;
            }
        };
        match MetricsPipeline::start(kind) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!("metrics off: {e:#}");
                None
            }
        }
    }

    /// Builds the exporter; `None` for [`MetricsExporter::None`].
    pub fn start(kind: MetricsExporter) -> anyhow::Result<Option<MetricsPipeline>> {
        use opentelemetry_otlp::{MetricExporter, Protocol, WithExportConfig as _};
        let resource = Resource::builder()
            .with_attribute(opentelemetry::KeyValue::new("telemetry.distro.name", "gosight"))
            .with_attribute(opentelemetry::KeyValue::new("telemetry.distro.version", env!("CARGO_PKG_VERSION")))
            .build();
        let builder = SdkMeterProvider::builder().with_resource(resource);
        let provider = match kind {
            MetricsExporter::None => return Ok(None),
            MetricsExporter::Console => builder
                .with_reader(
                    PeriodicReader::builder(
                        opentelemetry_stdout::MetricExporter::default(),
                        opentelemetry_sdk::runtime::Tokio,
                    )
                    .build(),
                )
                .build(),
            MetricsExporter::Otlp(proto) => {
                let exporter = match proto {
                    OtlpProtocol::Grpc => MetricExporter::builder().with_tonic().build(),
                    OtlpProtocol::HttpProtobuf => {
                        MetricExporter::builder().with_http().with_protocol(Protocol::HttpBinary).build()
                    }
                    OtlpProtocol::HttpJson => {
                        MetricExporter::builder().with_http().with_protocol(Protocol::HttpJson).build()
                    }
                }
                .context("OTLP metrics exporter")?;
                builder
                    .with_reader(PeriodicReader::builder(exporter, opentelemetry_sdk::runtime::Tokio).build())
                    .build()
            }
        };
        Ok(Some(MetricsPipeline { provider, kind }))
    }

    /// The meter every gosight instrument is made from.
    pub fn meter(&self) -> Meter {
        self.provider.meter("gosight")
    }

    /// Where the metrics go.
    pub fn kind(&self) -> MetricsExporter {
        self.kind
    }

    /// Exports what is pending and stops.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!("metrics: final export failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[test]
    fn exporter_settings_follow_the_otel_variables() {
        assert_eq!(MetricsExporter::from_env(&env(&[])).unwrap(), MetricsExporter::Otlp(OtlpProtocol::HttpProtobuf));
        assert_eq!(
            MetricsExporter::from_env(&env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])).unwrap(),
            MetricsExporter::Otlp(OtlpProtocol::Grpc)
        );
        let both = [("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json")];
        assert_eq!(MetricsExporter::from_env(&env(&both)).unwrap(), MetricsExporter::Otlp(OtlpProtocol::HttpJson));
        assert_eq!(
            MetricsExporter::from_env(&env(&[("OTEL_METRICS_EXPORTER", "none")])).unwrap(),
            MetricsExporter::None
        );
        assert!(MetricsExporter::from_env(&env(&[("OTEL_METRICS_EXPORTER", "prometheus")]))
            .unwrap_err()
            .to_string()
            .contains("expected otlp"));
    }
}
