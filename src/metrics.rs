//! The gateway's Prometheus metrics and their text exposition (format 0.0.4).
//!
//! Nothing here is touched per RTP packet: call tasks count packets and bytes in their own
//! state and add the difference here once a second and at the end of the call, so no counter
//! is shared across cores on the media path. Everything else changes at call rate (an INVITE,
//! a challenge, a call's end), where a short lock costs nothing measurable.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::sip::guard::{BanReason, Drop};

/// Why a new INVITE did not get through the front door's authentication.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AuthFailure {
    /// No credentials yet: a challenge was sent. The normal first round of every digest call.
    NoCredentials,
    /// Credentials that did not verify (wrong password, unknown user, malformed header).
    WrongCredentials,
    /// A right answer to an old or reused nonce: challenged again with stale=true.
    StaleNonce,
    /// No trunk admits the source address (or serves the called number from it).
    AddressNotAllowed,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 4] = [
        AuthFailure::NoCredentials,
        AuthFailure::WrongCredentials,
        AuthFailure::StaleNonce,
        AuthFailure::AddressNotAllowed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::NoCredentials => "no_credentials",
            AuthFailure::WrongCredentials => "wrong_credentials",
            AuthFailure::StaleNonce => "stale_nonce",
            AuthFailure::AddressNotAllowed => "address_not_allowed",
        }
    }
}

/// How a call that reached a call task ended (the `outcome` label of `sipbridge_calls_total`).
pub const OUTCOMES: [&str; 10] = [
    "caller_hangup",
    "agent_hangup",
    "agent_error",
    "media_timeout",
    "ack_timeout",
    "shutdown",
    "cancelled",
    "rejected",
    "agent_failed",
    "other",
];

/// Why an agent session failed (the `error` label of `sipbridge_agent_errors_total`).
pub const AGENT_ERRORS: [&str; 3] = ["connect_failed", "connect_timeout", "session_ended"];

/// Setup time buckets (seconds): an echo call answers in milliseconds, a LiveKit room waits for
/// its agent for seconds.
const SETUP_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Interarrival jitter buckets (seconds), per call at its end.
const JITTER_BUCKETS: [f64; 9] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2];

/// RTP totals a call adds in one step (the change since its last report).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtpDelta {
    pub packets_sent: u64,
    pub packets_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub lost: u64,
    /// Packets that came after their frame had been concealed.
    pub late: u64,
}

/// A reactor adds up its calls' changes and reports them in one step.
impl std::ops::AddAssign for RtpDelta {
    fn add_assign(&mut self, d: RtpDelta) {
        self.packets_sent += d.packets_sent;
        self.packets_received += d.packets_received;
        self.bytes_sent += d.bytes_sent;
        self.bytes_received += d.bytes_received;
        self.lost += d.lost;
        self.late += d.late;
    }
}

pub struct Metrics {
    active_calls: AtomicU64,
    calls_in_setup: AtomicU64,
    call_tasks: AtomicU64,
    draining: AtomicBool,
    calls: Family,
    invite_responses: Family,
    auth_failures: Family,
    agent_errors: Family,
    reloads: Family,
    sip_malformed: AtomicU64,
    /// Datagrams dropped unanswered: banned, over_rate, overflow, shed.
    sip_dropped: [AtomicU64; 4],
    bans: Family,
    active_bans: AtomicU64,
    /// SIP TCP/TLS connections: open now, and since start accepted, refused at accept, and
    /// closed for misbehaving (framing, timeouts, failed handshakes).
    sip_connections: [AtomicU64; 4],
    /// Calls each media reactor runs, as of the last scrape.
    media_reactor_calls: std::sync::Mutex<Vec<u64>>,
    rtp_packets: [AtomicU64; 2],
    rtp_bytes: [AtomicU64; 2],
    rtp_lost: AtomicU64,
    rtp_late: AtomicU64,
    setup: Mutex<Histogram>,
    agent_connect: Mutex<BTreeMap<String, Histogram>>,
    jitter: Mutex<Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            active_calls: AtomicU64::new(0),
            calls_in_setup: AtomicU64::new(0),
            call_tasks: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            calls: Family::default(),
            invite_responses: Family::default(),
            auth_failures: Family::default(),
            agent_errors: Family::default(),
            reloads: Family::default(),
            sip_malformed: AtomicU64::new(0),
            sip_dropped: Default::default(),
            bans: Family::default(),
            active_bans: AtomicU64::new(0),
            sip_connections: Default::default(),
            media_reactor_calls: Default::default(),
            rtp_packets: [AtomicU64::new(0), AtomicU64::new(0)],
            rtp_bytes: [AtomicU64::new(0), AtomicU64::new(0)],
            rtp_lost: AtomicU64::new(0),
            rtp_late: AtomicU64::new(0),
            setup: Mutex::new(Histogram::new(&SETUP_BUCKETS)),
            agent_connect: Mutex::new(BTreeMap::new()),
            jitter: Mutex::new(Histogram::new(&JITTER_BUCKETS)),
        };
        // Series that exist from the start, so a rate() over them works from the first scrape.
        for o in OUTCOMES {
            m.calls.add(vec![o.to_string()], 0);
        }
        for r in AuthFailure::ALL {
            m.auth_failures.add(vec![r.label().to_string()], 0);
        }
        for r in ["ok", "failed"] {
            m.reloads.add(vec![r.to_string()], 0);
        }
        for r in [BanReason::Rate, BanReason::AuthFailures] {
            m.bans.add(vec![r.as_str().to_string()], 0);
        }
        m
    }

    pub fn set_active_calls(&self, n: usize) {
        self.active_calls.store(n as u64, Ordering::Relaxed);
    }

    pub fn set_calls_in_setup(&self, n: usize) {
        self.calls_in_setup.store(n as u64, Ordering::Relaxed);
    }

    pub fn set_call_tasks(&self, n: usize) {
        self.call_tasks.store(n as u64, Ordering::Relaxed);
    }

    pub fn active_calls(&self) -> u64 {
        self.active_calls.load(Ordering::Relaxed)
    }

    pub fn set_draining(&self, draining: bool) {
        self.draining.store(draining, Ordering::Relaxed);
    }

    pub fn call_ended(&self, outcome: &'static str) {
        self.calls.add(vec![outcome.to_string()], 1);
    }

    /// A final response to a new INVITE (from the front door or a call).
    pub fn invite_response(&self, status: u16) {
        self.invite_responses.add(vec![status.to_string()], 1);
    }

    pub fn auth_failure(&self, reason: AuthFailure) {
        self.auth_failures.add(vec![reason.label().to_string()], 1);
    }

    pub fn agent_error(&self, kind: &str, error: &'static str) {
        self.agent_errors
            .add(vec![kind.to_string(), error.to_string()], 1);
    }

    pub fn config_reload(&self, ok: bool) {
        self.reloads
            .add(vec![if ok { "ok" } else { "failed" }.to_string()], 1);
    }

    pub fn sip_malformed(&self) {
        self.sip_malformed.fetch_add(1, Ordering::Relaxed);
    }

    /// A datagram dropped unanswered (one atomic add: this runs per packet of a
    /// flood).
    pub fn sip_dropped(&self, why: Drop) {
        let i = match why {
            Drop::Banned => 0,
            Drop::OverRate => 1,
            Drop::Overflow => 2,
            Drop::Shed => 3,
        };
        self.sip_dropped[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn ban(&self, reason: BanReason) {
        self.bans.add(vec![reason.as_str().to_string()], 1);
    }

    /// The calls on each media reactor (`Engine::load`), read when `/metrics` is scraped.
    pub fn set_media_reactor_calls(&self, calls: &[usize]) {
        if let Ok(mut v) = self.media_reactor_calls.lock() {
            *v = calls.iter().map(|&n| n as u64).collect();
        }
    }

    /// The stream transports' figures at a scrape: open, accepted, refused, closed as bad.
    pub fn set_sip_connections(&self, figures: [u64; 4]) {
        for (a, v) in self.sip_connections.iter().zip(figures) {
            a.store(v, Ordering::Relaxed);
        }
    }

    pub fn set_active_bans(&self, n: usize) {
        self.active_bans.store(n as u64, Ordering::Relaxed);
    }

    pub fn rtp(&self, d: RtpDelta) {
        let add = |c: &AtomicU64, v: u64| {
            if v > 0 {
                c.fetch_add(v, Ordering::Relaxed);
            }
        };
        add(&self.rtp_packets[0], d.packets_received);
        add(&self.rtp_packets[1], d.packets_sent);
        add(&self.rtp_bytes[0], d.bytes_received);
        add(&self.rtp_bytes[1], d.bytes_sent);
        add(&self.rtp_lost, d.lost);
        add(&self.rtp_late, d.late);
    }

    /// INVITE received to 200 OK sent.
    pub fn setup_time(&self, d: Duration) {
        if let Ok(mut h) = self.setup.lock() {
            h.observe(d.as_secs_f64());
        }
    }

    pub fn agent_connect_time(&self, kind: &str, d: Duration) {
        if let Ok(mut m) = self.agent_connect.lock() {
            m.entry(kind.to_string())
                .or_insert_with(|| Histogram::new(&SETUP_BUCKETS))
                .observe(d.as_secs_f64());
        }
    }

    /// A call's final interarrival jitter (RFC 3550 A.8), in milliseconds.
    pub fn call_jitter_ms(&self, ms: f64) {
        if let Ok(mut h) = self.jitter.lock() {
            h.observe(ms / 1000.0);
        }
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        header(
            &mut out,
            "sipbridge_active_calls",
            "gauge",
            "Calls with live media and agent.",
        );
        let _ = writeln!(out, "sipbridge_active_calls {}", load(&self.active_calls));
        header(
            &mut out,
            "sipbridge_calls_in_setup",
            "gauge",
            "Calls admitted and not answered yet (limits.max_calls_in_setup caps them).",
        );
        let _ = writeln!(
            out,
            "sipbridge_calls_in_setup {}",
            load(&self.calls_in_setup)
        );
        header(
            &mut out,
            "sipbridge_call_tasks",
            "gauge",
            "Call tasks alive: active calls and ended ones absorbing retransmissions.",
        );
        let _ = writeln!(out, "sipbridge_call_tasks {}", load(&self.call_tasks));
        header(
            &mut out,
            "sipbridge_draining",
            "gauge",
            "1 while shutting down: new INVITEs get 503.",
        );
        let _ = writeln!(
            out,
            "sipbridge_draining {}",
            u8::from(self.draining.load(Ordering::Relaxed))
        );
        self.calls.render(
            &mut out,
            "sipbridge_calls_total",
            "Calls handled by a call task, by how they ended.",
            &["outcome"],
        );
        self.invite_responses.render(
            &mut out,
            "sipbridge_invite_responses_total",
            "Final responses to new INVITEs, by status code (challenges included).",
            &["code"],
        );
        self.auth_failures.render(
            &mut out,
            "sipbridge_auth_failures_total",
            "INVITEs not admitted by authentication, by reason (no_credentials is the challenge \
             every digest call gets first).",
            &["reason"],
        );
        self.agent_errors.render(
            &mut out,
            "sipbridge_agent_errors_total",
            "Agent sessions that failed, by agent kind and error.",
            &["kind", "error"],
        );
        self.reloads.render(
            &mut out,
            "sipbridge_config_reloads_total",
            "Configuration reloads (SIGHUP), by result.",
            &["result"],
        );
        header(
            &mut out,
            "sipbridge_sip_malformed_total",
            "counter",
            "SIP datagrams that did not parse.",
        );
        let _ = writeln!(
            out,
            "sipbridge_sip_malformed_total {}",
            load(&self.sip_malformed)
        );
        header(
            &mut out,
            "sipbridge_sip_dropped_total",
            "counter",
            "SIP datagrams dropped unanswered by the per-source limits, by reason.",
        );
        for (i, reason) in ["banned", "over_rate", "overflow", "shed"]
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                out,
                "sipbridge_sip_dropped_total{{reason=\"{reason}\"}} {}",
                load(&self.sip_dropped[i])
            );
        }
        self.bans.render(
            &mut out,
            "sipbridge_bans_total",
            "Sources banned from the SIP port, by reason.",
            &["reason"],
        );
        header(
            &mut out,
            "sipbridge_active_bans",
            "gauge",
            "Sources banned now.",
        );
        let _ = writeln!(out, "sipbridge_active_bans {}", load(&self.active_bans));
        header(
            &mut out,
            "sipbridge_media_reactor_calls",
            "gauge",
            "Calls whose media runs on each media reactor (media.reactors).",
        );
        if let Ok(v) = self.media_reactor_calls.lock() {
            for (i, n) in v.iter().enumerate() {
                let _ = writeln!(out, "sipbridge_media_reactor_calls{{reactor=\"{i}\"}} {n}");
            }
        }
        let [open, accepted, refused, bad] = &self.sip_connections;
        for (name, kind, help, value) in [
            (
                "sipbridge_sip_connections",
                "gauge",
                "SIP TCP and TLS connections open.",
                open,
            ),
            (
                "sipbridge_sip_connections_accepted_total",
                "counter",
                "SIP TCP and TLS connections accepted.",
                accepted,
            ),
            (
                "sipbridge_sip_connections_refused_total",
                "counter",
                "SIP TCP and TLS connections refused at accept (limits, bans).",
                refused,
            ),
            (
                "sipbridge_sip_connections_closed_bad_total",
                "counter",
                "SIP TCP and TLS connections closed for a framing error, a timeout or a failed handshake.",
                bad,
            ),
        ] {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {}", load(value));
        }
        for (name, help, pair) in [
            (
                "sipbridge_rtp_packets_total",
                "RTP packets on the caller leg, by direction.",
                &self.rtp_packets,
            ),
            (
                "sipbridge_rtp_bytes_total",
                "RTP bytes (header and payload) on the caller leg, by direction.",
                &self.rtp_bytes,
            ),
        ] {
            header(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name}{{direction=\"received\"}} {}", load(&pair[0]));
            let _ = writeln!(out, "{name}{{direction=\"sent\"}} {}", load(&pair[1]));
        }
        header(
            &mut out,
            "sipbridge_rtp_lost_packets_total",
            "counter",
            "RTP packets from callers that never arrived (RFC 3550 A.3).",
        );
        let _ = writeln!(
            out,
            "sipbridge_rtp_lost_packets_total {}",
            load(&self.rtp_lost)
        );
        header(
            &mut out,
            "sipbridge_rtp_late_packets_total",
            "counter",
            "RTP packets from callers that came after their frame had been concealed.",
        );
        let _ = writeln!(
            out,
            "sipbridge_rtp_late_packets_total {}",
            load(&self.rtp_late)
        );
        let name = "sipbridge_call_setup_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "INVITE received to 200 OK sent, for answered calls.",
        );
        if let Ok(h) = self.setup.lock() {
            h.render(&mut out, name, "");
        }
        let name = "sipbridge_agent_connect_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Time for an agent session to connect, by agent kind.",
        );
        if let Ok(m) = self.agent_connect.lock() {
            for (kind, h) in m.iter() {
                h.render(&mut out, name, &format!("kind=\"{}\",", escape(kind)));
            }
        }
        let name = "sipbridge_rtp_jitter_seconds";
        header(
            &mut out,
            name,
            "histogram",
            "Interarrival jitter of each call's received RTP at its end (RFC 3550 A.8).",
        );
        if let Ok(h) = self.jitter.lock() {
            h.render(&mut out, name, "");
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Label values as the exposition format wants them: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Counters of one metric by label values.
#[derive(Default)]
struct Family(Mutex<BTreeMap<Vec<String>, u64>>);

impl Family {
    fn add(&self, labels: Vec<String>, n: u64) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(labels).or_insert(0) += n;
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str, label_names: &[&str]) {
        header(out, name, "counter", help);
        let Ok(m) = self.0.lock() else { return };
        for (values, n) in m.iter() {
            let labels: Vec<String> = label_names
                .iter()
                .zip(values)
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(out, "{name}{{{}}} {n}", labels.join(","));
        }
    }
}

struct Histogram {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last slot is +Inf.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        if !v.is_finite() || v < 0.0 {
            return;
        }
        let i = self
            .bounds
            .iter()
            .position(|&b| v <= b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    /// `labels` is empty or ends with a comma (it is put before `le`).
    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, n) in self.counts.iter().enumerate() {
            cumulative += n;
            let le = match self.bounds.get(i) {
                Some(b) => format!("{b}"),
                None => "+Inf".into(),
            };
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{le}\"}} {cumulative}");
        }
        let bare = labels.trim_end_matches(',');
        let braces = if bare.is_empty() {
            String::new()
        } else {
            format!("{{{bare}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[cfg(test)]
mod tests;
