//! A scriptable bot that speaks Twilio's bidirectional Media Streams (reference/ai-legs.md §1),
//! for the edge cases a real bot framework will not produce on demand: marks, clear, a bot that
//! closes, drops or hangs, one that floods. Its messages are JSON literals written from
//! Twilio's documentation, not the gateway's own code. Everything it receives is recorded with
//! its arrival time; the request's headers too.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// When a step fires.
#[derive(Clone, Debug, PartialEq)]
pub enum When {
    /// When `start` arrives.
    Start,
    /// When the n-th `media` (from 1) arrives.
    Media(usize),
    /// When a `dtmf` with this digit arrives.
    Dtmf(char),
}

#[derive(Clone, Debug)]
pub enum Act {
    /// From now on, every inbound `media` payload goes straight back as `media`.
    Echo,
    /// The same, `n` caller frames to a message, as Pipecat sends 40 ms messages (n = 2).
    EchoBatched(usize),
    /// `ms` of a `hz` tone (mu-law, -12 dBFS), in messages of `chunk` bytes, all at once.
    Tone {
        hz: f64,
        ms: u32,
        chunk: usize,
    },
    Mark(String),
    Clear,
    /// Close with a close frame.
    Close(u16, String),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// Stop reading (pings go unanswered) but keep the connection open.
    Hang,
    /// `media` whose payload is not base64, then a binary frame, then an unknown event.
    Garbage,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub when: When,
    pub acts: Vec<Act>,
}

pub fn step(when: When, acts: Vec<Act>) -> Step {
    Step { when, acts }
}

/// One message from the gateway.
#[derive(Clone, Debug)]
pub struct Received {
    pub at: Instant,
    pub msg: Value,
}

impl Received {
    pub fn event(&self) -> &str {
        self.msg["event"].as_str().unwrap_or("")
    }
}

#[derive(Default)]
struct Shared {
    /// Off for capacity runs: 50 messages a second per call add up.
    record: bool,
    received: Mutex<Vec<Received>>,
    headers: Mutex<Vec<(String, String)>>,
    /// How each connection ended, as the bot saw it.
    ended: Mutex<Vec<String>>,
}

pub struct FakeBot {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeBot {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeBot {
    /// A bot on 127.0.0.1 running `script` on every connection, recording everything.
    pub async fn start(script: Vec<Step>) -> FakeBot {
        FakeBot::start_on("127.0.0.1:0".parse().unwrap(), true, script).await
    }

    pub async fn start_on(addr: SocketAddr, record: bool, script: Vec<Step>) -> FakeBot {
        let listener = TcpListener::bind(addr).await.expect("fake bot binds");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            record,
            ..Shared::default()
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve(s.clone(), tcp, script.clone()));
            }
        });
        FakeBot { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/media", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn of(&self, event: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.event() == event)
            .collect()
    }

    pub fn headers(&self) -> Vec<(String, String)> {
        self.shared.headers.lock().unwrap().clone()
    }

    pub fn ended(&self) -> Vec<String> {
        self.shared.ended.lock().unwrap().clone()
    }

    /// Polls until `pred` holds (true) or `timeout` passes (false).
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&FakeBot) -> bool) -> bool {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if pred(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        pred(self)
    }
}

/// `ms` of a `hz` tone at -12 dBFS, mu-law (G.711, written here from the standard's formula
/// rather than with the gateway's codec).
pub fn tone(hz: f64, ms: u32) -> Vec<u8> {
    let n = 8 * ms as usize;
    (0..n)
        .map(|i| {
            let x = 8192.0 * (2.0 * std::f64::consts::PI * hz * i as f64 / 8000.0).sin();
            mulaw(x as i16)
        })
        .collect()
}

fn mulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    let s = (s.min(32635) + BIAS) as u32;
    let exponent = (31 - s.leading_zeros()).saturating_sub(7).min(7);
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

async fn serve(shared: Arc<Shared>, tcp: tokio::net::TcpStream, script: Vec<Step>) {
    let sh = shared.clone();
    // tungstenite's callback signature returns its (large) ErrorResponse; not ours to shrink.
    #[allow(clippy::result_large_err)]
    let record_headers = move |req: &Request, resp: Response| {
        let mut h = sh.headers.lock().unwrap();
        for (k, v) in req.headers() {
            h.push((k.as_str().to_string(), v.to_str().unwrap_or("").to_string()));
        }
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(tcp, record_headers).await else {
        return;
    };
    let mut stream_sid = String::new();
    // Frames per echoed message (0: no echo), and the caller audio not sent back yet.
    let mut echo = 0;
    let mut pending: Vec<u8> = Vec::new();
    let mut media = 0;
    let b64 = base64::engine::general_purpose::STANDARD;
    let end = loop {
        let Some(item) = ws.next().await else {
            break "closed without a close frame".to_string();
        };
        let text = match item {
            Ok(Message::Text(t)) => t,
            Ok(Message::Close(f)) => break format!("close {:?}", f.map(|f| u16::from(f.code))),
            Ok(_) => continue,
            Err(e) => break format!("error {e}"),
        };
        let Ok(msg) = serde_json::from_str::<Value>(text.as_str()) else {
            break format!("not JSON: {text}");
        };
        let event = msg["event"].as_str().unwrap_or("").to_string();
        if shared.record {
            shared.received.lock().unwrap().push(Received {
                at: Instant::now(),
                msg: msg.clone(),
            });
        }
        let when = match event.as_str() {
            "start" => {
                stream_sid = msg["start"]["streamSid"].as_str().unwrap_or("").to_string();
                Some(When::Start)
            }
            "media" => {
                media += 1;
                if echo > 0 {
                    let payload = msg["media"]["payload"].as_str().unwrap_or("");
                    pending.extend(b64.decode(payload).unwrap_or_default());
                    if pending.len() >= 160 * echo {
                        let payload = b64.encode(std::mem::take(&mut pending));
                        let back = json!({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}});
                        if ws.send(Message::text(back.to_string())).await.is_err() {
                            break "send failed".into();
                        }
                    }
                }
                Some(When::Media(media))
            }
            "dtmf" => msg["dtmf"]["digit"]
                .as_str()
                .and_then(|d| d.chars().next())
                .map(When::Dtmf),
            _ => None,
        };
        let Some(when) = when else { continue };
        for s in script.iter().filter(|s| s.when == when) {
            for act in &s.acts {
                let out: Vec<Message> = match act {
                    Act::Echo => {
                        echo = 1;
                        vec![]
                    }
                    Act::EchoBatched(n) => {
                        echo = (*n).max(1);
                        vec![]
                    }
                    Act::Tone { hz, ms, chunk } => tone(*hz, *ms)
                        .chunks(*chunk)
                        .map(|c| {
                            let m = json!({"event": "media", "streamSid": stream_sid,
                                "media": {"payload": b64.encode(c)}});
                            Message::text(m.to_string())
                        })
                        .collect(),
                    Act::Mark(name) => vec![Message::text(
                        json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})
                            .to_string(),
                    )],
                    Act::Clear => vec![Message::text(
                        json!({"event": "clear", "streamSid": stream_sid}).to_string(),
                    )],
                    Act::Close(code, reason) => {
                        let frame = CloseFrame {
                            code: CloseCode::from(*code),
                            reason: reason.clone().into(),
                        };
                        let _ = ws.close(Some(frame)).await;
                        // Drain until the gateway answers the close.
                        while let Some(Ok(_)) = ws.next().await {}
                        shared.ended.lock().unwrap().push(format!("closed {code}"));
                        return;
                    }
                    Act::Drop => {
                        shared.ended.lock().unwrap().push("dropped".into());
                        return;
                    }
                    Act::Hang => {
                        shared.ended.lock().unwrap().push("hung".into());
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    Act::Garbage => vec![
                        Message::text(
                            json!({"event": "media", "streamSid": stream_sid, "media": {"payload": "%%%"}})
                                .to_string(),
                        ),
                        Message::binary(vec![1u8, 2, 3]),
                        Message::text(json!({"event": "transfer", "to": "+15550100"}).to_string()),
                    ],
                };
                for m in out {
                    if ws.send(m).await.is_err() {
                        shared.ended.lock().unwrap().push("send failed".into());
                        return;
                    }
                }
            }
        }
    };
    shared.ended.lock().unwrap().push(end);
}
