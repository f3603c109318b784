//! The harness's only task: one SIP socket, one RTP socket per call, one ticking loop that
//! sends every call's media and reads what came back.
//!
//! There is no timer per call. The loop ticks every 2 ms and each tick serves one tenth of the
//! calls (those whose slot number falls in that phase), so every call sends one frame per 20 ms
//! cycle and the traffic is spread over the cycle instead of leaving in one burst. Each tick
//! also drains the RTP sockets' level-triggered epoll set ([`rtp::RtpSockets`]): a datagram
//! costs one read for its own call only and wakes nobody, and its arrival time is the kernel's
//! receive stamp, not the tick's.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::media::{CallMedia, Received};
use super::progress::{Counts, Progress};
use super::report::{self, CallRecord, HarnessStats, Histogram, LinkStats, Report, RunInfo};
use super::signal::SplitMix;
use super::uac::{ByeOutcome, Credentials, Outcome, SipResult, Uac, UacConfig, UacEvent};
use super::{LoadError, Plan};
use crate::codec::g711::Law;
use crate::sip::message::{HeaderName, Message, Method, Response};
use crate::sip::transaction::Timers;
use link::Link;
use rtp::{Clocks, RtpSockets};

/// Ticks per 20 ms media cycle; a call is served on the tick of its phase (its slot modulo
/// this), so it sends one frame per cycle.
const PHASES: u64 = 10;
const TICK: Duration = Duration::from_millis(2);
/// Beyond this behind, skip ticks rather than burst: RTP timestamps follow the clock.
const MAX_BEHIND: Duration = Duration::from_millis(100);
/// After Ctrl-C: how long calls get to end cleanly.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Twilio's `<Dial>` gives up after 30 s by default.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
struct Call {
    index: u32,
    uac: Uac,
    media: CallMedia,
    socket: Option<std::net::UdpSocket>,
    codec: Option<Law>,
    recorded: bool,
    /// The UAC's next timer, cached after every interaction (the tick checks it per visit).
    deadline: Option<std::time::Instant>,
    /// This call's impaired RTP link (`--impair-rtp`).
    rtp_link: Option<Link>,
}

pub(super) struct Driver {
    plan: Plan,
    cfg: UacConfig,
    sip: UdpSocket,
    sip_buf: Vec<u8>,
    rtp_buf: Vec<u8>,
    calls: Vec<Option<Call>>,
    free: Vec<usize>,
    by_call_id: HashMap<String, usize>,
    rtp: RtpSockets,
    records: Vec<CallRecord>,
    rtt: Histogram,
    harness: HarnessStats,
    progress: Progress,
    launched: u32,
    completed: u64,
    t0: Instant,
    /// Ticks since the start; `tick / PHASES` is the media cycle.
    tick: u64,
    next_tick: Instant,
    stop_deadline: Option<Instant>,
    /// The impaired SIP link (`--impair-sip`).
    sip_link: Option<Link>,
    /// What the links of calls already gone did.
    impaired: LinkStats,
}

#[derive(Default)]
struct Wakeup {
    stop: bool,
    sip: bool,
    tick: bool,
}

impl Driver {
    pub(super) async fn start(plan: Plan) -> Result<Driver, LoadError> {
        let sip = UdpSocket::bind(SocketAddr::new(plan.local_ip, 0))
            .await
            .map_err(|error| LoadError::Io {
                what: "binding the SIP socket".into(),
                error,
            })?;
        let local = sip.local_addr().map_err(|error| LoadError::Io {
            what: "reading the SIP socket's address".into(),
            error,
        })?;
        let a = &plan.args;
        let cfg = UacConfig {
            target: plan.target,
            local,
            media_ip: plan.local_ip,
            law: a.codec,
            credentials: a
                .username
                .clone()
                .zip(a.password.clone())
                .map(|(username, password)| Credentials { username, password }),
            hold: a.duration,
            timers: Timers::default(),
            setup_timeout: SETUP_TIMEOUT,
            caller: "+447700900123".into(),
            called: a.called.clone(),
            account_sid: format!("AC{:016x}{:016x}", plan.seed, !plan.seed),
            srtp: a.srtp,
        };
        let progress = if a.progress {
            Progress::for_stderr()
        } else {
            Progress::new(false)
        };
        let now = Instant::now();
        let rtp = RtpSockets::new().map_err(|error| LoadError::Io {
            what: "creating the RTP sockets' epoll set".into(),
            error,
        })?;
        let sip_link = a
            .impair_sip
            .as_ref()
            .map(|spec| Link::new(spec, plan.seed ^ 0x5_1_9));
        Ok(Driver {
            sip_link,
            impaired: LinkStats::default(),
            plan,
            cfg,
            sip,
            sip_buf: vec![0; crate::sip::transport::MAX_DATAGRAM],
            rtp_buf: vec![0; 2048],
            calls: Vec::new(),
            free: Vec::new(),
            by_call_id: HashMap::new(),
            rtp,
            records: Vec::new(),
            rtt: Histogram::default(),
            harness: HarnessStats::default(),
            progress,
            launched: 0,
            completed: 0,
            t0: now,
            tick: 0,
            next_tick: now,
            stop_deadline: None,
        })
    }

    pub(super) async fn run(mut self, stop: impl Future<Output = ()>) -> Report {
        let mut stop = pin!(stop);
        let mut stopped = false;
        let mut sleep = pin!(tokio::time::sleep_until(self.next_tick));
        loop {
            let w = poll_fn(|cx| {
                let mut w = Wakeup::default();
                if !stopped && stop.as_mut().poll(cx).is_ready() {
                    w.stop = true;
                }
                w.sip = self.sip.poll_recv_ready(cx).is_ready();
                w.tick = sleep.as_mut().poll(cx).is_ready();
                if w.stop || w.sip || w.tick {
                    Poll::Ready(w)
                } else {
                    Poll::Pending
                }
            })
            .await;
            if w.stop {
                stopped = true;
                self.begin_stop();
            }
            if w.sip {
                self.drain_sip();
            }
            if w.tick {
                self.on_tick();
                sleep.as_mut().reset(self.next_tick);
            }
            if self.is_over() {
                break;
            }
        }
        self.progress.finish();
        self.report(stopped)
    }

    fn is_over(&self) -> bool {
        (self.launched == self.plan.args.calls || self.stop_deadline.is_some())
            && self.records.len() == self.launched as usize
    }

    fn begin_stop(&mut self) {
        let now = Instant::now();
        self.stop_deadline = Some(now + STOP_GRACE);
        for slot in 0..self.calls.len() {
            if let Some(c) = self.calls[slot].as_mut() {
                c.uac.hangup(now.into_std());
            }
            self.flush(slot);
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        let late = now.saturating_duration_since(self.next_tick);
        let late_ms = late.as_secs_f64() * 1000.0;
        if late_ms > self.harness.max_tick_late_ms {
            self.harness.max_tick_late_ms = late_ms;
        }
        if late > MAX_BEHIND {
            let skip = (late.as_nanos() / TICK.as_nanos()) as u64;
            self.tick += skip;
            self.next_tick += TICK * skip as u32;
            self.harness.ticks_skipped += skip;
        }
        let clocks = Clocks::now();
        let (calls, buf, rtt) = (&mut self.calls, &mut self.rtp_buf, &mut self.rtt);
        self.rtp
            .drain(|slot| read_rtp(calls, buf, rtt, clocks, slot));
        self.launch_due(now);
        let std_now = now.into_std();
        self.release_impaired(std_now);
        let abandon = self.stop_deadline.is_some_and(|d| now >= d);
        let cycle = self.tick / PHASES;
        let phase = (self.tick % PHASES) as usize;
        for slot in (phase..self.calls.len()).step_by(PHASES as usize) {
            let Some(c) = self.calls[slot].as_mut() else {
                continue;
            };
            if abandon {
                c.uac.abandon();
            }
            if c.deadline.is_some_and(|t| t <= std_now) {
                c.uac.handle_timeout(std_now);
            }
            if let Some(socket) = c.socket.as_ref() {
                let sent_at = std::time::Instant::now();
                if let Some((to, pkt)) = c.media.next_packet(sent_at, cycle) {
                    if let Some(link) = c.rtp_link.as_mut() {
                        // Only an impaired link holds packets, so only it copies them.
                        let pkt = Bytes::copy_from_slice(pkt);
                        if !link.out.push(sent_at, (to, pkt.clone())) {
                            c.media.lost_on_way_out(&pkt);
                        }
                    } else if socket.send_to(pkt, to).is_err() {
                        let refused = pkt.to_vec();
                        c.media.send_failed(&refused);
                        self.harness.rtp_send_errors += 1;
                    }
                }
            }
            self.flush(slot);
        }
        self.tick += 1;
        self.next_tick += TICK;
        let counts = Counts {
            planned: self.plan.args.calls,
            started: self.launched,
            active: self.launched as usize - self.records.len(),
            completed: self.completed,
            failed: self.records.len() as u64 - self.completed,
        };
        self.progress.update(now.into_std(), now - self.t0, counts);
    }

    /// Starts every call whose time has come: call `i` at `t0 + i / rate`.
    fn launch_due(&mut self, now: Instant) {
        if self.stop_deadline.is_some() {
            return;
        }
        let rate = self.plan.args.rate;
        while self.launched < self.plan.args.calls
            && self.t0 + Duration::from_secs_f64(f64::from(self.launched) / rate) <= now
        {
            self.launch();
        }
    }

    fn launch(&mut self) {
        let index = self.launched;
        self.launched += 1;
        let now = std::time::Instant::now();
        self.progress.call_started(now);
        let slot = self.free.pop().unwrap_or_else(|| {
            self.calls.push(None);
            self.calls.len() - 1
        });
        let rtp = &self.rtp;
        let socket = match bind_rtp(self.plan.local_ip).and_then(|s| rtp.add(&s, slot).map(|()| s))
        {
            Ok(s) => s,
            Err(e) => {
                self.free.push(slot);
                self.records.push(CallRecord {
                    index,
                    started_at_ms: ms(now.saturating_duration_since(self.t0.into_std())),
                    outcome: "error".into(),
                    failure: Some(format!("local RTP socket: {e}")),
                    bye: "not sent".into(),
                    ..CallRecord::default()
                });
                return;
            }
        };
        let port = socket.local_addr().map(|a| a.port()).unwrap_or(0);
        let seed = SplitMix::new(self.plan.seed ^ u64::from(index)).next_u64();
        let uac = Uac::new(now, &self.cfg, port);
        self.by_call_id.insert(uac.call_id().to_string(), slot);
        self.calls[slot] = Some(Call {
            index,
            uac,
            media: CallMedia::new(self.plan.program.voice(seed), seed),
            socket: Some(socket),
            codec: None,
            recorded: false,
            deadline: None,
            rtp_link: self
                .plan
                .args
                .impair_rtp
                .as_ref()
                .map(|spec| Link::new(spec, seed)),
        });
        self.flush(slot);
    }

    fn drain_sip(&mut self) {
        for _ in 0..1024 {
            let (n, src) = match self.sip.try_recv_from(&mut self.sip_buf) {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => continue,
            };
            let data = Bytes::copy_from_slice(&self.sip_buf[..n]);
            match self.sip_link.as_mut() {
                Some(link) => {
                    link.inn.push(std::time::Instant::now(), (src, data));
                }
                None => self.on_sip(src, data),
            }
        }
    }

    /// Sends and delivers what the impaired links let through by `now`.
    fn release_impaired(&mut self, now: std::time::Instant) {
        if let Some(link) = self.sip_link.as_mut() {
            while let Some((to, bytes)) = link.out.pop_due(now) {
                send_sip(&self.sip, None, &mut self.harness, to, bytes);
            }
        }
        while let Some((src, data)) = self.sip_link.as_mut().and_then(|l| l.inn.pop_due(now)) {
            self.on_sip(src, data);
        }
        if self.plan.args.impair_rtp.is_none() {
            return;
        }
        // Every call, every tick: a delayed packet leaves within 2 ms of its time.
        for c in self.calls.iter_mut().flatten() {
            let (Some(link), Some(socket)) = (c.rtp_link.as_mut(), c.socket.as_ref()) else {
                continue;
            };
            while let Some((to, pkt)) = link.out.pop_due(now) {
                if socket.send_to(&pkt, to).is_err() {
                    c.media.send_failed(&pkt);
                    self.harness.rtp_send_errors += 1;
                }
            }
            while let Some((_, pkt)) = link.inn.pop_due(now) {
                if let Received::Echo(rtt) = c.media.on_datagram(now, &pkt) {
                    self.rtt.add(rtt);
                }
            }
        }
    }

    fn on_sip(&mut self, src: SocketAddr, data: Bytes) {
        let Ok(msg) = Message::parse(data) else {
            return;
        };
        let now = std::time::Instant::now();
        let slot = msg
            .call_id()
            .and_then(|id| self.by_call_id.get(id))
            .copied();
        match (slot, msg) {
            (Some(slot), msg) => {
                if let Some(c) = self.calls[slot].as_mut() {
                    c.uac.on_message(now, msg, src);
                }
                self.flush(slot);
            }
            (None, Message::Request(req)) if req.method != Method::Ack => {
                // A call we have forgotten (a late BYE retransmission): say so.
                let status = if req.method == Method::Options {
                    200
                } else {
                    481
                };
                let mut r = Response::for_request(&req, status, None);
                if status == 200 {
                    r.headers
                        .push(HeaderName::Allow, "INVITE,ACK,CANCEL,OPTIONS,BYE");
                }
                send_sip(
                    &self.sip,
                    self.sip_link.as_mut(),
                    &mut self.harness,
                    src,
                    r.to_bytes(),
                );
            }
            _ => {}
        }
    }

    /// Sends what the call's UAC queued, applies its events, records its result once known,
    /// and forgets the call when nothing of it is left.
    fn flush(&mut self, slot: usize) {
        let Some(c) = self.calls.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        while let Some((to, bytes)) = c.uac.poll_transmit() {
            send_sip(
                &self.sip,
                self.sip_link.as_mut(),
                &mut self.harness,
                to,
                bytes,
            );
        }
        while let Some(ev) = c.uac.poll_event() {
            match ev {
                UacEvent::Answered(params) => {
                    c.codec = Some(params.law);
                    c.media.start(params, self.tick / PHASES);
                }
                UacEvent::MediaStop => c.media.stop(),
            }
        }
        if !c.recorded {
            if let Some(result) = c.uac.result() {
                let record = record(c, result, self.t0.into_std(), !self.cfg.hold.is_zero());
                if record.completed {
                    self.completed += 1;
                }
                self.records.push(record);
                c.recorded = true;
                c.media.stop();
                if let Some(socket) = c.socket.take() {
                    self.rtp.remove(&socket);
                }
            }
        }
        c.deadline = c.uac.poll_timeout();
        if c.recorded && (c.uac.is_finished() || self.stop_deadline.is_some()) {
            if let Some((out, inn)) = c.rtp_link.as_ref().map(Link::stats) {
                self.impaired.rtp_out += out;
                self.impaired.rtp_in += inn;
            }
            self.by_call_id.remove(c.uac.call_id());
            self.calls[slot] = None;
            self.free.push(slot);
        }
    }

    fn report(mut self, interrupted: bool) -> Report {
        // Calls cut short by the end of the grace time.
        for slot in 0..self.calls.len() {
            if let Some(c) = self.calls[slot].as_mut() {
                c.uac.abandon();
            }
            self.flush(slot);
        }
        let mut records = std::mem::take(&mut self.records);
        records.sort_by_key(|r| r.index);
        if let Some((out, inn)) = self.sip_link.as_ref().map(Link::stats) {
            self.impaired.sip_out = out;
            self.impaired.sip_in = inn;
        }
        // Calls still absorbing retransmissions when the run ends keep their links.
        for link in self
            .calls
            .iter()
            .flatten()
            .filter_map(|c| c.rtp_link.as_ref())
        {
            let (out, inn) = link.stats();
            self.impaired.rtp_out += out;
            self.impaired.rtp_in += inn;
        }
        let a = &self.plan.args;
        if a.impair_sip.is_some() || a.impair_rtp.is_some() {
            self.harness.impaired = Some(self.impaired);
        }
        let run = RunInfo {
            target: self.plan.target.to_string(),
            codec: law_name(a.codec).into(),
            calls_planned: a.calls,
            rate_cps: a.rate,
            duration_s: a.duration.as_secs_f64(),
            max_loss_pct: a.max_loss_pct,
            elapsed_s: self.t0.elapsed().as_secs_f64(),
            interrupted,
        };
        Report::build(run, records, &self.rtt, self.harness)
    }
}

/// Sends one SIP datagram, through the impaired link when there is one. UDP sends do not block
/// in practice; a full buffer loses the datagram, which SIP's retransmission covers, and is
/// counted.
fn send_sip(
    sip: &UdpSocket,
    link: Option<&mut Link>,
    harness: &mut HarnessStats,
    to: SocketAddr,
    bytes: Bytes,
) {
    match link {
        Some(link) => {
            link.out.push(std::time::Instant::now(), (to, bytes));
        }
        None => {
            if sip.try_send_to(&bytes, to).is_err() {
                harness.sip_send_errors += 1;
            }
        }
    }
}

/// `media_required`: with `--duration 0` (a setup-rate run) the call hangs up right after the
/// ACK, before any RTP can come back, so media is not part of completing it.
fn record(c: &Call, r: &SipResult, t0: std::time::Instant, media_required: bool) -> CallRecord {
    let since = |t: std::time::Instant| ms(t.saturating_duration_since(r.invite_sent));
    let counters = c.media.counters();
    let stats = c.media.recv_stats();
    let rtt = c.media.rtt();
    let (status, outcome) = match r.outcome {
        Outcome::Status(s) => (Some(s), s.to_string()),
        Outcome::Timeout => (None, "timeout".to_string()),
        Outcome::Interrupted => (None, "interrupted".to_string()),
    };
    let expected = stats.expected();
    let lost = stats.lost();
    let loss_pct = (expected > 0).then(|| lost.max(0) as f64 * 100.0 / expected as f64);
    let rtt_mean = rtt.mean().map(ms);
    let answered = status.is_some_and(|s| (200..300).contains(&s));
    let failure = match (r.outcome, r.bye) {
        (Outcome::Timeout, _) => Some("timeout".to_string()),
        (Outcome::Interrupted, _) => Some("interrupted".to_string()),
        (Outcome::Status(s), _) if !answered => Some(format!("SIP {s}")),
        (_, ByeOutcome::Remote) => Some("far end hung up".into()),
        (_, ByeOutcome::Timeout) => Some("BYE unanswered".into()),
        (_, ByeOutcome::Interrupted) => Some("interrupted".into()),
        (_, ByeOutcome::NotSent) => Some("no BYE".into()),
        (_, ByeOutcome::Answered(s)) if !(200..300).contains(&s) => Some(format!("BYE {s}")),
        _ if media_required && counters.sent == 0 => Some("no RTP sent".into()),
        _ if media_required && counters.received == 0 => Some("no RTP received".into()),
        _ => None,
    };
    CallRecord {
        index: c.index,
        call_id: c.uac.call_id().to_string(),
        started_at_ms: ms(r.invite_sent.saturating_duration_since(t0)),
        outcome,
        status,
        completed: failure.is_none(),
        failure,
        note: r.note.clone(),
        auth_rounds: r.auth_rounds,
        setup_ms: r.answered.map(since),
        first_rtp_ms: c.media.first_rx().map(since),
        codec: c.codec.map(|l| law_name(l).to_string()),
        bye: match r.bye {
            ByeOutcome::NotSent => "not sent".into(),
            ByeOutcome::Answered(s) => s.to_string(),
            ByeOutcome::Timeout => "timeout".into(),
            ByeOutcome::Remote => "remote".into(),
            ByeOutcome::Interrupted => "interrupted".into(),
        },
        bye_reason: r.remote_bye_reason.clone(),
        rtp_sent: counters.sent,
        send_errors: counters.send_errors,
        rtp_received: counters.received,
        silence_frames: counters.silence,
        echoed_frames: counters.matched,
        unmatched_frames: counters.unmatched,
        lost_on_way_out: counters.lost_on_way_out,
        echo_lost_on_way_back: counters.echo_lost_on_way_back,
        not_returned: counters.not_returned,
        other_packets: counters.other,
        expected,
        lost,
        loss_pct,
        jitter_ms: (stats.received() > 1).then(|| stats.jitter_ms()),
        rtt_min_ms: rtt.min.map(ms),
        rtt_mean_ms: rtt_mean,
        rtt_max_ms: (rtt.count > 0).then(|| ms(rtt.max)),
        intact_pct: report::intact_pct(counters.matched, counters.unmatched),
        mos: rtt_mean.map(|rtt| report::mos(rtt, loss_pct.unwrap_or(0.0))),
    }
}

/// Reads the one datagram waiting on `slot`'s socket, as having arrived when the kernel says.
fn read_rtp(
    calls: &mut [Option<Call>],
    buf: &mut [u8],
    rtt: &mut Histogram,
    clocks: Clocks,
    slot: usize,
) {
    let Some(c) = calls.get_mut(slot).and_then(Option::as_mut) else {
        return;
    };
    let Some(socket) = c.socket.as_ref() else {
        return;
    };
    // Nothing there after all, or an ICMP error surfacing on the socket: the set names the
    // socket again if a datagram is waiting.
    let Ok((n, src, stamp)) = rtp::recv_stamped(socket, buf) else {
        return;
    };
    let now = clocks.arrival(stamp);
    if let Some(link) = c.rtp_link.as_mut() {
        let pkt = Bytes::copy_from_slice(&buf[..n]);
        if !link.inn.push(now, (src, pkt.clone())) {
            c.media.lost_on_way_back(&pkt);
        }
    } else if let Received::Echo(d) = c.media.on_datagram(now, &buf[..n]) {
        rtt.add(d);
    }
}

fn bind_rtp(ip: std::net::IpAddr) -> std::io::Result<std::net::UdpSocket> {
    let s = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

fn law_name(l: Law) -> &'static str {
    match l {
        Law::Mu => "PCMU",
        Law::A => "PCMA",
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

mod link;
mod rtp;
