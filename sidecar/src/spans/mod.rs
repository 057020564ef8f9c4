//! Stage 5 — spans as OpenTelemetry exports them: a probe's [`ProbeSpan`] (built by
//! its library's folder in gosight-uprobes, with the semantic conventions) gets
//! wall-clock times, valid ids and the instrumentation scope; and each target's
//! resource. Ids, parents and the sampling decision come from the kernel (where
//! they are also propagated), so they agree with what went downstream.

use std::borrow::Cow;

use gosight_uprobes::ProbeSpan;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, TraceFlags, TraceId, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::resource::{EnvResourceDetector, Resource};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::clock::Clock;
use crate::discover::Target;

mod produced;
pub use produced::ProducedMessages;

/// Turns probe spans into span data; one per sidecar, shared by every target.
#[derive(Debug, Clone)]
pub struct SpanFactory {
    clock: Clock,
    scope: InstrumentationScope,
    /// Kafka sends by message, for the links of process spans whose message
    /// carried no context.
    produced: std::sync::Arc<ProducedMessages>,
}

impl SpanFactory {
    pub fn new(clock: Clock) -> SpanFactory {
        let scope = InstrumentationScope::builder("gosight").with_version(env!("CARGO_PKG_VERSION")).build();
        SpanFactory { clock, scope, produced: Default::default() }
    }

    /// The exported form of `span`, or None when the kernel did not sample it.
    pub fn finish(&self, span: ProbeSpan) -> Option<SpanData> {
        if !span.sampled() {
            return None; // not sampled: nothing to export
        }
        let parent_span_id = span.parent_span_id.map(SpanId::from_bytes).unwrap_or(SpanId::INVALID);
        let span_context = SpanContext::new(
            nonzero_trace_id(span.trace_id),
            nonzero_span_id(span.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        self.produced.record(&span.kind, &span.attributes, &span_context);
        let mut links = SpanLinks::default();
        links.links.extend(self.produced.link_for(&span.kind, span.parent_span_id.is_some(), &span.attributes));
        Some(SpanData {
            span_context,
            parent_span_id,
            parent_span_is_remote: span.kind == SpanKind::Server && parent_span_id != SpanId::INVALID,
            span_kind: span.kind,
            name: Cow::Owned(span.name),
            start_time: self.clock.to_system_time(span.start_ns),
            end_time: self.clock.to_system_time(span.end_ns.max(span.start_ns)),
            attributes: span.attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links,
            status: span.status,
            instrumentation_scope: self.scope.clone(),
        })
    }
}

fn nonzero_trace_id(b: [u8; 16]) -> TraceId {
    if b == [0; 16] {
        TraceId::from_bytes(rand::random::<u128>().max(1).to_be_bytes())
    } else {
        TraceId::from_bytes(b)
    }
}

fn nonzero_span_id(b: [u8; 8]) -> SpanId {
    if b == [0; 8] {
        SpanId::from_bytes(rand::random::<u64>().max(1).to_be_bytes())
    } else {
        SpanId::from_bytes(b)
    }
}

/// The resource of one target: which process the spans come from.
///
/// `service.name`: `OTEL_SERVICE_NAME`, else `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`, else the executable's file name.
pub fn resource_for(target: &Target) -> Resource {
    let exe = &target.process.exe;
    let exe_name = exe.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let build = &target.binary.build;
    let mut defaults = vec![
        KeyValue::new("service.name", exe_name.clone()),
        KeyValue::new("process.pid", target.process.pid as i64),
        KeyValue::new("process.executable.path", exe.display().to_string()),
        KeyValue::new("process.executable.name", exe_name),
        KeyValue::new("process.runtime.name", "go"),
        KeyValue::new("process.runtime.version", build.go_version.to_string()),
        KeyValue::new("telemetry.distro.name", "gosight"),
        KeyValue::new("telemetry.distro.version", env!("CARGO_PKG_VERSION")),
        KeyValue::new("telemetry.sdk.name", "opentelemetry"),
        KeyValue::new("telemetry.sdk.language", "go"),
    ];
    if let Some(m) = &build.main_module {
        defaults.push(KeyValue::new("process.runtime.description", format!("{} {}", m.path, m.version)));
    }
    let mut b = Resource::builder_empty().with_attributes(defaults).with_detector(Box::new(EnvResourceDetector::new()));
    if let Ok(name) = std::env::var("OTEL_SERVICE_NAME") {
        if !name.trim().is_empty() {
            b = b.with_service_name(name);
        }
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gosight_uprobes::records::span_head;

    fn probe_span(flags: u8) -> ProbeSpan {
        let mut head = span_head { start_ns: 1_000, end_ns: 5_000, has_parent: 1, ..Default::default() };
        head.sc.flags = flags;
        head.parent_span_id = [9; 8];
        ProbeSpan::from_head(&head, SpanKind::Server, "GET /x".into())
    }

    #[test]
    fn ids_times_and_remote_parent() {
        let s = SpanFactory::new(Clock::new()).finish(probe_span(1)).unwrap();
        assert_eq!(s.name, "GET /x");
        assert_ne!(s.span_context.trace_id(), TraceId::INVALID); // all-zero ids are replaced
        assert_ne!(s.span_context.span_id(), SpanId::INVALID);
        assert_eq!(s.parent_span_id, SpanId::from_bytes([9; 8]));
        assert!(s.parent_span_is_remote);
        assert_eq!(s.end_time.duration_since(s.start_time).unwrap().as_nanos(), 4000);
    }

    #[test]
    fn unsampled_is_not_exported() {
        assert!(SpanFactory::new(Clock::new()).finish(probe_span(0)).is_none());
    }
}
