//! `GET /calls` (the active calls) and `GET /calls/{id}` (one call, active or recently
//! ended, by SIP Call-ID or Twilio CallSid).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::call::Shared;

pub async fn list(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.registry.active()).into_response()
}

pub async fn one(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.registry.get(&id) {
        Some(record) => Json(record).into_response(),
        None => super::json_error(
            StatusCode::NOT_FOUND,
            format!("no active or recent call with Call-ID or CallSid {id:?}"),
        ),
    }
}
