//! The admin HTTP server on `[http] listen`: `/healthz`, `/metrics`, `/calls`,
//! `/calls/{id}`, `/bans`, the LiveKit debug views, and the TwiML webhook `POST /twilio/voice`.
//!
//! Everything but `/healthz` and the webhook (which Twilio signs instead) needs
//! `Authorization: Bearer <token>` when `http.auth_token_env` is set.

pub mod bans;
pub mod calls;
pub mod livekit;
pub mod twiml;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::call::Shared;

/// Serves the admin API on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, router(shared))
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "admin HTTP server stopped");
    }
}

/// The routes, with the bearer check on the protected ones.
pub fn router(shared: Arc<Shared>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/calls", get(calls::list))
        .route("/calls/{id}", get(calls::one))
        .route("/bans", get(bans::list))
        .route("/bans/{ip}", axum::routing::delete(bans::lift))
        .route("/livekit/rooms", get(livekit::rooms))
        .route("/livekit/sip/inbound-trunks", get(livekit::inbound_trunks))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            require_token,
        ));
    Router::new()
        .merge(protected)
        .route("/healthz", get(healthz))
        .route("/twilio/voice", post(twiml::voice))
        .with_state(shared)
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ok\n").into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    // Bans end on their own: count the ones in force at the scrape.
    if let Some(bans) = shared.bans().await {
        shared.metrics.set_active_bans(bans.len());
    }
    let streams = &shared.sip.streams;
    let c = &streams.counters;
    let count = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    shared
        .metrics
        .set_media_reactor_calls(&shared.engine.load());
    shared.metrics.set_sip_connections([
        streams.len() as u64,
        count(&c.accepted),
        count(&c.refused),
        count(&c.closed_bad),
    ]);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        shared.metrics.render(),
    )
        .into_response()
}

async fn require_token(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if let Some(token) = shared.live().config.http.auth_token.as_deref() {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| same_secret(g, token)) {
            tracing::warn!(path = %req.uri().path(), "admin API: missing or wrong bearer token");
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "bearer token required\n",
            )
                .into_response();
        }
    }
    next.run(req).await
}

/// Compares two secrets in constant time, their lengths included (both are hashed first).
pub(crate) fn same_secret(a: &str, b: &str) -> bool {
    let ha = Sha256::digest(a.as_bytes());
    let hb = Sha256::digest(b.as_bytes());
    ha.ct_eq(&hb).into()
}

/// A JSON error body with a status.
pub(crate) fn json_error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}
