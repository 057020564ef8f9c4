//! gosight's injector: a mutating admission webhook that adds the `gosight`
//! sidecar to the pods of opted-in namespaces and to opted-in pods, with the
//! least privilege the sidecar's enabled features need.
//!
//! The pipeline for one request: [`server`] (HTTPS, certificates re-read when
//! they change, see [`tls`]) → [`review`] (AdmissionReview v1 in and out) →
//! [`patch`] (the decision and the JSON patch) → [`sidecar`] (the container,
//! from [`config`], [`annotations`] and [`owner`]). [`certs`] makes a CA
//! and a serving certificate for `injector certs`.

pub mod annotations;
pub mod certs;
pub mod config;
pub mod owner;
pub mod patch;
pub mod review;
pub mod server;
pub mod sidecar;
pub mod tls;
