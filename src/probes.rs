//! The probe and scrape endpoints: `/healthz` and `/readyz` on the API address (beside the
//! admin API), and `/metrics` on its own address so it can stay cluster-internal.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;

use crate::health::Health;
use crate::metrics::Metrics;

pub fn api_router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

/// 200 while the process can work; 503 with the reason once it cannot (a fatal producer
/// error), so the kubelet restarts it.
async fn healthz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    match health.fatal() {
        None => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "failed", "reason": reason})),
        ),
    }
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let readiness = health.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness))
}

pub fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(metrics): State<Arc<Metrics>>| async move {
                (
                    [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                    metrics.render(),
                )
            }),
        )
        .with_state(metrics)
}
