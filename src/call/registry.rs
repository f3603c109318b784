//! The active-call registry: what the admin API shows about each call.
//!
//! A call task stays the only owner of its state. It publishes a snapshot of what an operator
//! wants to see (state, codec, timings, RTP figures, transcript, agent details) here at each
//! state change and once a second while answered, so the lock is taken a few times per call
//! per second and never on the media path. Ended calls stay for a while for post-mortems.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::agent::Role;

/// Ended calls kept for `/calls/{id}`.
pub const KEEP_ENDED: usize = 100;
/// Transcript lines kept per call (the oldest go first): a four-hour call must not grow without
/// bound.
pub const MAX_TRANSCRIPT: usize = 1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Admitted; SDP negotiated and the agent connecting.
    Setup,
    /// 180 sent while the agent connects.
    Ringing,
    /// 200 OK sent.
    Answered,
    /// The caller acknowledged our 200.
    Confirmed,
    /// Over; the record is kept for a while.
    Ended,
}

#[derive(Clone, Debug, Serialize)]
pub struct AgentRef {
    /// The `[agents]` key.
    pub name: String,
    /// The agent's kind ("echo", "hume", "livekit"), once known.
    pub kind: Option<&'static str>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Timings {
    /// RFC 3339 UTC wall-clock times.
    pub received: String,
    pub answered: Option<String>,
    pub ended: Option<String>,
    /// INVITE to 200 OK.
    pub setup_ms: Option<f64>,
    /// Agent connect started to session ready.
    pub agent_connect_ms: Option<f64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RtpStats {
    pub packets_sent: u64,
    pub packets_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Expected minus received (RFC 3550 A.3; negative with duplicates).
    pub lost: i64,
    /// Interarrival jitter of the caller's RTP (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Frames filled in by concealment because their packet never came.
    pub concealed: u64,
    /// Packets that came after their frame had been concealed (too late to play).
    pub late: u64,
    /// Packets received twice (the copy is dropped).
    pub duplicates: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Emotion {
    pub name: String,
    pub score: f32,
}

#[derive(Clone, Debug, Serialize)]
pub struct TranscriptLine {
    pub role: &'static str,
    pub text: String,
    pub emotions: Vec<Emotion>,
}

impl TranscriptLine {
    pub fn new(role: Role, text: String, emotions: Vec<(String, f32)>) -> TranscriptLine {
        TranscriptLine {
            role: match role {
                Role::User => "user",
                Role::Assistant => "assistant",
            },
            text,
            emotions: emotions
                .into_iter()
                .map(|(name, score)| Emotion { name, score })
                .collect(),
        }
    }
}

/// What the admin API shows about one call.
#[derive(Clone, Debug, Serialize)]
pub struct CallRecord {
    pub call_id: String,
    pub twilio_call_sid: Option<String>,
    pub state: CallState,
    /// Why the call ended (once it has).
    pub end_reason: Option<String>,
    /// The `sipbridge_calls_total` outcome label (once ended).
    pub outcome: Option<&'static str>,
    pub trunk: String,
    pub caller: String,
    pub called: String,
    pub agent: AgentRef,
    pub codec: Option<&'static str>,
    /// The SRTP suite, when the media is encrypted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srtp: Option<&'static str>,
    /// Where the INVITE came from.
    pub source: String,
    pub rtp_port: Option<u16>,
    pub timings: Timings,
    pub rtp: RtpStats,
    pub transcript: Vec<TranscriptLine>,
    /// Transcript lines dropped because the call outgrew [`MAX_TRANSCRIPT`].
    pub transcript_dropped: u64,
    /// Agent session details (`AgentEvent::Detail`), by key, shown as the agent gave them.
    pub details: BTreeMap<String, serde_json::Value>,
}

impl CallRecord {
    pub fn push_transcript(&mut self, line: TranscriptLine) {
        if self.transcript.len() >= MAX_TRANSCRIPT {
            self.transcript.remove(0);
            self.transcript_dropped += 1;
        }
        self.transcript.push(line);
    }
}

#[derive(Default)]
struct Inner {
    active: HashMap<String, CallRecord>,
    ended: VecDeque<CallRecord>,
}

#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    /// A new call: its first snapshot.
    pub fn open(&self, record: CallRecord) {
        if let Ok(mut g) = self.inner.lock() {
            g.active.insert(record.call_id.clone(), record);
        }
    }

    /// Changes the call's snapshot in place (no copy of its transcript).
    pub fn update(&self, call_id: &str, f: impl FnOnce(&mut CallRecord)) {
        if let Ok(mut g) = self.inner.lock() {
            if let Some(r) = g.active.get_mut(call_id) {
                f(r);
            }
        }
    }

    /// The call ended: a last change, then it moves to the ended list.
    pub fn close(&self, call_id: &str, f: impl FnOnce(&mut CallRecord)) {
        if let Ok(mut g) = self.inner.lock() {
            if let Some(mut r) = g.active.remove(call_id) {
                f(&mut r);
                r.state = CallState::Ended;
                if g.ended.len() >= KEEP_ENDED {
                    g.ended.pop_front();
                }
                g.ended.push_back(r);
            }
        }
    }

    /// Active calls, oldest first.
    pub fn active(&self) -> Vec<CallRecord> {
        let mut v: Vec<CallRecord> = match self.inner.lock() {
            Ok(g) => g.active.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        v.sort_by(|a, b| {
            a.timings
                .received
                .cmp(&b.timings.received)
                .then_with(|| a.call_id.cmp(&b.call_id))
        });
        v
    }

    pub fn active_count(&self) -> usize {
        self.inner.lock().map(|g| g.active.len()).unwrap_or(0)
    }

    /// A call by SIP Call-ID or Twilio CallSid: an active one, else the most recent ended one.
    pub fn get(&self, id: &str) -> Option<CallRecord> {
        let g = self.inner.lock().ok()?;
        let matches = |r: &&CallRecord| r.call_id == id || r.twilio_call_sid.as_deref() == Some(id);
        g.active
            .values()
            .find(matches)
            .or_else(|| g.ended.iter().rev().find(matches))
            .cloned()
    }
}

/// `t` as RFC 3339 UTC with milliseconds (`2026-11-24T04:56:08.123Z`).
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), by counting whole
/// 400-year eras (146,097 days each) and then years of a March-based calendar, which puts the
/// leap day at the end of the year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record(id: &str, received: &str) -> CallRecord {
        CallRecord {
            call_id: id.into(),
            twilio_call_sid: Some(format!("CA{id}")),
            state: CallState::Setup,
            end_reason: None,
            outcome: None,
            trunk: "t".into(),
            caller: "+1".into(),
            called: "+2".into(),
            agent: AgentRef {
                name: "echo".into(),
                kind: Some("echo"),
            },
            codec: None,
            srtp: None,
            source: "127.0.0.1:5060".into(),
            rtp_port: None,
            timings: Timings {
                received: received.into(),
                ..Timings::default()
            },
            rtp: RtpStats::default(),
            transcript: Vec::new(),
            transcript_dropped: 0,
            details: BTreeMap::new(),
        }
    }

    #[test]
    fn dates_are_rfc3339_utc() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // a leap day
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.000Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_107_542_399);
        assert_eq!(rfc3339(t), "2100-02-28T23:59:59.000Z");
    }

    #[test]
    fn calls_move_from_active_to_ended_and_stay_findable() {
        let r = Registry::new();
        r.open(record("b", "2"));
        r.open(record("a", "1"));
        r.update("a", |c| c.state = CallState::Answered);
        let ids: Vec<_> = r.active().into_iter().map(|c| c.call_id).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(r.get("CAa").map(|c| c.state), Some(CallState::Answered));
        r.close("a", |c| c.end_reason = Some("caller hung up".into()));
        assert_eq!(r.active_count(), 1);
        let ended = r.get("a").expect("ended call kept");
        assert_eq!(ended.state, CallState::Ended);
        assert_eq!(ended.end_reason.as_deref(), Some("caller hung up"));
        // Updates after the end change nothing.
        r.update("a", |c| c.state = CallState::Answered);
        assert_eq!(r.get("a").map(|c| c.state), Some(CallState::Ended));
        assert!(r.get("zzz").is_none());
    }

    #[test]
    fn the_ended_list_and_transcripts_are_bounded() {
        let r = Registry::new();
        for i in 0..KEEP_ENDED + 5 {
            let id = format!("c{i}");
            r.open(record(&id, "0"));
            r.close(&id, |_| {});
        }
        assert!(r.get("c0").is_none(), "oldest ended call forgotten");
        assert!(r.get(&format!("c{}", KEEP_ENDED + 4)).is_some());
        let mut c = record("x", "0");
        for i in 0..MAX_TRANSCRIPT + 3 {
            c.push_transcript(TranscriptLine::new(Role::User, i.to_string(), vec![]));
        }
        assert_eq!(c.transcript.len(), MAX_TRANSCRIPT);
        assert_eq!(c.transcript_dropped, 3);
        assert_eq!(c.transcript[0].text, "3");
    }
}
