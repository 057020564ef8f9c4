//! The kernel socket probe's half in the sidecar: every TCP connection of the pod
//! (Go or not), turned into connection metrics and into the network facts of the
//! Go spans.

pub mod metrics;
pub mod table;
