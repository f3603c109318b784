//! The mock's HTTP side: Twirp `POST /twirp/livekit.<Service>/<Method>` with protobuf or JSON
//! bodies, and the `/rtc` WebSocket upgrade (handed to the SFU session).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use livekit_api::access_token::{Claims, TokenVerifier};
use livekit_protocol as proto;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use super::{sfu, Command, MockConfig, State, TwirpCall};

pub struct Shared {
    pub config: MockConfig,
    pub state: Arc<Mutex<State>>,
}

pub async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    let mut first = [0u8; 4];
    let Ok(n) = stream.peek(&mut first).await else {
        return;
    };
    if &first[..n] == b"GET " {
        websocket(shared, stream).await;
    } else {
        twirp(shared, stream).await;
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn verify(config: &MockConfig, token: &str) -> Result<Claims, String> {
    TokenVerifier::with_api_key(&config.api_key, &config.api_secret)
        .verify(token)
        .map_err(|e| format!("token: {e}"))
}

/// Checks a `/rtc` join token the way the server and LiveKit's SIP service shape it.
fn check_join_claims(c: &Claims) -> Result<(), String> {
    let v = &c.video;
    let checks = [
        (v.room_join && !v.room.is_empty(), "roomJoin with a room"),
        (v.can_publish(), "canPublish"),
        (v.can_subscribe(), "canSubscribe"),
        (v.can_publish_data(), "canPublishData"),
        (v.can_update_own_metadata(), "canUpdateOwnMetadata"),
        (c.kind == "sip", "kind sip"),
        (c.sub.starts_with("sip_"), "identity sip_<caller>"),
        (c.name.starts_with("Phone "), "name Phone <caller>"),
        (
            c.attributes.get("sip.callStatus").map(String::as_str) == Some("ringing"),
            "sip.callStatus ringing",
        ),
    ];
    for (ok, what) in checks {
        if !ok {
            return Err(format!("join token lacks {what}"));
        }
    }
    Ok(())
}

// The handshake callback's error type is tungstenite's, not ours to shrink.
#[allow(clippy::result_large_err)]
async fn websocket(shared: Arc<Shared>, stream: TcpStream) {
    let mut query = HashMap::new();
    let mut claims = None;
    let mut refused = None;
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let q = req.uri().query().unwrap_or("");
        for pair in q.split('&') {
            if let Some((k, v)) = pair.split_once('=') {
                query.insert(k.to_string(), v.to_string());
            }
        }
        let result = if req.uri().path() != "/rtc" {
            Err(format!("path {}", req.uri().path()))
        } else {
            // The token comes as `access_token` or as a Bearer header (LiveKit's Rust SDK).
            let header = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string);
            let token = query
                .get("access_token")
                .cloned()
                .or(header)
                .unwrap_or_default();
            verify(&shared.config, &token).and_then(|c| check_join_claims(&c).map(|_| c))
        };
        match result {
            Ok(c) => {
                claims = Some(c);
                Ok(resp)
            }
            Err(why) => {
                // Only the dual peer-connection signalling (`/rtc`) is mocked; a client trying
                // the single peer-connection `/rtc/v1` first gets the 404 an older server gives,
                // on which LiveKit's SDKs fall back to `/rtc`.
                let status = if why.starts_with("path") {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::UNAUTHORIZED
                };
                refused = Some(why.clone());
                let mut r = ErrorResponse::new(Some(why));
                *r.status_mut() = status;
                Err(r)
            }
        }
    };
    let ws = tokio_tungstenite::accept_hdr_async(stream, callback).await;
    if let Some(why) = refused {
        shared.state.lock().unwrap().refused.push(why);
        return;
    }
    let (Ok(ws), Some(claims)) = (ws, claims) else {
        return;
    };
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Command>();
    let index = {
        let mut s = shared.state.lock().unwrap();
        s.sessions.push(super::Session {
            room: claims.video.room.clone(),
            claims: Some(claims.clone()),
            query,
            commands: Some(tx),
            ..Default::default()
        });
        s.sessions.len() - 1
    };
    sfu::run(shared, index, claims, ws, rx).await;
}

struct HttpRequest {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

async fn read_request(stream: &mut TcpStream) -> Option<HttpRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some(HttpRequest {
        path,
        headers,
        body,
    })
}

async fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

fn twirp_error(code: &str, msg: &str) -> Vec<u8> {
    serde_json::json!({ "code": code, "msg": msg })
        .to_string()
        .into_bytes()
}

/// Decodes a request body as protobuf or JSON according to its content type.
fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    content_type: &str,
    body: &[u8],
) -> Option<T> {
    if content_type.starts_with("application/json") {
        serde_json::from_slice(body).ok()
    } else {
        T::decode(body).ok()
    }
}

fn encode<T: Message + serde::Serialize>(content_type: &str, msg: &T) -> Vec<u8> {
    if content_type.starts_with("application/json") {
        serde_json::to_vec(msg).unwrap_or_default()
    } else {
        msg.encode_to_vec()
    }
}

async fn twirp(shared: Arc<Shared>, mut stream: TcpStream) {
    let Some(req) = read_request(&mut stream).await else {
        return;
    };
    let ct = req.headers.get("content-type").cloned().unwrap_or_default();
    let method = req
        .path
        .strip_prefix("/twirp/livekit.")
        .unwrap_or("")
        .to_string();
    let token = req
        .headers
        .get("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let claims = verify(&shared.config, token).ok();
    let (status, body, request) = handle(&shared, &method, &ct, &req.body, claims.as_ref());
    shared.state.lock().unwrap().twirp.push(TwirpCall {
        method: method.clone(),
        content_type: ct.clone(),
        request,
        claims,
        status,
    });
    let out_ct = if status == 200 {
        ct.as_str()
    } else {
        "application/json"
    };
    respond(&mut stream, status, out_ct, &body).await;
}

fn handle(
    shared: &Shared,
    method: &str,
    ct: &str,
    body: &[u8],
    claims: Option<&Claims>,
) -> (u16, Vec<u8>, serde_json::Value) {
    let Some(claims) = claims else {
        return (
            401,
            twirp_error("unauthenticated", "invalid token"),
            serde_json::Value::Null,
        );
    };
    let denied = || (403, twirp_error("permission_denied", "missing grant"));
    match method {
        "RoomService/CreateRoom" => {
            let Some(r) = decode::<proto::CreateRoomRequest>(ct, body) else {
                return (
                    400,
                    twirp_error("malformed", "body"),
                    serde_json::Value::Null,
                );
            };
            let json = serde_json::to_value(&r).unwrap_or_default();
            if !claims.video.room_create {
                let (s, b) = denied();
                return (s, b, json);
            }
            let now = unix_ms();
            let mut st = shared.state.lock().unwrap();
            let created = *st.rooms.entry(r.name.clone()).or_insert(now);
            for a in &r.agents {
                st.dispatches.push((r.name.clone(), a.agent_name.clone()));
            }
            let room = proto::Room {
                sid: format!("RM_{}", r.name),
                name: r.name.clone(),
                creation_time: created / 1000,
                creation_time_ms: created,
                empty_timeout: r.empty_timeout,
                ..Default::default()
            };
            (200, encode(ct, &room), json)
        }
        "RoomService/DeleteRoom" => {
            let Some(r) = decode::<proto::DeleteRoomRequest>(ct, body) else {
                return (
                    400,
                    twirp_error("malformed", "body"),
                    serde_json::Value::Null,
                );
            };
            let json = serde_json::to_value(&r).unwrap_or_default();
            if !claims.video.room_create {
                let (s, b) = denied();
                return (s, b, json);
            }
            let mut st = shared.state.lock().unwrap();
            if st.rooms.remove(&r.room).is_none() {
                return (404, twirp_error("not_found", "room"), json);
            }
            st.deleted.push(r.room.clone());
            // Everyone still in the room is told it is gone.
            let mut occupied = false;
            for s in st
                .sessions
                .iter()
                .filter(|s| s.room == r.room && s.ended.is_none())
            {
                occupied = true;
                if let Some(tx) = &s.commands {
                    let _ = tx.send(Command::RoomDeleted);
                }
            }
            if occupied {
                st.deleted_occupied.push(r.room.clone());
            }
            (200, encode(ct, &proto::DeleteRoomResponse {}), json)
        }
        "AgentDispatchService/CreateDispatch" => {
            let Some(r) = decode::<proto::CreateAgentDispatchRequest>(ct, body) else {
                return (
                    400,
                    twirp_error("malformed", "body"),
                    serde_json::Value::Null,
                );
            };
            let json = serde_json::to_value(&r).unwrap_or_default();
            if !claims.video.room_admin || claims.video.room != r.room {
                let (s, b) = denied();
                return (s, b, json);
            }
            let mut st = shared.state.lock().unwrap();
            if !st.rooms.contains_key(&r.room) {
                return (404, twirp_error("not_found", "room"), json);
            }
            st.dispatches.push((r.room.clone(), r.agent_name.clone()));
            let d = proto::AgentDispatch {
                id: format!("AD_{}", st.dispatches.len()),
                agent_name: r.agent_name.clone(),
                room: r.room.clone(),
                ..Default::default()
            };
            (200, encode(ct, &d), json)
        }
        _ => (
            404,
            twirp_error("bad_route", "no such method"),
            serde_json::Value::Null,
        ),
    }
}

/// For the mock's own tests: a raw HTTP/1.1 POST.
pub async fn post(
    addr: std::net::SocketAddr,
    path: &str,
    content_type: &str,
    token: &str,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect mock");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: mock\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body_start = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |i| i + 4);
    (status, out[body_start..].to_vec())
}
