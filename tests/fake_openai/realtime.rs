//! The Realtime (GA) side of the fake: reference/ai-legs.md §3, event shapes from
//! openai/types/realtime/ (the `session` of session.created/updated is the SDK's
//! RealtimeSessionCreateRequest, so it carries no `id`/`object`/`expires_at`).

use super::*;

pub(super) fn on_open(c: &Arc<Conn>) {
    let model = c.st.lock().unwrap().model.clone();
    if !REALTIME_MODELS.contains(&model.as_str()) {
        let m = format!("The model `{model}` does not exist or you do not have access to it.");
        invalid(c, None, "model_not_found", &m, Some("model"));
        c.st.lock().unwrap().closed = true;
        c.close(1008, "model_not_found");
        return;
    }
    let session = json!({
        "type": "realtime",
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "You are a helpful, witty, and friendly AI. Talk quickly.",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": null,
        "truncation": "auto",
        "prompt": null,
        "include": null,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": null,
                "noise_reduction": null,
                "turn_detection": {"type": "server_vad", "threshold": 0.5,
                    "prefix_padding_ms": 300, "silence_duration_ms": 200,
                    "idle_timeout_ms": null, "create_response": true, "interrupt_response": true},
            },
            "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "marin",
                "speed": 1.0},
        },
    });
    c.st.lock().unwrap().session = session.clone();
    c.emit("session.created", json!({ "session": session }));
}

/// An `error` event, naming the client event that caused it (`eid`) if any.
fn error(
    c: &Conn,
    eid: Option<&str>,
    kind: &str,
    code: &str,
    msg: &str,
    param: Option<&str>,
) -> bool {
    c.emit(
        "error",
        json!({"error": {"type": kind, "code": code, "message": msg, "param": param,
            "event_id": eid}}),
    )
}

fn invalid(c: &Conn, eid: Option<&str>, code: &str, msg: &str, param: Option<&str>) -> bool {
    error(c, eid, "invalid_request_error", code, msg, param)
}

/// Answers one client event; returns the steps it fires besides `ClientEvent`.
pub(super) fn on_event(c: &Arc<Conn>, v: &Value) -> Vec<When> {
    if c.st.lock().unwrap().closed {
        return vec![];
    }
    let eid = v["event_id"].as_str();
    let Some(kind) = v["type"].as_str() else {
        let m = "We could not parse the JSON body of your request, or it has no 'type'.";
        invalid(c, eid, "invalid_json", m, None);
        return vec![];
    };
    match kind {
        "session.update" => return session_update(c, v, eid),
        "input_audio_buffer.append" => match count_append(c, &v["audio"]) {
            Some(n) => return vec![When::Appends(n)],
            None => {
                let m = "Invalid 'audio': expected base64-encoded audio bytes.";
                invalid(c, eid, "invalid_value", m, Some("audio"));
            }
        },
        "input_audio_buffer.commit" => {
            let (id, prev) = {
                let mut st = c.st.lock().unwrap();
                let id = st.user_item.take().unwrap_or_else(|| c.id("item"));
                let prev = st.last_item();
                st.items.push(plain_item(&id, "user"));
                (id, prev)
            };
            c.emit(
                "input_audio_buffer.committed",
                json!({"item_id": id, "previous_item_id": prev}),
            );
        }
        "input_audio_buffer.clear" => {
            c.emit("input_audio_buffer.cleared", json!({}));
        }
        "conversation.item.create" => item_create(c, v, eid),
        "conversation.item.truncate" => truncate(c, v, eid),
        "conversation.item.delete" => {
            let id = v["item_id"].as_str().unwrap_or("");
            let found = {
                let mut st = c.st.lock().unwrap();
                let before = st.items.len();
                st.items.retain(|i| i.id != id);
                st.items.len() < before
            };
            if found {
                c.emit("conversation.item.deleted", json!({ "item_id": id }));
            } else {
                let m = format!("Item with item_id '{id}' not found in the conversation.");
                invalid(c, eid, "invalid_value", &m, Some("item_id"));
            }
        }
        "conversation.item.retrieve" | "response.create" => {}
        "response.cancel" => {
            let st = c.st.lock().unwrap();
            let want = v["response_id"].as_str();
            match &st.active {
                Some(a) if want.is_none_or(|w| w == a.id) => {
                    a.cancel.send_replace(Some("client_cancelled"));
                }
                _ => {
                    drop(st);
                    let m = "Cancellation failed: no active response found.";
                    invalid(c, eid, "response_cancel_not_active", m, None);
                }
            }
        }
        "output_audio_buffer.clear" => {
            let m = "output_audio_buffer.clear is only supported for WebRTC and SIP sessions.";
            invalid(c, eid, "invalid_value", m, Some("type"));
        }
        other => {
            let m = format!("Invalid value: '{other}'. It is not a Realtime client event.");
            invalid(c, eid, "invalid_value", &m, Some("type"));
        }
    }
    vec![]
}

fn session_update(c: &Arc<Conn>, v: &Value, eid: Option<&str>) -> Vec<When> {
    let fail = |code: &str, msg: &str, param: &str| {
        invalid(c, eid, code, msg, Some(param));
        vec![]
    };
    let s = &v["session"];
    if !s.is_object() {
        return fail(
            "missing_required_parameter",
            "Missing required parameter: 'session'.",
            "session",
        );
    }
    if let Some(p) = unknown_param(Api::Realtime, s, "session", "session") {
        return fail(
            "unknown_parameter",
            &format!("Unknown parameter: '{p}'."),
            &p,
        );
    }
    match s.get("type").and_then(Value::as_str) {
        Some("realtime") => {}
        None => {
            let m = "Missing required parameter: 'session.type'.";
            return fail("missing_required_parameter", m, "session.type");
        }
        Some(t) => {
            let m = format!("Invalid value: '{t}'. Supported values are: 'realtime'.");
            return fail("invalid_value", &m, "session.type");
        }
    }
    let mut st = c.st.lock().unwrap();
    if let Some(m) = s.get("model").and_then(Value::as_str) {
        if m != st.model {
            drop(st);
            let msg = format!("Invalid value: '{m}'. The session's model cannot be changed.");
            return fail("invalid_value", &msg, "session.model");
        }
    }
    let mut fmts = [st.in_fmt, st.out_fmt];
    for (i, dir) in ["input", "output"].iter().enumerate() {
        if let Some(f) = s["audio"][dir].get("format") {
            match realtime_fmt(f) {
                Ok(x) => fmts[i] = x,
                Err((code, msg)) => {
                    drop(st);
                    return fail(code, &msg, &format!("session.audio.{dir}.format"));
                }
            }
        }
    }
    merge(&mut st.session, s, true);
    [st.in_fmt, st.out_fmt] = fmts;
    let first = !st.configured;
    st.configured = true;
    let session = st.session.clone();
    drop(st);
    c.emit("session.updated", json!({ "session": session }));
    if first {
        vec![When::SessionConfigured]
    } else {
        vec![]
    }
}

/// A GA audio format object (realtime_audio_formats.py); the beta's strings are refused.
fn realtime_fmt(f: &Value) -> Result<Fmt, (&'static str, String)> {
    let Some(o) = f.as_object() else {
        return Err((
            "invalid_type",
            format!("Invalid type for 'format': expected an object, but got {f} instead."),
        ));
    };
    match o.get("type").and_then(Value::as_str) {
        Some("audio/pcm") => match o.get("rate") {
            Some(r) if *r != 24000 => Err((
                "invalid_value",
                format!("Invalid value: {r}. Supported values are: 24000."),
            )),
            _ => Ok(Fmt::Pcm24),
        },
        Some(t @ ("audio/pcmu" | "audio/pcma")) if o.contains_key("rate") => Err((
            "unknown_parameter",
            format!("Unknown parameter: 'rate' ({t} is always 8000 Hz)."),
        )),
        Some("audio/pcmu") => Ok(Fmt::Pcmu),
        Some("audio/pcma") => Ok(Fmt::Pcma),
        Some(t) => Err((
            "invalid_value",
            format!(
                "Invalid value: '{t}'. Supported values are: 'audio/pcm', 'audio/pcmu', and \
                 'audio/pcma'."
            ),
        )),
        None => Err((
            "missing_required_parameter",
            "Missing required parameter: 'type'.".into(),
        )),
    }
}

/// A sparse update: objects merge key by key, except those with a `type` below the top
/// (formats, turn detection), which are replaced whole, as are arrays and nulls.
fn merge(dst: &mut Value, src: &Value, top: bool) {
    match (dst, src) {
        (Value::Object(d), Value::Object(s)) if top || !s.contains_key("type") => {
            for (k, v) in s {
                match d.get_mut(k) {
                    Some(x) if x.is_object() && v.is_object() => merge(x, v, false),
                    _ => {
                        d.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (d, s) => *d = s.clone(),
    }
}

fn plain_item(id: &str, role: &str) -> Item {
    Item {
        id: id.to_string(),
        role: role.to_string(),
        audio: false,
        audio_bytes: 0,
        bytes_per_ms: 8,
    }
}

fn item_create(c: &Conn, v: &Value, eid: Option<&str>) {
    let item = &v["item"];
    if !item.is_object() {
        let m = "Missing required parameter: 'item'.";
        invalid(c, eid, "missing_required_parameter", m, Some("item"));
        return;
    }
    let mut st = c.st.lock().unwrap();
    let checked = match item["type"].as_str().unwrap_or("") {
        "message" => match item["role"].as_str() {
            Some(r @ ("user" | "system" | "assistant")) => Ok(r.to_string()),
            _ => Err((
                "invalid_value",
                "Invalid 'item.role': expected 'user', 'system' or 'assistant'.".to_string(),
                "item.role",
            )),
        },
        "function_call_output" => {
            let call = item["call_id"].as_str().unwrap_or("");
            if !st.calls.iter().any(|k| k == call) {
                Err((
                    "invalid_value",
                    format!("Tool call id '{call}' not found in the conversation."),
                    "item.call_id",
                ))
            } else if !item["output"].is_string() {
                Err((
                    "missing_required_parameter",
                    "Missing required parameter: 'item.output' (a string).".to_string(),
                    "item.output",
                ))
            } else {
                Ok("function_call_output".to_string())
            }
        }
        "function_call" => Ok("function_call".to_string()),
        t => Err((
            "invalid_value",
            format!(
                "Invalid value: '{t}'. Supported item types here are: 'message', \
                 'function_call', 'function_call_output'."
            ),
            "item.type",
        )),
    };
    let role = match checked {
        Ok(r) => r,
        Err((code, m, param)) => {
            drop(st);
            invalid(c, eid, code, &m, Some(param));
            return;
        }
    };
    let id = item["id"]
        .as_str()
        .map_or_else(|| c.id("item"), str::to_string);
    let prev = v["previous_item_id"]
        .as_str()
        .map(str::to_string)
        .or_else(|| st.last_item());
    st.items.push(plain_item(&id, &role));
    drop(st);
    let mut out = item.clone();
    out["id"] = json!(id);
    out["object"] = json!("realtime.item");
    out["status"] = json!("completed");
    c.emit(
        "conversation.item.added",
        json!({"previous_item_id": prev, "item": out}),
    );
    c.emit(
        "conversation.item.done",
        json!({"previous_item_id": prev, "item": out}),
    );
}

/// Checks a truncation as the server does (reference §3.4): an assistant audio item the fake
/// sent, content 0, and no more audio than that item has.
fn truncate(c: &Conn, v: &Value, eid: Option<&str>) {
    let (Some(item_id), Some(ci), Some(end)) = (
        v["item_id"].as_str(),
        v["content_index"].as_i64(),
        v["audio_end_ms"].as_i64(),
    ) else {
        let m = "Missing required parameter: 'item_id', 'content_index' and 'audio_end_ms' \
                 (integers) are all required.";
        invalid(c, eid, "missing_required_parameter", m, None);
        return;
    };
    let checked = {
        let mut st = c.st.lock().unwrap();
        match st.items.iter_mut().find(|i| i.id == item_id) {
            None => Err((
                format!("Item with item_id '{item_id}' not found in the conversation."),
                "item_id",
            )),
            Some(it) if !it.audio => Err((
                format!("Only assistant messages with audio can be truncated; '{item_id}' is a {} item.", it.role),
                "item_id",
            )),
            Some(_) if ci != 0 => Err((
                format!("Invalid content_index: {ci}. An assistant audio item has one content part, index 0."),
                "content_index",
            )),
            Some(_) if end < 0 => Err((
                format!("Invalid audio_end_ms: {end}. Expected a value >= 0."),
                "audio_end_ms",
            )),
            Some(it) => {
                let have = (it.audio_bytes / it.bytes_per_ms) as i64;
                if end > have {
                    Err((
                        format!("Audio content of {have}ms is already shorter than {end}ms"),
                        "audio_end_ms",
                    ))
                } else {
                    it.audio_bytes = end as usize * it.bytes_per_ms;
                    Ok(())
                }
            }
        }
    };
    if let Err((m, param)) = checked {
        invalid(c, eid, "invalid_value", &m, Some(param));
        return;
    }
    c.shared.truncations.lock().unwrap().push(Truncation {
        conn: c.idx,
        item_id: item_id.to_string(),
        audio_end_ms: end as u64,
    });
    c.emit(
        "conversation.item.truncated",
        json!({"item_id": item_id, "content_index": 0, "audio_end_ms": end}),
    );
}

pub(super) async fn run(ctx: &Ctx, act: Act) -> bool {
    let c = &ctx.conn;
    match act {
        Act::SpeechStarted => {
            let mut st = c.st.lock().unwrap();
            let id = c.id("item");
            st.user_item = Some(id.clone());
            let td = &st.session["audio"]["input"]["turn_detection"];
            let interrupt = !td.is_null() && td["interrupt_response"] != false;
            let body = json!({"audio_start_ms": st.in_ms(), "item_id": id});
            // Sent under the lock, so the cancelled reply ends after it.
            let ok = c.emit("input_audio_buffer.speech_started", body);
            if let (true, Some(a)) = (interrupt, &st.active) {
                a.cancel.send_replace(Some("turn_detected"));
            }
            ok
        }
        Act::SpeechStopped => {
            let (id, end, prev) = {
                let mut st = c.st.lock().unwrap();
                let id = st.user_item.take().unwrap_or_else(|| c.id("item"));
                let prev = st.last_item();
                st.items.push(plain_item(&id, "user"));
                (id, st.in_ms(), prev)
            };
            let item = |status: &str| {
                json!({"id": id, "object": "realtime.item", "type": "message", "status": status,
                    "role": "user", "content": [{"type": "input_audio", "transcript": null}]})
            };
            c.emit(
                "input_audio_buffer.speech_stopped",
                json!({"audio_end_ms": end, "item_id": id}),
            ) && c.emit(
                "input_audio_buffer.committed",
                json!({"item_id": id, "previous_item_id": prev}),
            ) && c.emit(
                "conversation.item.added",
                json!({"previous_item_id": prev, "item": item("in_progress")}),
            ) && c.emit(
                "conversation.item.done",
                json!({"previous_item_id": prev, "item": item("completed")}),
            )
        }
        Act::UserTranscript(text) => {
            let id = {
                let st = c.st.lock().unwrap();
                st.user_item
                    .clone()
                    .or_else(|| {
                        let last = st.items.iter().rev().find(|i| i.role == "user");
                        last.map(|i| i.id.clone())
                    })
                    .unwrap_or_else(|| c.id("item"))
            };
            let n = words(&text).len() as u64;
            c.emit(
                "conversation.item.input_audio_transcription.delta",
                json!({"item_id": id, "content_index": 0, "delta": text}),
            ) && c.emit(
                "conversation.item.input_audio_transcription.completed",
                json!({"item_id": id, "content_index": 0, "transcript": text,
                    "usage": {"type": "tokens", "input_tokens": 40, "output_tokens": n,
                        "total_tokens": 40 + n,
                        "input_token_details": {"text_tokens": 0, "audio_tokens": 40}}}),
            )
        }
        Act::Reply {
            hz,
            ms,
            transcript,
            paced,
        } => {
            let lead = paced.then_some(LEAD_CHUNKS);
            respond(ctx, hz, Some(ms), &transcript, CHUNK_MS, lead).await
        }
        Act::Stream { hz, chunk_ms, lead } => {
            respond(ctx, hz, None, "", chunk_ms, Some(lead)).await
        }
        Act::FunctionCall {
            name,
            arguments_json,
        } => function_call(ctx, &name, &arguments_json),
        Act::RateLimits => c.emit(
            "rate_limits.updated",
            json!({"rate_limits": [
                {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
                {"name": "tokens", "limit": 40000, "remaining": 38250, "reset_seconds": 2.625},
            ]}),
        ),
        Act::Error {
            code,
            message,
            r#type,
        } => error(c, None, &r#type, &code, &message, None),
        other => {
            eprintln!("fake_openai: {other:?} is not a Realtime act; skipped");
            true
        }
    }
}

/// Starts a response: refused (an `error`, None) while another one is active.
fn begin(ctx: &Ctx) -> Option<(String, watch::Receiver<Option<&'static str>>, Fmt, String)> {
    let c = &ctx.conn;
    let mut st = c.st.lock().unwrap();
    if let Some(a) = &st.active {
        let m = format!(
            "Conversation already has an active response in progress: {}. Wait until the \
             response is finished before creating a new one.",
            a.id
        );
        drop(st);
        let code = "conversation_already_has_active_response";
        invalid(c, ctx.trigger.as_deref(), code, &m, None);
        return None;
    }
    let id = c.id("resp");
    let (tx, rx) = watch::channel(None);
    st.active = Some(Active {
        id: id.clone(),
        cancel: tx,
    });
    let voice = match &st.session["audio"]["output"]["voice"] {
        Value::String(s) => s.clone(),
        v => v["id"].as_str().unwrap_or("marin").to_string(),
    };
    Some((id, rx, st.out_fmt, voice))
}

/// Ends the active response `id` (before its `response.done` leaves, so that a client that
/// answers it with `response.create` finds no response active).
fn finish(c: &Conn, id: &str) {
    let mut st = c.st.lock().unwrap();
    if st.active.as_ref().is_some_and(|a| a.id == id) {
        st.active = None;
    }
}

fn fmt_json(fmt: Fmt) -> Value {
    match fmt {
        Fmt::Pcmu => json!({"type": "audio/pcmu"}),
        Fmt::Pcma => json!({"type": "audio/pcma"}),
        _ => json!({"type": "audio/pcm", "rate": 24000}),
    }
}

#[allow(clippy::too_many_arguments)]
fn response(
    c: &Conn,
    id: &str,
    status: &str,
    details: Value,
    output: Vec<Value>,
    usage: Value,
    fmt: Fmt,
    voice: &str,
) -> Value {
    json!({"response": {"id": id, "object": "realtime.response", "status": status,
        "status_details": details, "output": output,
        "conversation_id": format!("conv_fake{}", c.idx), "output_modalities": ["audio"],
        "max_output_tokens": "inf", "audio": {"output": {"format": fmt_json(fmt), "voice": voice}},
        "usage": usage, "metadata": null}})
}

fn usage(audio_ms: u64, text_tokens: u64) -> Value {
    let audio = audio_ms / 50;
    json!({"total_tokens": 120 + audio + text_tokens, "input_tokens": 120,
        "output_tokens": audio + text_tokens,
        "input_token_details": {"text_tokens": 100, "audio_tokens": 20, "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0}},
        "output_token_details": {"text_tokens": text_tokens, "audio_tokens": audio}})
}

fn assistant_item(id: &str, status: &str, transcript: Option<&str>) -> Value {
    let content = match transcript {
        None => json!([]),
        Some(t) => json!([{"type": "output_audio", "transcript": t}]),
    };
    json!({"id": id, "object": "realtime.item", "type": "message", "status": status,
        "role": "assistant", "content": content})
}

/// An audio response (`ms: None`: endless), reference §3.3 event order, with the transcript
/// deltas spread over the audio; cut short by a cancel (speech or `response.cancel`).
async fn respond(
    ctx: &Ctx,
    hz: f64,
    ms: Option<u32>,
    transcript: &str,
    chunk_ms: u32,
    lead: Option<u32>,
) -> bool {
    let c = &ctx.conn;
    let Some((rid, mut cancel, fmt, voice)) = begin(ctx) else {
        return true;
    };
    let item_id = c.id("item");
    let prev = {
        let mut st = c.st.lock().unwrap();
        let prev = st.last_item();
        st.items.push(Item {
            id: item_id.clone(),
            role: "assistant".into(),
            audio: true,
            audio_bytes: 0,
            bytes_per_ms: fmt.bytes_per_ms(),
        });
        prev
    };
    let at = json!({"response_id": rid, "item_id": item_id, "output_index": 0,
        "content_index": 0});
    let with = |extra: Value| {
        let mut v = at.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let item = assistant_item(&item_id, "in_progress", None);
    let resp = response(
        c,
        &rid,
        "in_progress",
        Value::Null,
        vec![],
        Value::Null,
        fmt,
        &voice,
    );
    c.emit("response.created", resp);
    c.emit(
        "response.output_item.added",
        json!({"response_id": rid, "output_index": 0, "item": item}),
    );
    c.emit(
        "conversation.item.added",
        json!({"previous_item_id": prev, "item": item}),
    );
    c.emit(
        "response.content_part.added",
        with(json!({"part": {"type": "audio", "transcript": ""}})),
    );

    let words = words(transcript);
    let mut chunks = ToneChunks::new(hz, fmt, chunk_ms);
    let per = chunks.samples.max(1);
    let total = ms.map(|ms| (u64::from(fmt.rate()) * u64::from(ms) / 1000) as usize);
    let count = total.map(|t| t.div_ceil(per));
    let mut pacer = Pacer::new(chunk_ms, lead);
    let (mut said, mut k, mut sent_ms) = (0usize, 0u32, 0u64);
    let reason = loop {
        if count.is_some_and(|n| k as usize >= n) {
            break None;
        }
        pacer.wait(k, &mut cancel).await;
        if let Some(r) = *cancel.borrow() {
            break Some(r);
        }
        if !c.alive() {
            finish(c, &rid);
            return false;
        }
        if let Some(n) = count {
            let due = ((k as usize + 1) * words.len()).div_ceil(n);
            for w in &words[said..due] {
                c.emit(
                    "response.output_audio_transcript.delta",
                    with(json!({ "delta": w })),
                );
            }
            said = due;
        }
        let n = total.map_or(per, |t| per.min(t - k as usize * per));
        let (b64, bytes) = chunks.chunk(k, n);
        if let Some(it) =
            c.st.lock()
                .unwrap()
                .items
                .iter_mut()
                .rev()
                .find(|i| i.id == item_id)
        {
            it.audio_bytes += bytes;
        }
        c.count_output(bytes);
        sent_ms += (bytes / fmt.bytes_per_ms()) as u64;
        c.emit(
            "response.output_audio.delta",
            with(json!({ "delta": &*b64 })),
        );
        k += 1;
    };
    if reason.is_none() {
        for w in &words[said..] {
            c.emit(
                "response.output_audio_transcript.delta",
                with(json!({ "delta": w })),
            );
        }
        said = words.len();
    }
    let text = words[..said].concat();
    c.emit("response.output_audio.done", at.clone());
    c.emit(
        "response.output_audio_transcript.done",
        with(json!({ "transcript": text })),
    );
    c.emit(
        "response.content_part.done",
        with(json!({"part": {"type": "audio", "transcript": text}})),
    );
    let status = if reason.is_some() {
        "incomplete"
    } else {
        "completed"
    };
    let item = assistant_item(&item_id, status, Some(&text));
    c.emit(
        "response.output_item.done",
        json!({"response_id": rid, "output_index": 0, "item": item}),
    );
    c.emit(
        "conversation.item.done",
        json!({"previous_item_id": prev, "item": item}),
    );
    let (status, details) = match reason {
        None => ("completed", Value::Null),
        Some(r) => ("cancelled", json!({"type": "cancelled", "reason": r})),
    };
    finish(c, &rid);
    let u = usage(sent_ms, said as u64);
    let resp = response(c, &rid, status, details, vec![item], u, fmt, &voice);
    c.emit("response.done", resp)
}

/// A response whose output is one function call (reference §3.6).
fn function_call(ctx: &Ctx, name: &str, args: &str) -> bool {
    let c = &ctx.conn;
    let Some((rid, _cancel, fmt, voice)) = begin(ctx) else {
        return true;
    };
    let (item_id, call_id) = (c.id("item"), c.id("call"));
    let prev = {
        let mut st = c.st.lock().unwrap();
        let prev = st.last_item();
        st.items.push(plain_item(&item_id, "function_call"));
        st.calls.push(call_id.clone());
        prev
    };
    let item = |status: &str, a: &str| {
        json!({"id": item_id, "object": "realtime.item", "type": "function_call",
            "status": status, "name": name, "call_id": call_id, "arguments": a})
    };
    let at = |extra: Value| {
        let mut v = json!({"response_id": rid, "item_id": item_id, "output_index": 0,
            "call_id": call_id});
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        v
    };
    let mut cut = args.len() / 2;
    while !args.is_char_boundary(cut) {
        cut += 1;
    }
    let resp = response(
        c,
        &rid,
        "in_progress",
        Value::Null,
        vec![],
        Value::Null,
        fmt,
        &voice,
    );
    let mut ok = c.emit("response.created", resp)
        && c.emit(
            "response.output_item.added",
            json!({"response_id": rid, "output_index": 0, "item": item("in_progress", "")}),
        )
        && c.emit(
            "conversation.item.added",
            json!({"previous_item_id": prev, "item": item("in_progress", "")}),
        );
    for part in [&args[..cut], &args[cut..]] {
        if !part.is_empty() {
            ok &= c.emit(
                "response.function_call_arguments.delta",
                at(json!({ "delta": part })),
            );
        }
    }
    ok &= c.emit(
        "response.function_call_arguments.done",
        at(json!({"name": name, "arguments": args})),
    ) && c.emit(
        "response.output_item.done",
        json!({"response_id": rid, "output_index": 0, "item": item("completed", args)}),
    ) && c.emit(
        "conversation.item.done",
        json!({"previous_item_id": prev, "item": item("completed", args)}),
    );
    finish(c, &rid);
    let out = vec![item("completed", args)];
    let resp = response(
        c,
        &rid,
        "completed",
        Value::Null,
        out,
        usage(0, 12),
        fmt,
        &voice,
    );
    ok && c.emit("response.done", resp)
}
