//! The GPT-Live side of the fake: reference/ai-legs.md §4, event shapes from openai/types/live/
//! (and openai/types/responses/ for the Responses events inside `response.event`).

use super::*;

fn error(c: &Conn, cid: Option<&str>, code: &str, msg: &str, param: Option<&str>) -> bool {
    let mut e = json!({"type": "invalid_request_error", "code": code, "message": msg});
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    if let Some(id) = cid {
        e["client_event_id"] = json!(id);
    }
    c.emit("error", with_cid(json!({ "error": e }), cid))
}

/// Echoes the client's `event_id` as `client_event_id`, as Live replies do.
fn with_cid(mut body: Value, cid: Option<&str>) -> Value {
    if let Some(id) = cid {
        body["client_event_id"] = json!(id);
    }
    body
}

/// A session that cannot start: the error, then a close 1008.
fn refuse(c: &Conn, cid: Option<&str>, code: &str, msg: &str, param: &str) -> Vec<When> {
    error(c, cid, code, msg, Some(param));
    c.st.lock().unwrap().closed = true;
    c.close(1008, code);
    vec![]
}

fn delegation_type(st: &State) -> String {
    let live = st.live.as_ref().unwrap_or(&Value::Null);
    live["delegation"]["type"]
        .as_str()
        .unwrap_or("client")
        .to_string()
}

/// Answers one client event; returns the steps it fires besides `ClientEvent`.
pub(super) fn on_event(c: &Arc<Conn>, v: &Value) -> Vec<When> {
    let eid = v["event_id"].as_str();
    let kind = v["type"].as_str().unwrap_or("");
    let (is_closed, started, responses) = {
        let st = c.st.lock().unwrap();
        (
            st.closed,
            st.live.is_some(),
            delegation_type(&st) == "responses",
        )
    };
    if is_closed {
        return vec![];
    }
    if !started {
        if kind != "session.start" {
            let m = format!("The first client event must be session.start, not '{kind}'.");
            return refuse(c, eid, "session_not_started", &m, "type");
        }
        return session_start(c, v, eid);
    }
    match kind {
        "session.start" => {
            let m = "session.start was already accepted on this connection.";
            error(c, eid, "session_already_started", m, Some("type"));
        }
        "session.update" => session_update(c, v, eid),
        "session.input_audio.append" => match count_append(c, &v["audio"]) {
            Some(n) => return vec![When::Appends(n)],
            None => {
                let m = "Invalid 'audio': expected base64-encoded audio bytes.";
                error(c, eid, "invalid_value", m, Some("audio"));
            }
        },
        "session.input_audio.mute" => {
            c.emit("session.input_audio.muted", with_cid(json!({}), eid));
        }
        "session.input_audio.unmute" => {
            c.emit("session.input_audio.unmuted", with_cid(json!({}), eid));
        }
        "session.instructions.append" | "session.thinking.append" | "session.commentary.append" => {
            append(c, v, eid, kind, responses)
        }
        "response.item.create" => item_create(c, v, eid, responses),
        "response.create" if !responses => {
            let m = "response.create requires Responses delegation.";
            error(c, eid, "invalid_value", m, Some("type"));
        }
        "session.close" => {
            closed(c, "close_requested", eid);
        }
        "response.create"
        | "session.output_audio.fixture.play"
        | "decision.create"
        | "decision.item.create"
        | "decision.item.delete" => {}
        other => {
            let m = format!("Invalid value: '{other}'. It is not a Live client event.");
            error(c, eid, "invalid_value", &m, Some("type"));
        }
    }
    vec![]
}

fn session_start(c: &Arc<Conn>, v: &Value, eid: Option<&str>) -> Vec<When> {
    let s = &v["session"];
    if !s.is_object() {
        let m = "Missing required parameter: 'session'.";
        return refuse(c, eid, "missing_required_parameter", m, "session");
    }
    if let Some(p) = unknown_param(Api::Live, s, "session", "session") {
        return refuse(
            c,
            eid,
            "unknown_parameter",
            &format!("Unknown parameter: '{p}'."),
            &p,
        );
    }
    match s["model"].as_str() {
        None => {
            let m = "Missing required parameter: 'session.model'.";
            return refuse(c, eid, "missing_required_parameter", m, "session.model");
        }
        Some(m) if !LIVE_MODELS.contains(&m) => {
            let m = format!("The model `{m}` does not exist or you do not have access to it.");
            return refuse(c, eid, "model_not_found", &m, "session.model");
        }
        Some(_) => {}
    }
    let (fmt, fmt_json) = match s["audio"].get("format") {
        None => (Fmt::Pcm24, json!({"type": "audio/pcm", "rate": 24000})),
        Some(f) => match live_fmt(f) {
            Ok(fmt) => (fmt, f.clone()),
            Err((code, m, param)) => return refuse(c, eid, code, &m, param),
        },
    };
    let d = &s["delegation"];
    if d["type"] == "responses" && !d["responses"]["model"].is_string() {
        let m = "Missing required parameter: 'session.delegation.responses.model'.";
        let p = "session.delegation.responses.model";
        return refuse(c, eid, "missing_required_parameter", m, p);
    }
    let mut session = s.clone();
    session["id"] = json!(c.id("sess"));
    session["expires_at"] = json!(unix_now() + 3600);
    session["status"] = json!("active");
    session["audio"]["format"] = fmt_json;
    if session["audio"]["output"].get("voice").is_none() {
        session["audio"]["output"]["voice"] = json!("marin");
    }
    if session["delegation"].is_null() {
        session["delegation"] = json!({"type": "client"});
    }
    if session.get("store").is_none() {
        session["store"] = json!(false);
    }
    {
        let mut st = c.st.lock().unwrap();
        st.live = Some(session.clone());
        st.in_fmt = fmt;
        st.out_fmt = fmt;
    }
    c.emit(
        "session.started",
        with_cid(json!({ "session": session }), eid),
    );
    vec![When::SessionConfigured]
}

/// A Live audio format (live/audio_format.py): PCM 16/24 kHz, or G.711 with its rate, 8000.
fn live_fmt(f: &Value) -> Result<Fmt, (&'static str, String, &'static str)> {
    let rate = f.get("rate");
    let bad_rate = |r: &Value, allowed: &str| {
        Err((
            "invalid_value",
            format!("Invalid value: {r}. Supported values are: {allowed}."),
            "session.audio.format.rate",
        ))
    };
    let fmt = match f["type"].as_str() {
        Some("audio/pcmu") => Fmt::Pcmu,
        Some("audio/pcma") => Fmt::Pcma,
        Some("audio/pcm") => match rate {
            Some(r) if *r == 16000 => Fmt::Pcm16,
            Some(r) if *r == 24000 => Fmt::Pcm24,
            Some(r) => return bad_rate(r, "16000, 24000"),
            None => Fmt::Pcm24,
        },
        Some(t) => {
            return Err((
                "invalid_value",
                format!(
                    "Invalid value: '{t}'. Supported values are: 'audio/pcm', 'audio/pcmu', \
                     and 'audio/pcma'."
                ),
                "session.audio.format.type",
            ))
        }
        None => {
            return Err((
                "missing_required_parameter",
                "Missing required parameter: 'session.audio.format.type'.".into(),
                "session.audio.format.type",
            ))
        }
    };
    match rate {
        None => Err((
            "missing_required_parameter",
            "Missing required parameter: 'session.audio.format.rate'.".into(),
            "session.audio.format.rate",
        )),
        Some(r) if matches!(fmt, Fmt::Pcmu | Fmt::Pcma) && *r != 8000 => bad_rate(r, "8000"),
        Some(_) => Ok(fmt),
    }
}

/// `session.update` changes only `delegation` (not its type; merged key by key) and `triggers`.
fn session_update(c: &Conn, v: &Value, eid: Option<&str>) {
    let s = &v["session"];
    let Some(m) = s.as_object() else {
        let m = "Missing required parameter: 'session'.";
        error(c, eid, "missing_required_parameter", m, Some("session"));
        return;
    };
    let unknown = m
        .keys()
        .find(|k| !["delegation", "triggers"].contains(&k.as_str()))
        .map(|k| format!("session.{k}"))
        .or_else(|| unknown_param(Api::Live, s, "session", "session"));
    if let Some(p) = unknown {
        let m = format!(
            "Unknown parameter: '{p}'. session.update changes only delegation and triggers."
        );
        error(c, eid, "unknown_parameter", &m, Some(&p));
        return;
    }
    let mut st = c.st.lock().unwrap();
    let old = delegation_type(&st);
    if let Some(t) = s["delegation"]["type"].as_str().filter(|t| *t != old) {
        drop(st);
        let m = format!("The delegation type cannot be changed from '{old}' to '{t}'.");
        error(c, eid, "invalid_value", &m, Some("session.delegation.type"));
        return;
    }
    let live = st.live.as_mut().unwrap();
    deep_merge(live, s);
    let session = live.clone();
    drop(st);
    c.emit(
        "session.updated",
        with_cid(json!({ "session": session }), eid),
    );
}

fn deep_merge(dst: &mut Value, src: &Value) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) => {
            for (k, v) in s {
                deep_merge(d.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (d, s) => *d = s.clone(),
    }
}

/// `session.{instructions,thinking,commentary}.append` (`delegation_id` key required).
fn append(c: &Conn, v: &Value, eid: Option<&str>, kind: &str, responses: bool) {
    let fail = |code: &str, m: &str, p: &str| {
        error(c, eid, code, m, Some(p));
    };
    if !v["content"].is_string() {
        return fail(
            "missing_required_parameter",
            "Missing required parameter: 'content' (a string).",
            "content",
        );
    }
    let Some(d) = v.get("delegation_id") else {
        return fail(
            "missing_required_parameter",
            "Missing required parameter: 'delegation_id' (null for general context).",
            "delegation_id",
        );
    };
    let st = c.st.lock().unwrap();
    if let Some(d) = d.as_str() {
        if responses {
            drop(st);
            let m = "A non-null delegation_id is not accepted with Responses delegation.";
            return fail("invalid_value", m, "delegation_id");
        }
        if !st.delegations.iter().any(|x| x == d) {
            drop(st);
            let m = format!("Invalid value: '{d}'. No delegation with this id.");
            return fail("invalid_value", &m, "delegation_id");
        }
    }
    let ms = st.in_ms();
    drop(st);
    c.emit(
        &format!("{kind}ed"),
        with_cid(json!({"start_ms": ms, "end_ms": ms}), eid),
    );
}

fn item_create(c: &Conn, v: &Value, eid: Option<&str>, responses: bool) {
    if !responses {
        let m = "response.item.create requires Responses delegation.";
        error(c, eid, "invalid_value", m, Some("type"));
        return;
    }
    let item = &v["item"];
    if !item.is_object() {
        let m = "Missing required parameter: 'item'.";
        error(c, eid, "missing_required_parameter", m, Some("item"));
        return;
    }
    if item["type"] == "function_call_output" {
        let call = item["call_id"].as_str().unwrap_or("");
        if !c.st.lock().unwrap().calls.iter().any(|k| k == call) {
            let m = format!("No delegated function call with call_id '{call}'.");
            error(c, eid, "invalid_value", &m, Some("item.call_id"));
        } else if item.get("output").is_none() {
            let m = "Missing required parameter: 'item.output'.";
            error(c, eid, "missing_required_parameter", m, Some("item.output"));
        }
    }
}

/// `session.closed` (the final snapshot, cumulative usage), then a close 1000.
fn closed(c: &Conn, reason: &str, cid: Option<&str>) -> bool {
    let (session, seconds) = {
        let mut st = c.st.lock().unwrap();
        st.closed = true;
        let elapsed = (c.opened.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        (
            st.live.clone().unwrap_or(Value::Null),
            st.usage.max(elapsed),
        )
    };
    let body = json!({"reason": reason, "session": session, "usage": {"seconds": seconds}});
    c.emit("session.closed", with_cid(body, cid)) && c.close(1000, "session closed")
}

pub(super) async fn run(ctx: &Ctx, act: Act) -> bool {
    let c = &ctx.conn;
    match act {
        Act::LiveAudio { hz, ms, paced } => {
            audio(c, hz, Some(ms), CHUNK_MS, paced.then_some(LEAD_CHUNKS)).await
        }
        Act::Stream { hz, chunk_ms, lead } => audio(c, hz, None, chunk_ms, Some(lead)).await,
        Act::InputTranscript(t) => transcript(c, "session.input_transcript.delta", &t),
        Act::OutputTranscript(t) => transcript(c, "session.output_transcript.delta", &t),
        Act::DelegationCall {
            name,
            arguments_json,
        } => delegation_call(c, &name, &arguments_json),
        Act::Usage(seconds) => {
            c.st.lock().unwrap().usage = seconds;
            c.emit(
                "session.usage.updated",
                json!({"usage": { "seconds": seconds }}),
            )
        }
        Act::Info(code, message) => c.emit("info", json!({"code": code, "message": message})),
        Act::LiveError { code, message } => error(c, None, &code, &message, None),
        Act::Closed(reason) => closed(c, &reason, None),
        other => {
            eprintln!("fake_openai: {other:?} is not a Live act; skipped");
            true
        }
    }
}

/// `session.output_audio.delta`s in the session format (`ms: None`: endless). The primary
/// WebSocket's deltas carry neither `event_id` nor timestamps (live/output_audio_delta_event.py).
async fn audio(c: &Conn, hz: f64, ms: Option<u32>, chunk_ms: u32, lead: Option<u32>) -> bool {
    let fmt = c.st.lock().unwrap().out_fmt;
    let (_keep, mut stop) = watch::channel(None);
    let mut chunks = ToneChunks::new(hz, fmt, chunk_ms);
    let per = chunks.samples.max(1);
    let total = ms.map(|ms| (u64::from(fmt.rate()) * u64::from(ms) / 1000) as usize);
    let mut pacer = Pacer::new(chunk_ms, lead);
    let mut k = 0u32;
    while total.is_none_or(|t| (k as usize) * per < t) {
        pacer.wait(k, &mut stop).await;
        if !c.alive() {
            return false;
        }
        let n = total.map_or(per, |t| per.min(t - k as usize * per));
        let (b64, bytes) = chunks.chunk(k, n);
        c.count_output(bytes);
        c.st.lock().unwrap().out_ms += (bytes / fmt.bytes_per_ms()) as u64;
        let delta = json!({"type": "session.output_audio.delta", "delta": &*b64});
        if !c.send(delta) {
            return false;
        }
        k += 1;
    }
    true
}

/// One delta per word, 250 ms each: input words end at the caller audio received so far,
/// output words follow each other.
fn transcript(c: &Conn, kind: &str, text: &str) -> bool {
    let ws = words(text);
    let mut st = c.st.lock().unwrap();
    let input = kind == "session.input_transcript.delta";
    let mut t = if input {
        let span = 250 * ws.len() as u64;
        st.in_transcript_ms.max(st.in_ms().saturating_sub(span))
    } else {
        st.out_transcript_ms
    };
    for w in ws {
        let body = json!({"delta": w, "start_ms": t, "end_ms": t + 250});
        if !c.emit(kind, body) {
            return false;
        }
        t += 250;
    }
    if input {
        st.in_transcript_ms = t;
    } else {
        st.out_transcript_ms = t;
    }
    true
}

/// `session.delegation.created`; with Responses delegation, then the backend's Responses
/// stream (responses/response_stream_event.py) inside `response.event`, the call in its
/// `response.output_item.done` (the lifecycle snapshots have empty `output`, reference §4.4).
fn delegation_call(c: &Conn, name: &str, args: &str) -> bool {
    let did = c.id("deleg");
    let (target, cfg, offset) = {
        let mut st = c.st.lock().unwrap();
        st.delegations.push(did.clone());
        let live = st.live.clone().unwrap_or(Value::Null);
        (
            delegation_type(&st),
            live["delegation"]["responses"].clone(),
            st.in_ms(),
        )
    };
    let resp_id = c.id("resp");
    let mut d = json!({"id": did, "target": target, "type": "delegation"});
    if target == "responses" {
        d["response_id"] = json!(resp_id);
    }
    let ok = c.emit(
        "session.delegation.created",
        json!({"delegation": d, "offset_ms": offset}),
    );
    if target != "responses" || !ok {
        return ok;
    }
    let (call_id, fc_id) = (c.id("call"), c.id("fc"));
    c.st.lock().unwrap().calls.push(call_id.clone());
    let item = |status: &str, a: &str| {
        json!({"type": "function_call", "id": fc_id, "call_id": call_id, "name": name,
            "arguments": a, "status": status})
    };
    let tools: Vec<Value> = cfg["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["type"] == "function")
        .cloned()
        .collect();
    let choice = cfg["tool_choice"]
        .as_str()
        .filter(|s| ["none", "required"].contains(s))
        .unwrap_or("auto");
    let created = unix_now() as f64;
    let response = |status: &str| {
        let mut r = json!({"id": resp_id, "object": "response", "created_at": created,
            "model": cfg["model"], "status": status, "output": [],
            "parallel_tool_calls": cfg["parallel_tool_calls"].as_bool().unwrap_or(true),
            "tool_choice": choice, "tools": tools});
        if status == "completed" {
            r["usage"] = json!({"input_tokens": 220,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": 18, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 238});
        }
        r
    };
    let events = [
        json!({"type": "response.created", "response": response("in_progress")}),
        json!({"type": "response.output_item.added", "output_index": 0,
            "item": item("in_progress", "")}),
        json!({"type": "response.function_call_arguments.delta", "item_id": fc_id,
            "output_index": 0, "delta": args}),
        json!({"type": "response.function_call_arguments.done", "item_id": fc_id,
            "output_index": 0, "arguments": args}),
        json!({"type": "response.output_item.done", "output_index": 0,
            "item": item("completed", args)}),
        json!({"type": "response.completed", "response": response("completed")}),
    ];
    for (i, mut e) in events.into_iter().enumerate() {
        e["sequence_number"] = json!(i);
        if !c.emit("response.event", json!({"delegation_id": did, "event": e})) {
            return false;
        }
    }
    true
}
