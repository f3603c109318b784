//! `GET /bans` (the sources the SIP port drops, and why) and `DELETE /bans/{ip}` (lift one).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::json_error;
use crate::call::Shared;

pub async fn list(State(shared): State<Arc<Shared>>) -> Response {
    let Some(bans) = shared.bans().await else {
        return stopped();
    };
    let now = Instant::now();
    let bans: Vec<serde_json::Value> = bans
        .into_iter()
        .map(|b| {
            serde_json::json!({
                "ip": b.ip.to_string(),
                "reason": b.reason.as_str(),
                "banned_secs_ago": now.saturating_duration_since(b.since).as_secs(),
                "remaining_secs": b.until.saturating_duration_since(now).as_secs(),
            })
        })
        .collect();
    Json(serde_json::json!({ "bans": bans })).into_response()
}

pub async fn lift(State(shared): State<Arc<Shared>>, Path(ip): Path<String>) -> Response {
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return json_error(
            StatusCode::BAD_REQUEST,
            format!("{ip:?} is not an IP address"),
        );
    };
    match shared.lift_ban(ip).await {
        Some(true) => {
            tracing::info!(%ip, "admin API lifted a ban");
            (
                StatusCode::OK,
                Json(serde_json::json!({ "lifted": ip.to_string() })),
            )
                .into_response()
        }
        Some(false) => json_error(StatusCode::NOT_FOUND, format!("{ip} is not banned")),
        None => stopped(),
    }
}

fn stopped() -> Response {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the SIP loop has stopped".into(),
    )
}
