//! The validating admission webhook, served over HTTPS by every replica
//! (each keeps the same index, so any replica answers the same way).
//! Decisions come from [`crate::admission`]; this module is the HTTP shell:
//! AdmissionReview in and out, metrics, and the serving certificate and
//! ValidatingWebhookConfiguration it keeps current.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use barelb_api::{AddressPool, BGPPeer, LoadBalancerPolicy};
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::admission::{self, Review, View};
use crate::metrics::{KindLabels, Metrics, PolicyLabels, ResultLabels};
use crate::serving_cert::Source;

pub mod certs;
pub mod config;
pub(crate) mod tls;

/// The view the controller publishes and the webhook reads.
pub type SharedView = Arc<RwLock<Arc<View>>>;

/// How the webhook is served and registered.
#[derive(Clone, Debug)]
pub struct Settings {
    pub addr: SocketAddr,
    /// How long to go on answering after shutdown (see `tls::serve`).
    pub drain: Duration,
    /// The operator's namespace (for the CA Secret).
    pub namespace: String,
    /// Secret holding the CA (`ca.crt`, `ca.key`).
    pub ca_secret: String,
    /// Names and addresses the serving certificate is valid for.
    pub cert_names: Vec<String>,
    /// How long each issued serving certificate is valid (renewed at 2/3).
    pub cert_lifetime: Duration,
    /// A directory with `tls.crt`, `tls.key` and `ca.crt` (cert-manager);
    /// when set the operator does not issue certificates itself.
    pub cert_dir: Option<PathBuf>,
    pub config: config::Registration,
}

/// Loads or issues the serving certificate, registers the webhook, and
/// serves until `shutdown` turns true.
pub async fn run(
    client: Client,
    settings: Settings,
    view: SharedView,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let source = match &settings.cert_dir {
        Some(dir) => Source::Dir(dir.clone()),
        None => Source::Ca {
            ca: Arc::new(
                certs::load_or_create_ca(&client, &settings.namespace, &settings.ca_secret).await?,
            ),
            names: settings.cert_names.clone(),
            lifetime: settings.cert_lifetime,
        },
    };
    let (certs, first) =
        crate::serving_cert::start("webhook", source, metrics.clone(), shutdown.clone())?;
    if let Some(ca_pem) = &first.ca_pem {
        config::apply(&client, &settings.config, ca_pem).await?;
    }
    let app = router(view, metrics.clone());
    tls::serve(settings.addr, settings.drain, certs, app, metrics, shutdown).await
}

#[derive(Clone)]
struct AppState {
    view: SharedView,
    metrics: Arc<Metrics>,
}

/// The webhook's routes: `POST /validate/{services,addresspools,...}`.
pub fn router(view: SharedView, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/validate/{kind}", post(validate))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(AppState { view, metrics })
        .layer(TraceLayer::new_for_http())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(10),
        ))
        // The apiserver caps request bodies at 3 MiB; an AdmissionReview
        // carries the object twice on update.
        .layer(RequestBodyLimitLayer::new(8 * 1024 * 1024))
}

#[tracing::instrument(
    name = "admission",
    skip_all,
    fields(kind = %kind, object = tracing::field::Empty, result = tracing::field::Empty)
)]
async fn validate(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    Json(review): Json<AdmissionReview<DynamicObject>>,
) -> Json<AdmissionReview<DynamicObject>> {
    let started = Instant::now();
    let req: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "malformed AdmissionReview");
            state
                .metrics
                .admission_requests
                .get_or_create(&ResultLabels {
                    kind,
                    result: "error".into(),
                })
                .inc();
            return Json(AdmissionResponse::invalid(e.to_string()).into_review());
        }
    };
    let mut view = current(&state.view);
    if let Some(ns) = req
        .namespace
        .as_deref()
        .filter(|_| req.kind.kind == "Service")
    {
        // A namespace created in the same apply as its Services (the usual
        // GitOps case) reaches our watch a moment after the apiserver
        // admitted it: wait for it rather than judge its labels unseen.
        let deadline = Instant::now() + NAMESPACE_WAIT;
        while view.synced && !view.namespaces.contains_key(ns) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            view = current(&state.view);
        }
    }
    // What the response and the log need, before the request moves into
    // the review.
    let mut resp = AdmissionResponse::from(&req);
    let (op, dry_run) = (req.operation.clone(), req.dry_run);
    let name = format!(
        "{}{}",
        req.namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default(),
        req.name
    );
    let span = tracing::Span::current();
    span.record("object", name.as_str());
    // Policy evaluation blocks (on the engine's workers, bounded in time):
    // keep it off the async executor, inside this review's span.
    let outcome = tokio::task::spawn_blocking({
        let span = span.clone();
        move || span.in_scope(|| decide(&view, req))
    })
    .await;
    let (review, result) = match outcome {
        Ok(Ok(r)) => {
            let result = if !r.allowed() {
                "denied"
            } else if r.warnings.is_empty() {
                "allowed"
            } else {
                "warned"
            };
            (r, result)
        }
        Ok(Err(e)) => (Review::deny(e), "error"),
        Err(e) => (
            Review::deny(format!(
                "the barelb webhook failed on this object ({e}); retry"
            )),
            "error",
        ),
    };
    span.record("result", result);
    let m = &state.metrics;
    m.admission_requests
        .get_or_create(&ResultLabels {
            kind: kind.clone(),
            result: result.into(),
        })
        .inc();
    m.admission_duration
        .get_or_create(&KindLabels { kind: kind.clone() })
        .observe(started.elapsed().as_secs_f64());
    if let Some(policy) = &review.denied_by {
        m.policy_denials
            .get_or_create(&PolicyLabels {
                policy: policy.clone(),
            })
            .inc();
    }
    if let Some(msg) = &review.denial {
        // Denials quote what users wrote: kept on one line for kubectl.
        let msg = barelb_core::text::one_line(msg);
        tracing::info!(kind, object = %name, op = ?op, dry_run, message = %msg, "denied");
        resp = resp.deny(msg);
    } else {
        tracing::debug!(kind, object = %name, op = ?op, "allowed");
    }
    if !review.warnings.is_empty() {
        let one_line = |w: String| barelb_core::text::one_line(&w).into_owned();
        resp.warnings = Some(review.warnings.into_iter().map(one_line).collect());
    }
    Json(resp.into_review())
}

/// How long a Service review waits for its namespace to reach the view.
const NAMESPACE_WAIT: Duration = Duration::from_secs(3);

fn current(view: &SharedView) -> Arc<View> {
    match view.read() {
        Ok(v) => v.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// Dispatches one request by kind. `Err` is a request the webhook cannot
/// read (an object of the wrong shape), answered with a denial.
fn decide(view: &View, req: AdmissionRequest<DynamicObject>) -> Result<Review, String> {
    let kind = req.kind.kind.as_str();
    fn parse<K>(o: Option<DynamicObject>, kind: &str) -> Result<Option<K>, String>
    where
        K: kube::Resource + serde::de::DeserializeOwned,
    {
        o.map(|o| {
            o.try_parse::<K>().map_err(|e| {
                format!("{kind} cannot be read: {e}; check the object against the schema")
            })
        })
        .transpose()
    }
    if req.operation == Operation::Connect {
        return Ok(Review::allow());
    }
    match kind {
        "Service" => {
            let (Some(new), old) = (
                parse::<Service>(req.object, kind)?,
                parse::<Service>(req.old_object, kind)?,
            ) else {
                return Ok(Review::allow());
            };
            Ok(admission::review_service(view, &new, old.as_ref()))
        }
        "AddressPool" => {
            let new = parse::<AddressPool>(req.object, kind)?;
            let old = parse::<AddressPool>(req.old_object, kind)?;
            Ok(admission::review_pool(view, new.as_ref(), old.as_ref()))
        }
        "LoadBalancerPolicy" => match parse::<LoadBalancerPolicy>(req.object, kind)? {
            Some(p) => Ok(admission::review_policy(view, &p)),
            None => Ok(Review::allow()),
        },
        "BGPPeer" => match parse::<BGPPeer>(req.object, kind)? {
            Some(p) => Ok(admission::review_peer(&p)),
            None => Ok(Review::allow()),
        },
        other => Ok(Review::deny(format!(
            "the barelb webhook does not validate {other}; remove it from the ValidatingWebhookConfiguration"
        ))),
    }
}
