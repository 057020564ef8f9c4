//! Bounded cardinality for the RED metrics: each (metric, attribute) pair admits at
//! most [`MAX_VALUES`] distinct values; later new values are recorded as
//! [`OVERFLOW`] and counted, so garbage traffic (random hosts, method names, table
//! names) cannot grow the series without bound. The first overflow of a pair is
//! logged at once; the counts are in the totals line at shutdown and in the
//! `gosight.metrics.attribute.overflows` counter.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use opentelemetry::Value;

/// Distinct values one attribute of one metric may take.
pub const MAX_VALUES: usize = 100;

/// The value recorded in place of values beyond the cap (a string whatever the
/// attribute's type).
pub const OVERFLOW: &str = "_OTHER";

/// The values seen so far, per (metric, attribute key).
#[derive(Debug, Default)]
pub struct ValueCap {
    seen: Mutex<HashMap<(&'static str, &'static str), Seen>>,
}

#[derive(Debug, Default)]
struct Seen {
    values: HashSet<String>,
    /// Values recorded as [`OVERFLOW`].
    overflowed: u64,
}

impl ValueCap {
    /// Caps the attributes (key, value) of one point of `metric` in place;
    /// returns the keys whose value was replaced by [`OVERFLOW`].
    pub fn admit(&self, metric: &'static str, attrs: &mut [(&'static str, Value)]) -> Vec<&'static str> {
        let mut replaced = Vec::new();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for (key, value) in attrs.iter_mut() {
            let entry = seen.entry((metric, *key)).or_default();
            let text = value.as_str();
            if entry.values.contains(text.as_ref()) {
                continue;
            }
            if entry.values.len() < MAX_VALUES {
                entry.values.insert(text.into_owned());
                continue;
            }
            entry.overflowed += 1;
            if entry.overflowed == 1 {
                tracing::warn!(
                    metric,
                    attribute = key,
                    limit = MAX_VALUES,
                    "metric attribute has too many distinct values: further new values are recorded as {OVERFLOW} (counted)"
                );
            }
            *value = Value::from(OVERFLOW);
            replaced.push(*key);
        }
        replaced
    }

    /// (metric, attribute, values recorded as [`OVERFLOW`]) for every pair that
    /// overflowed.
    pub fn overflows(&self) -> Vec<(&'static str, &'static str, u64)> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> =
            seen.iter().filter(|(_, s)| s.overflowed > 0).map(|((m, k), s)| (*m, *k, s.overflowed)).collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_beyond_the_cap_become_the_overflow_value_and_are_counted() {
        let cap = ValueCap::default();
        for i in 0..MAX_VALUES + 20 {
            let mut a = vec![("server.address", Value::from(format!("h{i}"))), ("server.port", Value::I64(80))];
            let replaced = cap.admit("m", &mut a);
            if i < MAX_VALUES {
                assert!(replaced.is_empty());
                assert_eq!(a[0].1, Value::from(format!("h{i}")));
            } else {
                assert_eq!(replaced, vec!["server.address"]);
                assert_eq!(a[0].1, Value::from(OVERFLOW));
            }
            assert_eq!(a[1].1, Value::I64(80));
        }
        // A value admitted before the cap keeps being recorded as itself.
        assert!(cap.admit("m", &mut [("server.address", Value::from("h3"))]).is_empty());
        // The same key of another metric has a cap of its own.
        assert!(cap.admit("other", &mut [("server.address", Value::from("h500"))]).is_empty());
        assert_eq!(cap.overflows(), vec![("m", "server.address", 20)]);
    }
}
