//! One `AdmissionReview` in, one out. The webhook is never in the way: anything
//! that goes wrong after the request has been read answers `allowed: true`
//! without a patch (and is logged); only a body that is not an `AdmissionReview`
//! v1 with a request is refused, as an HTTP 400 with the reason.

use k8s_openapi::api::core::v1::Pod;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube_core::DynamicObject;
use serde_json::Value;

use crate::config::SidecarConfig;
use crate::patch::{decide, Decision, OptIn};

const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";

/// A request body that is not a usable AdmissionReview: answered with HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed AdmissionReview: {}", self.0)
    }
}

/// What happened, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    Skipped(String),
    /// Not a pod CREATE: nothing to do.
    NotApplicable(String),
    /// Something went wrong on our side; the pod is allowed unchanged.
    InternalError(String),
}

/// One answered review.
#[derive(Debug, Clone)]
pub struct Reviewed {
    /// The response `AdmissionReview`.
    pub json: Value,
    pub outcome: Outcome,
    /// `<namespace>/<name>` of the object (`<namespace>/<generateName>*` when it
    /// has no name yet).
    pub object: String,
}

/// Reviews one request body: the response `AdmissionReview` and what happened,
/// or [`Malformed`].
pub fn review(body: &[u8], via: OptIn, config: &SidecarConfig) -> Result<Reviewed, Malformed> {
    let review: AdmissionReview<DynamicObject> =
        serde_json::from_slice(body).map_err(|e| Malformed(format!("not an AdmissionReview: {e}")))?;
    if review.types.api_version != REVIEW_API_VERSION || review.types.kind != "AdmissionReview" {
        return Err(Malformed(format!(
            "expected apiVersion {REVIEW_API_VERSION} kind AdmissionReview, got {:?} {:?}",
            review.types.api_version, review.types.kind
        )));
    }
    let request: AdmissionRequest<DynamicObject> =
        review.try_into().map_err(|_| Malformed("the review has no request".into()))?;
    if request.uid.is_empty() {
        return Err(Malformed("the request has no uid".into()));
    }
    // A pod named by generateName has no name yet: `<prefix>*` says which.
    let generate_name = request.object.as_ref().and_then(|o| o.metadata.generate_name.as_deref());
    let name = match (request.name.as_str(), generate_name) {
        ("", Some(prefix)) => format!("{prefix}*"),
        (name, _) => name.to_string(),
    };
    let object = format!("{}/{name}", request.namespace.as_deref().unwrap_or(""));
    let base = AdmissionResponse::from(&request);
    let (response, outcome) = respond(&request, via, config, base.clone())
        // Building the answer itself failed: allow, unchanged.
        .unwrap_or_else(|error| (base, Outcome::InternalError(error)));
    let (json, outcome) = match serde_json::to_value(response.into_review()) {
        Ok(mut json) => {
            encode_patch(&mut json);
            (json, outcome)
        }
        // Cannot happen with these types; still, the answer is "allowed".
        Err(e) => (
            serde_json::json!({ "apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview",
                                "response": { "uid": request.uid, "allowed": true } }),
            Outcome::InternalError(format!("cannot serialise the response: {e}")),
        ),
    };
    Ok(Reviewed { json, outcome, object })
}

type Answer = Result<(AdmissionResponse, Outcome), String>;

fn respond(
    request: &AdmissionRequest<DynamicObject>,
    via: OptIn,
    config: &SidecarConfig,
    base: AdmissionResponse,
) -> Answer {
    let is_pod = request.kind.group.is_empty() && request.kind.kind == "Pod";
    let not_applicable = |why: String| Ok((base.clone(), Outcome::NotApplicable(why)));
    if !is_pod || request.sub_resource.is_some() {
        return not_applicable(format!("kind {:?} subresource {:?}", request.kind.kind, request.sub_resource));
    }
    if !matches!(request.operation, Operation::Create) {
        return not_applicable(format!("operation {:?}", request.operation));
    }
    let Some(object) = request.object.as_ref() else {
        return Ok((base, Outcome::InternalError("pod CREATE without an object".into())));
    };
    let pod: Pod = match serde_json::to_value(object).and_then(serde_json::from_value) {
        Ok(pod) => pod,
        Err(e) => return Ok((base, Outcome::InternalError(format!("cannot read the pod: {e}")))),
    };
    // A panic while deciding must not turn into a refused pod either.
    let decided = std::panic::catch_unwind(|| decide(&pod, via, config));
    match decided {
        Err(_) => Ok((base, Outcome::InternalError("panic while building the patch".into()))),
        Ok(Err(e)) => Ok((base, Outcome::InternalError(format!("cannot build the patch: {e}")))),
        Ok(Ok(Decision::Skip { reason, warnings })) => Ok((with_warnings(base, warnings), Outcome::Skipped(reason))),
        Ok(Ok(Decision::Inject { patch, warnings })) => match base.clone().with_patch(patch) {
            Ok(r) => Ok((with_warnings(r, warnings), Outcome::Injected)),
            Err(e) => Err(format!("cannot serialise the patch: {e}")),
        },
        Ok(Ok(Decision::Decline { reason, warnings, patch })) => match base.clone().with_patch(patch) {
            Ok(r) => Ok((with_warnings(r, warnings), Outcome::Skipped(reason))),
            Err(e) => Err(format!("cannot serialise the patch: {e}")),
        },
    }
}

/// `response.patch` is bytes, which Kubernetes' JSON carries as base64; serde
/// writes a `Vec<u8>` as an array of numbers, so it is re-encoded here.
fn encode_patch(review: &mut Value) {
    use base64::Engine;
    let Some(patch) = review.pointer_mut("/response/patch") else { return };
    if let Some(bytes) =
        patch.as_array().map(|a| a.iter().filter_map(|b| b.as_u64().map(|b| b as u8)).collect::<Vec<u8>>())
    {
        *patch = Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
}

fn with_warnings(mut response: AdmissionResponse, warnings: Vec<String>) -> AdmissionResponse {
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    response
}
