//! A fake Hume EVI chat server, built from reference/hume-evi.md: the same WebSocket handshake
//! (API key in `X-Hume-Api-Key`, 401 on a wrong one, settings in the query), the same message
//! shapes with every required field, and real 48 kHz 16-bit WAV speech.
//!
//! Messages are written here as JSON literals, not with the gateway's own serde types, so a
//! mistake in those types cannot hide in the fake. Everything sent and received is recorded;
//! tests/hume_sdk_validate.py checks both directions against Hume's official Python SDK.
//!
//! Each connection follows a script chosen by its index (0 for the first socket of the run):
//! steps fire when the socket opens, when `session_settings` arrives, or after a number of
//! `audio_input` messages, and each runs its actions in order.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

pub const API_KEY: &str = "fake-evi-key-7f3a";
pub const GROUP_ID: &str = "fake-chat-group-1";
/// The WAV rate EVI documents for `audio_output`.
pub const SPEECH_RATE: u32 = 48_000;
/// Speech amplitude: -12 dBFS.
pub const SPEECH_AMPLITUDE: f64 = 8192.0;

/// When a step fires.
#[derive(Clone, Debug, PartialEq)]
pub enum When {
    /// Right after the WebSocket upgrade.
    Connected,
    /// When the client's `session_settings` arrives.
    SessionSettings,
    /// When the n-th `audio_input` (from 1) of this socket arrives.
    AudioInputs(usize),
}

#[derive(Clone, Debug)]
pub enum Act {
    /// `chat_metadata` with `fake-chat-<conn>` and [`GROUP_ID`].
    Metadata,
    /// `audio_output` chunks of a `hz` tone under segment `id`, indices from `first_index`,
    /// all at once (EVI sends faster than real time).
    Tone {
        id: String,
        hz: f64,
        chunks: u32,
        chunk_ms: u32,
        first_index: u32,
    },
    /// A tone that never ends: `chunk_ms` chunks paced in real time after `lead` at once,
    /// until the socket closes. Segment ids change every 50 chunks, as sentences do.
    Stream {
        hz: f64,
        chunk_ms: u32,
        lead: u32,
    },
    UserMessage {
        text: String,
        interim: bool,
    },
    AssistantMessage(String),
    AssistantProsody,
    UserInterruption,
    AssistantEnd,
    ToolCall {
        name: String,
        response_required: bool,
    },
    ToolResponse {
        name: String,
    },
    ToolError,
    Error {
        code: String,
        slug: String,
        message: String,
    },
    /// The client's settings echoed back (as EVI does to control-plane observers).
    SessionSettingsEcho,
    /// Anything, e.g. a message type the gateway cannot know.
    Raw(Value),
    Sleep(u64),
    /// A close frame with this code.
    Close(u16),
    /// The TCP connection dropped without a close frame.
    Drop,
    /// The server hangs with the connection open: it stops reading (so pings go unanswered)
    /// and stops writing, until the test ends.
    Hang,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub when: When,
    pub acts: Vec<Act>,
}

pub fn step(when: When, acts: Vec<Act>) -> Step {
    Step { when, acts }
}

/// Which way a recorded message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Gateway -> fake.
    In,
    /// Fake -> gateway.
    Out,
}

#[derive(Clone, Debug)]
pub struct Record {
    pub conn: usize,
    pub dir: Dir,
    pub at: Instant,
    pub raw: String,
    pub json: Value,
}

impl Record {
    pub fn kind(&self) -> &str {
        self.json["type"].as_str().unwrap_or("")
    }
}

#[derive(Clone, Debug, Default)]
pub struct ConnRecord {
    pub query: BTreeMap<String, String>,
    pub api_key: Option<String>,
    pub rejected: bool,
    /// The close code the client sent, if it closed.
    pub client_close: Option<u16>,
}

type Script = dyn Fn(usize) -> Vec<Step> + Send + Sync;

struct Shared {
    script: Box<Script>,
    record: bool,
    log: Mutex<Vec<Record>>,
    conns: Mutex<Vec<ConnRecord>>,
    accepted: AtomicUsize,
}

pub struct FakeEvi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeEvi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeEvi {
    /// A fake on 127.0.0.1, port chosen by the system, recording everything.
    pub async fn start(script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static) -> FakeEvi {
        FakeEvi::start_on("127.0.0.1:0".parse().unwrap(), true, script).await
    }

    pub async fn start_on(
        addr: SocketAddr,
        record: bool,
        script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static,
    ) -> FakeEvi {
        let listener = TcpListener::bind(addr).await.expect("fake EVI binds");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            script: Box::new(script),
            record,
            log: Mutex::new(Vec::new()),
            conns: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve(s.clone(), tcp));
            }
        });
        FakeEvi { addr, shared, task }
    }

    /// The chat endpoint, as it goes into the gateway's `url`.
    pub fn url(&self) -> String {
        format!("ws://{}/v0/evi/chat", self.addr)
    }

    pub fn records(&self) -> Vec<Record> {
        self.shared.log.lock().unwrap().clone()
    }

    pub fn conns(&self) -> Vec<ConnRecord> {
        self.shared.conns.lock().unwrap().clone()
    }

    /// Sockets upgraded so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Polls until `pred` holds (true) or `timeout` passes (false).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Record], &[ConnRecord]) -> bool,
    ) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if pred(&self.records(), &self.conns()) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes the recordings as JSON lines, one message per line exactly as it went over the
    /// wire: `(gateway_to_evi, evi_to_gateway)`.
    pub fn write_jsonl(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let records = self.records();
        let write = |name: &str, d: Dir| {
            let path = dir.join(name);
            let text: String = records
                .iter()
                .filter(|r| r.dir == d)
                .map(|r| format!("{}\n", r.raw))
                .collect();
            std::fs::write(&path, text).expect("write recording");
            path
        };
        (
            write("gateway_to_evi.jsonl", Dir::In),
            write("evi_to_gateway.jsonl", Dir::Out),
        )
    }
}

async fn serve(shared: Arc<Shared>, tcp: TcpStream) {
    let seen: Arc<Mutex<ConnRecord>> = Arc::default();
    let s2 = seen.clone();
    let shared2 = shared.clone();
    // tungstenite's callback signature fixes the error type.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let mut rec = s2.lock().unwrap();
        rec.api_key = req
            .headers()
            .get("x-hume-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        rec.query = parse_query(req.uri().query().unwrap_or(""));
        if rec.api_key.as_deref() != Some(API_KEY) {
            rec.rejected = true;
            // Recorded before the 401 leaves: the gateway may turn it into the caller's 503,
            // and the test read the record, before this task runs again.
            shared2.conns.lock().unwrap().push(rec.clone());
            let mut err = ErrorResponse::new(Some("Invalid API key".into()));
            *err.status_mut() = StatusCode::UNAUTHORIZED;
            return Err(err);
        }
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async(tcp, callback).await;
    let conn_rec = seen.lock().unwrap().clone();
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            if !conn_rec.rejected {
                shared.conns.lock().unwrap().push(conn_rec);
            }
            return;
        }
    };
    let conn = {
        let mut conns = shared.conns.lock().unwrap();
        conns.push(conn_rec);
        conns.len() - 1
    };
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let (kill_tx, mut kill_rx) = watch::channel(false);
    let (hang_tx, mut hang_rx) = watch::channel(false);
    let steps = (shared.script)(conn);
    let ctx = Ctx {
        conn,
        tx: tx.clone(),
        kill: Arc::new(kill_tx),
        hang: Arc::new(hang_tx),
        shared: shared.clone(),
    };

    let log = shared.clone();
    let mut writer_kill = kill_rx.clone();
    let mut writer_hang = hang_rx.clone();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = writer_hang.changed() => {
                    let _ = writer_kill.changed().await;
                    break;
                }
                m = rx.recv() => {
                    let Some(m) = m else { break };
                    if let Message::Text(t) = &m {
                        record(&log, conn, Dir::Out, t.as_str());
                    }
                    let closing = matches!(m, Message::Close(_));
                    if sink.send(m).await.is_err() {
                        break;
                    }
                    if closing {
                        // Keep the sink until the reader has seen the client's reply.
                        let _ = writer_kill.changed().await;
                        break;
                    }
                }
                _ = writer_kill.changed() => break,
            }
        }
        sink
    });

    fire(&ctx, &steps, &When::Connected);
    let mut audio_inputs = 0usize;
    loop {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = kill_rx.changed() => break,
            _ = hang_rx.changed() => {
                // Hung: read nothing more (no pongs), keep the connection open.
                let _ = kill_rx.changed().await;
                break;
            }
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                record(&shared, conn, Dir::In, t.as_str());
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                match v["type"].as_str() {
                    Some("session_settings") => fire(&ctx, &steps, &When::SessionSettings),
                    Some("audio_input") => {
                        audio_inputs += 1;
                        fire(&ctx, &steps, &When::AudioInputs(audio_inputs));
                    }
                    _ => {}
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                shared.conns.lock().unwrap()[conn].client_close = Some(code);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    let _ = ctx.kill.send(true);
    drop(ctx);
    drop(tx);
    // Dropping both halves closes the TCP connection.
    let sink = writer.await;
    drop(sink);
    drop(stream);
}

#[derive(Clone)]
struct Ctx {
    conn: usize,
    tx: mpsc::UnboundedSender<Message>,
    kill: Arc<watch::Sender<bool>>,
    hang: Arc<watch::Sender<bool>>,
    shared: Arc<Shared>,
}

fn record(shared: &Shared, conn: usize, dir: Dir, raw: &str) {
    if !shared.record {
        return;
    }
    let json = serde_json::from_str(raw).unwrap_or(Value::Null);
    shared.log.lock().unwrap().push(Record {
        conn,
        dir,
        at: Instant::now(),
        raw: raw.to_string(),
        json,
    });
}

fn fire(ctx: &Ctx, steps: &[Step], when: &When) {
    for s in steps.iter().filter(|s| &s.when == when) {
        let acts = s.acts.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            for a in acts {
                if !run(&ctx, a).await {
                    return;
                }
            }
        });
    }
}

/// Carries out one action; false when the socket is gone.
async fn run(ctx: &Ctx, act: Act) -> bool {
    let send = |v: Value| ctx.tx.send(Message::text(v.to_string())).is_ok();
    match act {
        Act::Metadata => send(json!({
            "type": "chat_metadata",
            "chat_id": format!("fake-chat-{}", ctx.conn),
            "chat_group_id": GROUP_ID,
            "request_id": format!("fake-request-{}", ctx.conn),
        })),
        Act::Tone {
            id,
            hz,
            chunks,
            chunk_ms,
            first_index,
        } => {
            let n = (SPEECH_RATE * chunk_ms / 1000) as usize;
            for i in 0..chunks {
                let index = first_index + i;
                let pcm = tone(hz, index as usize * n, n);
                if !send(audio_output(&id, index, &pcm)) {
                    return false;
                }
            }
            true
        }
        Act::Stream { hz, chunk_ms, lead } => {
            let n = (SPEECH_RATE * chunk_ms / 1000) as usize;
            let mut tick = tokio::time::interval(Duration::from_millis(chunk_ms as u64));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A whole-hertz tone repeats every second: encode each distinct chunk once (the
            // capacity run streams to a hundred calls from this one process).
            let period = if hz.fract() == 0.0 {
                SPEECH_RATE as usize
            } else {
                usize::MAX
            };
            let mut cache: BTreeMap<usize, String> = BTreeMap::new();
            let mut k: u32 = 0;
            loop {
                if k >= lead {
                    tick.tick().await;
                }
                let start = k as usize * n;
                let data = cache
                    .entry(start % period)
                    .or_insert_with(|| {
                        base64::engine::general_purpose::STANDARD.encode(wav(&tone(hz, start, n)))
                    })
                    .clone();
                let msg = json!({
                    "type": "audio_output",
                    "id": format!("stream-{}-{}", ctx.conn, k / 50),
                    "index": k % 50,
                    "data": data,
                });
                if !send(msg) || *ctx.kill.borrow() {
                    return false;
                }
                k += 1;
            }
        }
        Act::UserMessage { text, interim } => send(json!({
            "type": "user_message",
            "message": {"role": "user", "content": text},
            "models": {"prosody": {"scores": prosody_scores(ctx.conn)}},
            "from_text": false,
            "interim": interim,
            "time": {"begin": 0, "end": 1200},
        })),
        Act::AssistantMessage(text) => send(json!({
            "type": "assistant_message",
            "id": "fake-assistant-message-1",
            "message": {"role": "assistant", "content": text},
            "models": {"prosody": {"scores": prosody_scores(ctx.conn + 7)}},
            "from_text": false,
            "is_quick_response": false,
        })),
        Act::AssistantProsody => send(json!({
            "type": "assistant_prosody",
            "id": "fake-assistant-message-1",
            "models": {"prosody": {"scores": prosody_scores(ctx.conn + 3)}},
        })),
        Act::UserInterruption => send(json!({
            "type": "user_interruption",
            "time": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        })),
        Act::AssistantEnd => send(json!({"type": "assistant_end"})),
        Act::ToolCall {
            name,
            response_required,
        } => send(json!({
            "type": "tool_call",
            "name": name,
            "parameters": "{}",
            "tool_call_id": format!("fake-tool-call-{}", ctx.conn),
            "response_required": response_required,
            "tool_type": if name == "hang_up" { "builtin" } else { "function" },
        })),
        Act::ToolResponse { name } => send(json!({
            "type": "tool_response",
            "tool_call_id": format!("fake-builtin-call-{}", ctx.conn),
            "content": "done",
            "tool_name": name,
            "tool_type": "builtin",
        })),
        Act::ToolError => send(json!({
            "type": "tool_error",
            "tool_call_id": format!("fake-builtin-call-{}", ctx.conn),
            "error": "web search timed out",
            "code": "search_timeout",
            "level": "warn",
            "tool_type": "builtin",
        })),
        Act::Error {
            code,
            slug,
            message,
        } => send(json!({
            "type": "error",
            "code": code,
            "slug": slug,
            "message": message,
            "request_id": format!("fake-request-{}", ctx.conn),
        })),
        Act::SessionSettingsEcho => {
            let echoed = ctx
                .shared
                .log
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find(|r| r.conn == ctx.conn && r.dir == Dir::In && r.kind() == "session_settings")
                .map(|r| r.json.clone());
            match echoed {
                Some(v) => send(v),
                None => true,
            }
        }
        Act::Raw(v) => send(v),
        Act::Sleep(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            !ctx.tx.is_closed() && !*ctx.kill.borrow()
        }
        Act::Close(code) => {
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: "fake EVI closes".into(),
            };
            ctx.tx.send(Message::Close(Some(frame))).is_ok()
        }
        Act::Drop => {
            let _ = ctx.kill.send(true);
            false
        }
        Act::Hang => {
            let _ = ctx.hang.send(true);
            false
        }
    }
}

/// `n` samples of the speech tone from sample `start` (phase continuous across chunks).
pub fn tone(hz: f64, start: usize, n: usize) -> Vec<i16> {
    (start..start + n)
        .map(|i| {
            let t = i as f64 / f64::from(SPEECH_RATE);
            (SPEECH_AMPLITUDE * (2.0 * std::f64::consts::PI * hz * t).sin()).round() as i16
        })
        .collect()
}

/// A complete WAV file as EVI sends one per chunk: RIFF/WAVE, `fmt ` (PCM, mono, 48 kHz,
/// 16-bit), then a `LIST` chunk so the audio does not start at byte 44 (readers must walk the
/// chunks), then `data`.
pub fn wav(pcm: &[i16]) -> Vec<u8> {
    let list: &[u8] = b"INFOISFT\x06\x00\x00\x00fake\x00\x00";
    let data_len = (pcm.len() * 2) as u32;
    let mut w = Vec::with_capacity(64 + pcm.len() * 2);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(4 + 24 + 8 + list.len() as u32 + 8 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes()); // PCM
    w.extend_from_slice(&1u16.to_le_bytes()); // mono
    w.extend_from_slice(&SPEECH_RATE.to_le_bytes());
    w.extend_from_slice(&(SPEECH_RATE * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"LIST");
    w.extend_from_slice(&(list.len() as u32).to_le_bytes());
    w.extend_from_slice(list);
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for s in pcm {
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

fn audio_output(id: &str, index: u32, pcm: &[i16]) -> Value {
    json!({
        "type": "audio_output",
        "id": id,
        "index": index,
        "data": base64::engine::general_purpose::STANDARD.encode(wav(pcm)),
    })
}

/// The 48 emotion names of EVI's prosody model, as spelled on the wire.
pub const EMOTIONS: [&str; 48] = [
    "Admiration",
    "Adoration",
    "Aesthetic Appreciation",
    "Amusement",
    "Anger",
    "Anxiety",
    "Awe",
    "Awkwardness",
    "Boredom",
    "Calmness",
    "Concentration",
    "Confusion",
    "Contemplation",
    "Contempt",
    "Contentment",
    "Craving",
    "Desire",
    "Determination",
    "Disappointment",
    "Disgust",
    "Distress",
    "Doubt",
    "Ecstasy",
    "Embarrassment",
    "Empathic Pain",
    "Entrancement",
    "Envy",
    "Excitement",
    "Fear",
    "Guilt",
    "Horror",
    "Interest",
    "Joy",
    "Love",
    "Nostalgia",
    "Pain",
    "Pride",
    "Realization",
    "Relief",
    "Romance",
    "Sadness",
    "Satisfaction",
    "Shame",
    "Surprise (negative)",
    "Surprise (positive)",
    "Sympathy",
    "Tiredness",
    "Triumph",
];

/// All 48 scores: small, except three strong ones that depend on `seed` (so tests know the
/// top three: highest first, EMOTIONS[seed % 48] at 0.9, then +1 at 0.8, then +2 at 0.7).
pub fn prosody_scores(seed: usize) -> Value {
    let mut m = serde_json::Map::new();
    for (i, name) in EMOTIONS.iter().enumerate() {
        let strong = (i + 48 - seed % 48) % 48;
        let v = match strong {
            0 => 0.9,
            1 => 0.8,
            2 => 0.7,
            _ => 0.01 * (i % 10) as f64,
        };
        m.insert(name.to_string(), json!(v));
    }
    Value::Object(m)
}

fn parse_query(q: &str) -> BTreeMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
