//! RED metrics (rate, errors, duration) from every probe call: each span a probe
//! sends — sampled or not — is recorded once in the duration histogram the
//! [`table`](super::table) assigns it, with the attributes that metric keeps,
//! capped per attribute ([`cardinality`](super::cardinality)), plus `service.name`
//! (the target's, as on its spans: the provider has one resource for every target).
//! Counts and errors are the histograms' counts by status code / `error.type`.
//!
//! While metrics are on the probes send unsampled spans too (`send_unsampled`,
//! `include/span_start.h`); they are recorded here and then dropped from export
//! (`spans::SpanFactory::finish`), so the counts are exact whatever the sampler.

use std::sync::atomic::{AtomicU64, Ordering};

use gosight_uprobes::ProbeSpan;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::{KeyValue, Value};

use super::cardinality::ValueCap;
use super::table::{attributes_of, metric_for, METRICS};

/// The histograms of [`METRICS`], the cap on their attributes, and counts.
pub struct RedMetrics {
    histograms: Vec<Histogram<f64>>,
    cap: ValueCap,
    overflows: Counter<u64>,
    /// Spans recorded, and how many of them were not sampled (not exported).
    recorded: AtomicU64,
    unsampled: AtomicU64,
}

impl RedMetrics {
    /// The instruments, made from gosight's meter.
    pub fn new(meter: &Meter) -> RedMetrics {
        let histograms = METRICS
            .iter()
            .map(|m| {
                meter
                    .f64_histogram(m.name)
                    .with_unit(m.unit)
                    .with_description(m.description)
                    .with_boundaries(m.buckets.to_vec())
                    .build()
            })
            .collect();
        let overflows = meter
            .u64_counter("gosight.metrics.attribute.overflows")
            .with_unit("{measurement}")
            .with_description(
                "Measurements whose attribute value was recorded as _OTHER: the attribute had too many distinct values",
            )
            .build();
        RedMetrics {
            histograms,
            cap: ValueCap::default(),
            overflows,
            recorded: AtomicU64::new(0),
            unsampled: AtomicU64::new(0),
        }
    }

    /// Records `span` of the service named `service` (nothing when no metric
    /// takes its kind of span).
    pub fn record(&self, span: &ProbeSpan, service: &Value) {
        let Some(i) = metric_for(span) else { return };
        let metric = METRICS[i];
        let mut attrs = attributes_of(metric, span);
        let replaced = self.cap.admit(metric.name, &mut attrs);
        let mut points: Vec<KeyValue> = Vec::with_capacity(attrs.len() + 1);
        points.push(KeyValue::new("service.name", service.clone()));
        points.extend(attrs.into_iter().map(|(k, v)| KeyValue::new(k, v)));
        self.histograms[i].record(metric.value(span.end_ns.saturating_sub(span.start_ns)), &points);
        for key in replaced {
            self.overflows.add(
                1,
                &[KeyValue::new("gosight.metric.name", metric.name), KeyValue::new("gosight.metric.attribute", key)],
            );
        }
        self.recorded.fetch_add(1, Ordering::Relaxed);
        if !span.sampled() {
            self.unsampled.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Logs what was recorded and which attributes overflowed their cap.
    pub fn report_totals(&self) {
        let overflows: Vec<String> = self.cap.overflows().iter().map(|(m, k, n)| format!("{m}/{k}={n}")).collect();
        tracing::info!(
            recorded = self.recorded.load(Ordering::Relaxed),
            unsampled = self.unsampled.load(Ordering::Relaxed),
            attribute_limit = super::cardinality::MAX_VALUES,
            overflowed = %overflows.join(" "),
            "RED metrics totals"
        );
    }
}
