//! `OTEL_TRACES_EXPORTER=console`: spans printed to stdout, a few lines per span.
//!
//! Our own printer rather than `opentelemetry-stdout`, which prints a resource only
//! with the first batch of an exporter and spends ~15 lines on a span.
//!
//! ```text
//! resource: service.name="checkout" process.pid=4242 (2 spans)
//!   span "GET /items" kind=Server status=Unset dur=1.250ms start=2025-01-02T03:04:05.123456Z
//!     trace=4bf92f3577b34da6a3ce929d0e0e4736 span=00f067aa0ba902b7 parent=-
//!     http.request.method="GET" url.path="/items"
//! ```

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry::trace::SpanId;
use opentelemetry::Value;
use opentelemetry_sdk::trace::SpanData;
use opentelemetry_sdk::Resource;

/// Prints one target's batch to stdout (errors such as a closed pipe are ignored).
pub(crate) fn print_batch(resource: &Resource, spans: &[SpanData]) {
    let text = format_batch(resource, spans);
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

pub(crate) fn format_batch(resource: &Resource, spans: &[SpanData]) -> String {
    let mut s = String::with_capacity(256 * (spans.len() + 1));
    s.push_str("resource:");
    for (k, v) in resource.iter() {
        let _ = write!(s, " {k}=");
        write_value(&mut s, v);
    }
    let _ = writeln!(s, " ({} spans)", spans.len());
    for span in spans {
        let dur = span.end_time.duration_since(span.start_time).unwrap_or_default();
        let _ = writeln!(
            s,
            "  span {:?} kind={:?} status={:?} dur={:.3}ms start={}",
            span.name,
            span.span_kind,
            span.status,
            dur.as_secs_f64() * 1e3,
            rfc3339(span.start_time)
        );
        let parent =
            if span.parent_span_id == SpanId::INVALID { "-".to_string() } else { span.parent_span_id.to_string() };
        let _ = writeln!(
            s,
            "    trace={} span={} parent={}",
            span.span_context.trace_id(),
            span.span_context.span_id(),
            parent
        );
        if !span.attributes.is_empty() {
            s.push_str("   ");
            for kv in &span.attributes {
                let _ = write!(s, " {}=", kv.key);
                write_value(&mut s, &kv.value);
            }
            s.push('\n');
        }
        for event in span.events.iter() {
            let _ = write!(s, "    event {:?} at {}", event.name, rfc3339(event.timestamp));
            for kv in &event.attributes {
                let _ = write!(s, " {}=", kv.key);
                write_value(&mut s, &kv.value);
            }
            s.push('\n');
        }
    }
    s
}

/// Strings quoted (they may contain spaces), everything else as displayed.
fn write_value(s: &mut String, v: &Value) {
    let _ = match v {
        Value::String(text) => write!(s, "{:?}", text.as_str()),
        other => write!(s, "{other}"),
    };
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` in UTC (civil-from-days, proleptic Gregorian).
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let t = UNIX_EPOCH + Duration::from_micros(1_709_210_096_789_012);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.789012Z");
    }

    #[test]
    fn batch_format_has_resource_and_span_lines() {
        let resource = Resource::builder_empty()
            .with_attributes([
                opentelemetry::KeyValue::new("service.name", "checkout"),
                opentelemetry::KeyValue::new("process.pid", 4242i64),
            ])
            .build();
        let span = super::super::tests::span(7, "GET /items");
        let text = format_batch(&resource, &[span]);
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("resource: "), "{text}");
        assert!(first.contains(" service.name=\"checkout\""), "{text}");
        assert!(first.contains(" process.pid=4242"), "{text}");
        assert!(first.ends_with(" (1 spans)"), "{text}");
        assert!(text.contains("span \"GET /items\" kind=Server"), "{text}");
        assert!(text.contains("dur=1.250ms"), "{text}");
        assert!(text.contains("parent=-"), "{text}");
        assert!(text.contains("http.request.method=\"GET\""), "{text}");
    }
}
