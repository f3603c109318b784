//! The LiveKit server API calls the gateway makes (Twirp, protobuf bodies, through
//! `livekit-api`'s clients): creating the call's room, dispatching the agent into it, and
//! deleting the room when the call ends.

use std::time::Duration;

use livekit_api::services::agent_dispatch::AgentDispatchClient;
use livekit_api::services::room::{CreateRoomOptions, RoomClient};
use livekit_api::services::ServiceError;
use livekit_protocol as proto;

/// Twirp calls are short; a server that does not answer in this long is treated as down.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A room left empty this long after the last participant is closed by the server, in case
/// our `DeleteRoom` never arrives (the gateway was killed mid-call).
const EMPTY_TIMEOUT_SECS: u32 = 60;
/// `CreateRoom` returns an existing room as it is; one created longer ago than this before
/// our request was not made by us.
const CREATED_SLACK_MS: i64 = 5_000;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ApiError(#[from] ServiceError);

/// The HTTP(S) base of a `ws(s)://` LiveKit URL: the API shares host and port with `/rtc`.
pub fn http_base(ws_url: &str) -> String {
    if let Some(rest) = ws_url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = ws_url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        ws_url.to_string()
    }
}

pub struct RoomApi {
    rooms: RoomClient,
    dispatch: AgentDispatchClient,
}

impl RoomApi {
    pub fn new(ws_url: &str, api_key: &str, api_secret: &str) -> RoomApi {
        let base = http_base(ws_url);
        RoomApi {
            rooms: RoomClient::with_api_key(&base, api_key, api_secret)
                .with_request_timeout(REQUEST_TIMEOUT),
            dispatch: AgentDispatchClient::with_api_key(&base, api_key, api_secret)
                .with_request_timeout(REQUEST_TIMEOUT),
        }
    }

    /// Creates `name` and, when the gateway made it, dispatches `agent_name` into it. Returns
    /// the room and whether the gateway created it (and so deletes it at the end): a room
    /// that was already there (a name collision, or a room made by someone else) is joined but
    /// left alone. `now_ms` is the wall clock of the request, in Unix milliseconds.
    pub async fn create_room(
        &self,
        name: &str,
        agent_name: Option<&str>,
        now_ms: i64,
    ) -> Result<(proto::Room, bool), ApiError> {
        let options = CreateRoomOptions {
            empty_timeout: EMPTY_TIMEOUT_SECS,
            ..Default::default()
        };
        let room = self.rooms.create_room(name, options).await?;
        let created_ms = if room.creation_time_ms > 0 {
            room.creation_time_ms
        } else {
            room.creation_time.saturating_mul(1000)
        };
        let created = created_ms == 0 || created_ms + CREATED_SLACK_MS >= now_ms;
        if created {
            if let Some(agent) = agent_name {
                // The token's room configuration names the agent too, but it only applies
                // when a join creates the room; this room exists already.
                self.dispatch
                    .create_dispatch(proto::CreateAgentDispatchRequest {
                        agent_name: agent.to_string(),
                        room: name.to_string(),
                        ..Default::default()
                    })
                    .await?;
            }
        }
        Ok((room, created))
    }

    pub async fn delete_room(&self, name: &str) -> Result<(), ApiError> {
        self.rooms.delete_room(name).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_base_follows_the_websocket_scheme() {
        assert_eq!(
            http_base("wss://x.livekit.cloud"),
            "https://x.livekit.cloud"
        );
        assert_eq!(http_base("ws://127.0.0.1:7880"), "http://127.0.0.1:7880");
    }
}
