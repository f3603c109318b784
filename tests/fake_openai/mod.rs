//! A fake of OpenAI's speech-to-speech WebSocket APIs, Realtime (GA) and GPT-Live, built from
//! reference/ai-legs.md §3-§5 and the event models of the official Python SDK (openai 3.51.0):
//! the same handshake (`Authorization: Bearer`, 401 with an OpenAI error body on a wrong key),
//! every required field of every event it sends and no field the SDK does not define, G.711
//! audio in the format the client configured, and the server's checks of what the client sends
//! (session config, truncation offsets, tool call ids).
//!
//! Messages are written here as JSON literals, not with the gateway's own types, so a mistake in
//! those types cannot hide in the fake. Everything sent and received is recorded;
//! scripts/openai-sdk-check validates both directions against the SDK.
//!
//! Each connection follows a script chosen by its index (0 for the first socket of the run):
//! steps fire when the socket opens, when the client's session config has been answered, after a
//! number of audio appends, or whenever a client event of a given type arrives; each step runs
//! its acts in order in a task of its own, so a `Sleep` never stops the fake from reading.
//! What a real server does on its own (session.created, session.updated, item acks,
//! truncation, cancel, session.closed) the fake does without a script.
#![allow(dead_code)]

mod audio;
mod config;
mod live;
mod realtime;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

// For tests that check the audio (not every one uses them).
#[allow(unused_imports)]
pub use audio::{alaw, mulaw, tone, Fmt};
use audio::{Pacer, ToneChunks};
use config::unknown_param;

pub const API_KEY: &str = "sk-fake-openai-5b1e";
/// Realtime models the fake serves; another `?model=` gets `model_not_found` and a close 1008.
pub const REALTIME_MODELS: [&str; 6] = [
    "gpt-realtime-2",
    "gpt-realtime-2.1",
    "gpt-realtime-2.1-mini",
    "gpt-realtime-1.5",
    "gpt-realtime",
    "gpt-realtime-mini",
];
pub const LIVE_MODELS: [&str; 1] = ["gpt-live-1"];
/// Speech amplitude: -12 dBFS.
pub const AMPLITUDE: f64 = 8192.0;
/// Audio delta length of `Reply` and `LiveAudio`.
pub const CHUNK_MS: u32 = 100;
/// Chunks a paced reply sends at once before going real time (300 ms ahead).
pub const LEAD_CHUNKS: u32 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `/v1/realtime?model=...`, reference §3.
    Realtime,
    /// `/v1/live/sessions`, reference §4.
    Live,
}

/// When a step fires.
#[derive(Clone, Debug, PartialEq)]
pub enum When {
    /// Right after the WebSocket upgrade (and, on Realtime, `session.created`).
    Connected,
    /// After the first `session.update` (Realtime) or `session.start` (Live) was answered with
    /// `session.updated` / `session.started`.
    SessionConfigured,
    /// When the n-th audio append (from 1) of this socket arrives.
    Appends(usize),
    /// Every time a client event of this type arrives, after the fake's own answer to it.
    ClientEvent(String),
}

impl When {
    pub fn client(kind: &str) -> When {
        When::ClientEvent(kind.to_string())
    }
}

#[derive(Clone, Debug)]
pub enum Act {
    // ---- Realtime -------------------------------------------------------------------------
    /// `input_audio_buffer.speech_started` for a new user item; cancels a reply in progress
    /// (`turn_detected`) unless the session turned `interrupt_response` off.
    SpeechStarted,
    /// `speech_stopped`, `input_audio_buffer.committed`, and the user item added/done.
    SpeechStopped,
    /// `conversation.item.input_audio_transcription.delta` + `.completed` for the user item.
    UserTranscript(String),
    /// One audio response: `ms` of a `hz` tone in 100 ms deltas, with `transcript`. Unpaced: all
    /// at once, as the API generates faster than real time. Paced: 300 ms at once, then real
    /// time, and cut short by `SpeechStarted` or the client's `response.cancel`.
    Reply {
        hz: f64,
        ms: u32,
        transcript: String,
        paced: bool,
    },
    /// A response whose output is one `function_call` item.
    FunctionCall {
        name: String,
        arguments_json: String,
    },
    RateLimits,
    /// A Realtime `error` event.
    Error {
        code: String,
        message: String,
        r#type: String,
    },
    // ---- GPT-Live -------------------------------------------------------------------------
    /// `session.output_audio.delta` chunks of 100 ms (paced as `Reply`).
    LiveAudio {
        hz: f64,
        ms: u32,
        paced: bool,
    },
    /// `session.input_transcript.delta` per word.
    InputTranscript(String),
    /// `session.output_transcript.delta` per word.
    OutputTranscript(String),
    /// `session.delegation.created`, then (Responses delegation) `response.event`s ending in a
    /// function call.
    DelegationCall {
        name: String,
        arguments_json: String,
    },
    /// `session.usage.updated` with this cumulative number of seconds.
    Usage(f64),
    Info(String, String),
    LiveError {
        code: String,
        message: String,
    },
    /// `session.closed` with this reason, then a close 1000.
    Closed(String),
    // ---- both -----------------------------------------------------------------------------
    /// Audio that never ends: `chunk_ms` deltas, `lead` at once then real time, until the socket
    /// closes (Realtime: one endless response, still cancellable).
    Stream {
        hz: f64,
        chunk_ms: u32,
        lead: u32,
    },
    /// Anything, e.g. an event the gateway cannot know.
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
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// Request headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The `Authorization: Bearer` token.
    pub api_key: Option<String>,
    /// The HTTP status the upgrade was refused with.
    pub rejected: Option<u16>,
    /// The close code the client sent, if it closed.
    pub client_close: Option<u16>,
    pub appends: usize,
    /// Audio bytes the client appended (decoded from base64).
    pub appended_bytes: usize,
    /// Audio bytes the fake sent.
    pub output_bytes: usize,
}

impl ConnRecord {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A `conversation.item.truncate` the fake accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub conn: usize,
    pub item_id: String,
    pub audio_end_ms: u64,
}

/// The audio of one assistant item (Realtime) as it stands: bytes sent, or the truncated length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentAudio {
    pub conn: usize,
    pub item_id: String,
    pub bytes: usize,
    pub ms: u64,
}

type Script = dyn Fn(usize) -> Vec<Step> + Send + Sync;

struct Shared {
    api: Api,
    script: Box<Script>,
    record: bool,
    log: Mutex<Vec<Record>>,
    conns: Mutex<Vec<ConnRecord>>,
    truncations: Mutex<Vec<Truncation>>,
    /// Connection states, kept for the accessors (only when recording).
    states: Mutex<Vec<(usize, Arc<Mutex<State>>)>>,
    accepted: AtomicUsize,
}

pub struct FakeOpenai {
    pub addr: SocketAddr,
    pub api: Api,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOpenai {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeOpenai {
    /// A fake on 127.0.0.1, port chosen by the system, recording everything.
    pub async fn start(
        api: Api,
        script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static,
    ) -> FakeOpenai {
        FakeOpenai::start_on("127.0.0.1:0".parse().unwrap(), api, true, script).await
    }

    pub async fn start_on(
        addr: SocketAddr,
        api: Api,
        record: bool,
        script: impl Fn(usize) -> Vec<Step> + Send + Sync + 'static,
    ) -> FakeOpenai {
        let listener = TcpListener::bind(addr).await.expect("fake OpenAI binds");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            api,
            script: Box::new(script),
            record,
            log: Mutex::default(),
            conns: Mutex::default(),
            truncations: Mutex::default(),
            states: Mutex::default(),
            accepted: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve(s.clone(), tcp));
            }
        });
        FakeOpenai {
            addr,
            api,
            shared,
            task,
        }
    }

    /// The base URL as it goes into the gateway's config: Realtime clients append
    /// `?model=...`, Live clients use it as is.
    /// A gateway's `[agents.ai]` table pointing at this fake, the key read from `key_env`,
    /// with `lines` added.
    pub fn agent_table(&self, key_env: &str, lines: &str) -> String {
        let api = match self.api {
            Api::Realtime => "realtime",
            Api::Live => "live",
        };
        format!(
            "[agents.ai]\nkind = \"openai\"\napi = \"{api}\"\nurl = \"{}\"\napi_key_env = \"{key_env}\"\n{lines}",
            self.url()
        )
    }

    pub fn url(&self) -> String {
        match self.api {
            Api::Realtime => format!("ws://{}/v1/realtime", self.addr),
            Api::Live => format!("ws://{}/v1/live/sessions", self.addr),
        }
    }

    pub fn records(&self) -> Vec<Record> {
        self.shared.log.lock().unwrap().clone()
    }

    /// Recorded messages of one type, both directions.
    pub fn of(&self, kind: &str) -> Vec<Record> {
        self.records()
            .into_iter()
            .filter(|r| r.kind() == kind)
            .collect()
    }

    /// Every upgrade attempt, refused ones included, in order.
    pub fn conns(&self) -> Vec<ConnRecord> {
        self.shared.conns.lock().unwrap().clone()
    }

    /// Sockets upgraded so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Audio bytes appended per connection (refused upgrades count 0).
    pub fn appended_bytes(&self) -> Vec<usize> {
        self.conns().iter().map(|c| c.appended_bytes).collect()
    }

    pub fn truncations(&self) -> Vec<Truncation> {
        self.shared.truncations.lock().unwrap().clone()
    }

    /// Every assistant audio item sent (Realtime), in order.
    pub fn sent_audio(&self) -> Vec<SentAudio> {
        let states = self.shared.states.lock().unwrap();
        let mut out = Vec::new();
        for (conn, st) in states.iter() {
            for it in st.lock().unwrap().items.iter().filter(|i| i.audio) {
                out.push(SentAudio {
                    conn: *conn,
                    item_id: it.id.clone(),
                    bytes: it.audio_bytes,
                    ms: (it.audio_bytes / it.bytes_per_ms.max(1)) as u64,
                });
            }
        }
        out
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
    /// wire: `(gateway_to_server, server_to_gateway)`, the arguments of scripts/openai-sdk-check.
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
            write("gateway_to_server.jsonl", Dir::In),
            write("server_to_gateway.jsonl", Dir::Out),
        )
    }
}

// ---- connection state ------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct Item {
    id: String,
    /// "assistant", "user", "system", "function_call", "function_call_output", ...
    role: String,
    /// An assistant message with audio: it can be truncated.
    audio: bool,
    audio_bytes: usize,
    bytes_per_ms: usize,
}

/// The response in progress (Realtime): at most one at a time.
struct Active {
    id: String,
    /// Set to the cancel reason (`turn_detected`, `client_cancelled`).
    cancel: watch::Sender<Option<&'static str>>,
}

#[derive(Default)]
struct State {
    // Realtime
    model: String,
    session: Value,
    configured: bool,
    in_fmt: Fmt,
    out_fmt: Fmt,
    items: Vec<Item>,
    /// The user item of the speech in progress (from `SpeechStarted`).
    user_item: Option<String>,
    active: Option<Active>,
    /// Function call ids issued (Realtime call_id, Live delegated call_id).
    calls: Vec<String>,
    // both
    in_bytes: usize,
    appends: usize,
    // Live
    live: Option<Value>,
    closed: bool,
    usage: f64,
    out_ms: u64,
    in_transcript_ms: u64,
    out_transcript_ms: u64,
    delegations: Vec<String>,
}

impl State {
    /// Input audio so far, in ms.
    fn in_ms(&self) -> u64 {
        (self.in_bytes / self.in_fmt.bytes_per_ms()) as u64
    }

    fn last_item(&self) -> Option<String> {
        self.items.last().map(|i| i.id.clone())
    }
}

struct Conn {
    idx: usize,
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Message>,
    kill: watch::Sender<bool>,
    hang: watch::Sender<bool>,
    st: Arc<Mutex<State>>,
    seq: AtomicU64,
    opened: Instant,
}

impl Conn {
    fn api(&self) -> Api {
        self.shared.api
    }

    fn send(&self, v: Value) -> bool {
        self.tx.send(Message::text(v.to_string())).is_ok()
    }

    /// A new id, `<prefix>_fake<conn>x<n>` (unique per fake run).
    fn id(&self, prefix: &str) -> String {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}_fake{}x{n}", self.idx)
    }

    /// Sends `body` as a server event of `kind`, with a fresh `event_id`.
    fn emit(&self, kind: &str, mut body: Value) -> bool {
        body["type"] = json!(kind);
        body["event_id"] = json!(self.id("event"));
        self.send(body)
    }

    fn close(&self, code: u16, reason: &str) -> bool {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        };
        self.tx.send(Message::Close(Some(frame))).is_ok()
    }

    fn alive(&self) -> bool {
        !self.tx.is_closed() && !*self.kill.borrow()
    }

    fn count_output(&self, bytes: usize) {
        self.shared.conns.lock().unwrap()[self.idx].output_bytes += bytes;
    }
}

/// What an act runs with: the connection, and the client event that fired its step.
#[derive(Clone)]
struct Ctx {
    conn: Arc<Conn>,
    /// The `event_id` of the client event that fired the step, if it had one.
    trigger: Option<String>,
}

// ---- server ----------------------------------------------------------------------------------

fn openai_error(message: &str, code: Option<&str>, param: Option<&str>) -> String {
    json!({"error": {"message": message, "type": "invalid_request_error", "param": param,
        "code": code}})
    .to_string()
}

/// Why the upgrade is refused, as (status, body).
fn refuse(api: Api, rec: &ConnRecord) -> Option<(u16, String)> {
    if rec.api_key.as_deref() != Some(API_KEY) {
        let message = match &rec.api_key {
            None => "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                .to_string(),
            Some(k) => format!(
                "Incorrect API key provided: {}. You can find your API key at \
                 https://platform.openai.com/account/api-keys.",
                k.chars().take(8).collect::<String>() + "****"
            ),
        };
        return Some((401, openai_error(&message, Some("invalid_api_key"), None)));
    }
    let (want, what) = match api {
        Api::Realtime => ("/v1/realtime", "Realtime"),
        Api::Live => ("/v1/live/sessions", "Live"),
    };
    if rec.path != want {
        let m = format!(
            "Invalid URL (GET {}): this fake serves {what} at {want}",
            rec.path
        );
        return Some((400, openai_error(&m, None, None)));
    }
    match api {
        Api::Realtime if !rec.query.contains_key("model") => Some((
            400,
            openai_error(
                "Missing required parameter: 'model'.",
                Some("missing_required_parameter"),
                Some("model"),
            ),
        )),
        Api::Live if !rec.query.is_empty() => {
            let k = rec.query.keys().next().unwrap();
            let m = format!("Unknown parameter: '{k}'. Live sessions take no query parameters.");
            Some((400, openai_error(&m, Some("unknown_parameter"), Some(k))))
        }
        _ => None,
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
        rec.path = req.uri().path().to_string();
        rec.query = parse_query(req.uri().query().unwrap_or(""));
        rec.headers = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        rec.api_key = rec
            .header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        if let Some((status, body)) = refuse(shared2.api, &rec) {
            rec.rejected = Some(status);
            // Recorded before the refusal leaves: the test may read it as soon as the gateway
            // has seen the status.
            shared2.conns.lock().unwrap().push(rec.clone());
            let mut err = ErrorResponse::new(Some(body));
            *err.status_mut() = StatusCode::from_u16(status).unwrap();
            err.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Err(err);
        }
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async(tcp, callback).await;
    let conn_rec = seen.lock().unwrap().clone();
    let Ok(ws) = ws else {
        if conn_rec.rejected.is_none() {
            shared.conns.lock().unwrap().push(conn_rec);
        }
        return;
    };
    let model = conn_rec.query.get("model").cloned().unwrap_or_default();
    let idx = {
        let mut conns = shared.conns.lock().unwrap();
        conns.push(conn_rec);
        conns.len() - 1
    };
    shared.accepted.fetch_add(1, Ordering::SeqCst);
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let (kill_tx, mut kill_rx) = watch::channel(false);
    let (hang_tx, mut hang_rx) = watch::channel(false);
    let st = Arc::new(Mutex::new(State {
        model,
        ..State::default()
    }));
    if shared.record {
        shared.states.lock().unwrap().push((idx, st.clone()));
    }
    let conn = Arc::new(Conn {
        idx,
        shared: shared.clone(),
        tx,
        kill: kill_tx,
        hang: hang_tx,
        st,
        seq: AtomicU64::new(1),
        opened: Instant::now(),
    });
    let steps = (shared.script)(idx);

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
                        record(&log, idx, Dir::Out, t.as_str());
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

    if shared.api == Api::Realtime {
        realtime::on_open(&conn);
    }
    fire(&conn, &steps, &When::Connected, None);
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
                record(&shared, idx, Dir::In, t.as_str());
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                let whens = match shared.api {
                    Api::Realtime => realtime::on_event(&conn, &v),
                    Api::Live => live::on_event(&conn, &v),
                };
                let trigger = v["event_id"].as_str().map(str::to_string);
                for w in &whens {
                    fire(&conn, &steps, w, trigger.clone());
                }
                if let Some(kind) = v["type"].as_str() {
                    fire(&conn, &steps, &When::client(kind), trigger);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                shared.conns.lock().unwrap()[idx].client_close = Some(code);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break,
        }
    }
    let _ = conn.kill.send(true);
    // Ends a reply in progress (it holds the connection).
    conn.st.lock().unwrap().active = None;
    drop(conn);
    // Dropping both halves closes the TCP connection.
    let sink = writer.await;
    drop(sink);
    drop(stream);
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

fn fire(conn: &Arc<Conn>, steps: &[Step], when: &When, trigger: Option<String>) {
    for s in steps.iter().filter(|s| &s.when == when) {
        let acts = s.acts.clone();
        let ctx = Ctx {
            conn: conn.clone(),
            trigger: trigger.clone(),
        };
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
    let c = &ctx.conn;
    match act {
        Act::Raw(v) => c.send(v),
        Act::Sleep(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            c.alive()
        }
        Act::Close(code) => c.close(code, "fake OpenAI closes"),
        Act::Drop => {
            let _ = c.kill.send(true);
            false
        }
        Act::Hang => {
            let _ = c.hang.send(true);
            false
        }
        act => match c.api() {
            Api::Realtime => realtime::run(ctx, act).await,
            Api::Live => live::run(ctx, act).await,
        },
    }
}

// ---- shared helpers --------------------------------------------------------------------------

/// Words with their trailing spaces: the deltas of a transcript, concatenating back to it.
fn words(text: &str) -> Vec<&str> {
    text.split_inclusive(' ').collect()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn b64_len(v: &Value) -> Option<usize> {
    let s = v.as_str()?;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .map(|b| b.len())
}

/// Counts an audio append; `None` when `audio` is not base64.
fn count_append(c: &Conn, audio: &Value) -> Option<usize> {
    let bytes = b64_len(audio)?;
    let n = {
        let mut st = c.st.lock().unwrap();
        st.in_bytes += bytes;
        st.appends += 1;
        st.appends
    };
    let mut conns = c.shared.conns.lock().unwrap();
    conns[c.idx].appends = n;
    conns[c.idx].appended_bytes += bytes;
    Some(n)
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
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16) {
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
