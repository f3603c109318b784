//! The seed's two LiveKit debug views, answered from the gateway's own state (the gateway is
//! the SIP service now, so there is no LiveKit SIP API to ask):
//!
//! - `GET /livekit/rooms`: the room of every active call whose agent reported one (the
//!   `livekit_room` detail), shaped like LiveKit's `ListRooms` answer plus the call.
//! - `GET /livekit/sip/inbound-trunks`: the configured trunks, shaped like LiveKit's
//!   `ListSIPInboundTrunk` answer, passwords redacted.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::call::Shared;

/// What stands in for a configured password.
pub const REDACTED: &str = "<redacted>";

pub async fn rooms(State(shared): State<Arc<Shared>>) -> Response {
    let rooms: Vec<Value> = shared
        .registry
        .active()
        .into_iter()
        .filter_map(|call| {
            let room = call.details.get("livekit_room")?;
            let participants = room.get("participants").cloned().unwrap_or(json!([]));
            Some(json!({
                "name": room.get("name").cloned().unwrap_or(Value::Null),
                "sid": room.get("sid").cloned().unwrap_or(Value::Null),
                "num_participants": participants.as_array().map_or(0, Vec::len),
                "participants": participants,
                "call_id": call.call_id,
                "twilio_call_sid": call.twilio_call_sid,
                "agent": call.agent.name,
            }))
        })
        .collect();
    Json(json!({ "rooms": rooms })).into_response()
}

pub async fn inbound_trunks(State(shared): State<Arc<Shared>>) -> Response {
    let live = shared.live();
    let items: Vec<Value> = live
        .config
        .trunks
        .iter()
        .map(|t| {
            let (user, password) = match &t.credentials {
                Some(c) => (c.username.as_str(), REDACTED),
                None => ("", ""),
            };
            json!({
                "sip_trunk_id": t.name,
                "name": t.name,
                "numbers": t.numbers,
                "allowed_addresses": t.allowed.cidrs().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                "auth_username": user,
                "auth_password": password,
                "auth_realm": live.config.sip.realm,
            })
        })
        .collect();
    Json(json!({ "items": items })).into_response()
}
