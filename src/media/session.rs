//! One call's RTP media towards the caller, sans-IO: datagrams in, PCM frames and DTMF out to
//! the agent; agent frames in, paced G.711 RTP packets out; media timeouts.
//!
//! The driver owns the socket: it hands every received datagram to [`MediaSession::on_datagram`],
//! drains [`MediaSession::poll_caller_audio`] and [`MediaSession::poll_dtmf`], offers agent frames
//! while [`MediaSession::slot_open`], calls [`MediaSession::handle_timeout`] at
//! [`MediaSession::poll_timeout`], and sends whatever packet those return.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::codec::g711::{self, Law};
use crate::media::dtmf::{self, DtmfDecoder};
use crate::media::frame::AudioFrame;
use crate::media::jitter::{JitterBuffer, JitterConfig, Playout};
use crate::media::pacer::Pacer;
use crate::media::rtp::{self, RecvStats, RtpHeader};
use crate::media::srtp::{SrtpReceiver, SrtpSender, MAX_TAG_LEN};
use crate::sdp::SrtpKeys;

const SAMPLES_PER_FRAME: usize = 160;
/// Room for our largest packet: a G.711 frame, and an SRTP tag after it.
const MAX_PACKET: usize = rtp::HEADER_LEN + SAMPLES_PER_FRAME + MAX_TAG_LEN;
/// An outgoing key press: an update every 20 ms for 100 ms (long enough for any receiver,
/// short enough for fast dialling), then the end packet three times (RFC 4733 2.5.1.4: the end
/// is repeated because it is what a receiver must not miss).
const DTMF_UPDATES: u16 = 5;
const DTMF_ENDS: u16 = 3;
/// Key presses waiting their turn; beyond this an agent is flooding and more are dropped.
const DTMF_QUEUE: usize = 32;
/// -10 dBm0, the level telephones send.
const DTMF_VOLUME: u8 = 10;

#[derive(Clone, Debug)]
pub struct MediaParams {
    pub law: Law,
    /// The payload type the offer gave the codec (0 or 8 normally; dynamic types are allowed).
    pub payload_type: u8,
    pub telephone_event_pt: Option<u8>,
    /// Where the caller wants our RTP (the SDP `c=` and port); `None` while on hold.
    pub remote: Option<SocketAddr>,
    /// False when the caller put us on hold (their offer was sendonly or inactive).
    pub send: bool,
    pub media_timeout: Duration,
    pub initial_media_timeout: Duration,
    /// Symmetric RTP: once [`LATCH_AFTER`] packets in a row come from one new address, send
    /// there instead of `remote` (the trunk's `symmetric_rtp`, for callers behind NAT).
    pub latch: bool,
    /// SRTP keys, when the call negotiated `RTP/SAVP`: every packet both ways is protected.
    pub srtp: Option<SrtpKeys>,
}

/// A call's SRTP: the contexts of both directions, with the keys they were made from (a
/// re-INVITE that keeps the keys keeps the contexts, and with them the rollover counters).
struct Srtp {
    keys: SrtpKeys,
    tx: SrtpSender,
    rx: SrtpReceiver,
}

impl Srtp {
    fn new(keys: &SrtpKeys) -> Srtp {
        Srtp {
            tx: SrtpSender::new(keys.suite, &keys.local),
            rx: SrtpReceiver::new(keys.suite, &keys.remote),
            keys: keys.clone(),
        }
    }
}

/// Consecutive packets from a new address that move a latching call's RTP there: one stray or
/// forged packet does not steal the stream, a NAT rebinding moves it within 60 ms.
pub const LATCH_AFTER: u8 = 3;

/// A caller heard on a connected socket (see [`MediaSession::peer`]) that falls quiet this long
/// gets the socket back unconnected, hearing any source: a connected socket silently drops
/// every other, and a source that moved (Twilio's edge, a NAT rebinding) must be heard again.
/// Long enough that a late packet under load does not flap the socket, short next to the
/// media timeout.
pub const PEER_IDLE: Duration = Duration::from_millis(200);

/// How far past a slot's silence deadline a call's driver must be for [`MediaSession::behind`]:
/// well past the reactor's timer resolution (250 µs), so a driver on time never reads ahead.
pub const BEHIND: Duration = Duration::from_millis(5);

/// Why the media ended the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaTimeout {
    /// No RTP at all since the call was answered.
    NeverStarted,
    /// RTP stopped.
    Stopped,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaCounters {
    pub packets_sent: u64,
    /// Telephone-event packets among `packets_sent`.
    pub dtmf_sent: u64,
    pub packets_received: u64,
    pub silence_sent: u64,
    pub ignored: u64,
    pub concealed: u64,
    /// SRTP packets refused: failed authentication (a wrong key, a forgery) or replayed.
    pub srtp_refused: u64,
}

/// The key press being sent to the caller.
#[derive(Clone, Copy, Debug)]
struct DtmfOut {
    digit: char,
    /// Every packet of one event carries the timestamp of its start (RFC 4733 2.5.1.1).
    timestamp: u32,
    sent: u16,
}

pub struct MediaSession {
    params: MediaParams,
    jitter: JitterBuffer,
    dtmf: DtmfDecoder,
    stats: RecvStats,
    pacer: Pacer,
    ssrc: u32,
    seq: u16,
    ts_base: u32,
    answered_at: Instant,
    last_rx: Option<Instant>,
    /// Last good frame, for concealing a lost one (repeated once, quieter, then silence).
    last_pcm: [i16; SAMPLES_PER_FRAME],
    lost_run: u32,
    pending_dtmf: Option<char>,
    dtmf_queue: VecDeque<char>,
    dtmf_out: Option<DtmfOut>,
    source_noted: bool,
    /// The address of the caller's last RTP packets and how many in a row came from it, counted
    /// while not on hold: what latching follows and what the socket may be connected to.
    source_run: Option<(SocketAddr, u8)>,
    counters: MediaCounters,
    srtp: Option<Srtp>,
    out: [u8; MAX_PACKET],
}

impl MediaSession {
    pub fn new(now: Instant, params: MediaParams) -> MediaSession {
        MediaSession {
            jitter: JitterBuffer::new(JitterConfig::default()),
            dtmf: DtmfDecoder::new(8000),
            stats: RecvStats::new(8000),
            pacer: Pacer::new(now),
            ssrc: rand::random(),
            seq: rand::random(),
            ts_base: rand::random(),
            answered_at: now,
            last_rx: None,
            last_pcm: [0; SAMPLES_PER_FRAME],
            lost_run: 0,
            pending_dtmf: None,
            dtmf_queue: VecDeque::new(),
            dtmf_out: None,
            source_noted: false,
            source_run: None,
            counters: MediaCounters::default(),
            srtp: params.srtp.as_ref().map(Srtp::new),
            out: [0; MAX_PACKET],
            params,
        }
    }

    /// A re-INVITE changed the far end's address, direction or codec; the RTP stream (SSRC,
    /// sequence, timestamp) carries on.
    pub fn update(&mut self, params: MediaParams) {
        match (&mut self.srtp, &params.srtp) {
            (Some(s), Some(keys)) if s.keys == *keys => {}
            (Some(s), Some(keys)) => {
                // New keys from the caller restart its stream's context; ours stays if our
                // key did (RFC 4568 7.1.4 lets either side rekey in a re-offer).
                if s.keys.remote != keys.remote || s.keys.suite != keys.suite {
                    s.rx = SrtpReceiver::new(keys.suite, &keys.remote);
                }
                if s.keys.local != keys.local || s.keys.suite != keys.suite {
                    s.tx = SrtpSender::new(keys.suite, &keys.local);
                }
                s.keys = keys.clone();
            }
            (_, keys) => self.srtp = keys.as_ref().map(Srtp::new),
        }
        self.params = params;
    }

    pub fn params(&self) -> &MediaParams {
        &self.params
    }

    pub fn counters(&self) -> MediaCounters {
        self.counters
    }

    /// The reorder buffer's counters: duplicates, and packets that came after their frame was
    /// given up as lost.
    pub fn jitter_stats(&self) -> crate::media::jitter::JitterStats {
        self.jitter.stats()
    }

    pub fn recv_stats(&self) -> &RecvStats {
        &self.stats
    }

    /// A datagram arrived on the call's RTP port. On an SRTP call it is decrypted in place,
    /// in the driver's receive buffer: no copy, no allocation.
    pub fn on_datagram(&mut self, now: Instant, src: SocketAddr, data: &mut [u8]) {
        // RTCP (and SRTCP) is not used: we send none and need none.
        if rtp::is_rtcp(data) {
            return;
        }
        let Some(srtp) = self.srtp.as_mut() else {
            return self.on_rtp(now, src, data);
        };
        match srtp.rx.unprotect(data) {
            Ok(len) => self.on_rtp(now, src, &data[..len]),
            Err(e) => {
                if self.counters.srtp_refused == 0 {
                    tracing::warn!(error = %e, %src, "SRTP packet refused (logged once per call)");
                }
                self.counters.srtp_refused += 1;
            }
        }
    }

    /// A plain RTP packet (decrypted, on an SRTP call).
    fn on_rtp(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        let Ok((header, payload)) = rtp::parse(data) else {
            self.counters.ignored += 1;
            return;
        };
        // RTP is taken from any source: Twilio's media servers may send from an address other
        // than their SDP's, and refusing it would be one-way audio. Unless the trunk latches,
        // we still send to the SDP address (Twilio advises against symmetric RTP); a mismatch
        // is logged once.
        // On hold nothing is sent, so there is nothing to follow or connect to.
        if self.params.remote.is_some() {
            self.source_run = match self.source_run {
                Some((addr, n)) if addr == src => Some((addr, n.saturating_add(1))),
                _ => Some((src, 1)),
            };
        }
        if self.params.latch {
            self.latch();
        } else if !self.source_noted && self.params.remote.is_some_and(|r| r != src) {
            self.source_noted = true;
            tracing::info!(sdp = ?self.params.remote, seen = %src, "RTP arrives from another address than the SDP's");
        }
        self.last_rx = Some(now);
        self.counters.packets_received += 1;
        if Some(header.payload_type) == self.params.telephone_event_pt {
            if let Some(d) = self.dtmf.on_packet(&header, payload) {
                self.pending_dtmf = Some(d);
            }
        } else if header.payload_type == self.params.payload_type {
            self.stats.on_packet(&header, now);
            self.jitter.push(now, &header, payload);
        } else {
            self.counters.ignored += 1;
        }
    }

    /// The caller's next 20 ms of audio, in order, once due; lost frames come back concealed.
    pub fn poll_caller_audio(&mut self, now: Instant) -> Option<AudioFrame> {
        let law = self.params.law;
        match self.jitter.pop(now)? {
            Playout::Frame { payload, .. } => {
                let n = payload.len().min(SAMPLES_PER_FRAME);
                let mut frame = AudioFrame::silence(8000);
                g711::decode(law, &payload[..n], &mut frame.samples_mut()[..n]);
                self.last_pcm.copy_from_slice(frame.samples());
                self.lost_run = 0;
                Some(frame)
            }
            Playout::Lost { .. } => {
                self.counters.concealed += 1;
                self.lost_run += 1;
                let mut frame = AudioFrame::silence(8000);
                if self.lost_run == 1 {
                    for (o, s) in frame.samples_mut().iter_mut().zip(self.last_pcm) {
                        *o = s / 2;
                    }
                }
                Some(frame)
            }
        }
    }

    /// A key press decoded since the last call (one per press).
    pub fn poll_dtmf(&mut self) -> Option<char> {
        self.pending_dtmf.take()
    }

    /// Queues an RFC 4733 key press for the caller. It takes the next slots of the stream (the
    /// agent's audio waits meanwhile, as on a phone). False, and nothing queued, when the
    /// caller did not offer telephone-event, the digit is not a DTMF key, or the queue is full.
    pub fn send_dtmf(&mut self, digit: char) -> bool {
        if self.params.telephone_event_pt.is_none()
            || dtmf::digit_to_event(digit).is_none()
            || self.dtmf_queue.len() >= DTMF_QUEUE
        {
            return false;
        }
        self.dtmf_queue.push_back(digit);
        true
    }

    /// True when a frame offered now would be sent now. Closed while a key press for the
    /// caller takes the slots, so the agent's audio waits in its queue instead of being lost.
    pub fn slot_open(&self, now: Instant) -> bool {
        self.pacer.slot_open(now) && !self.dtmf_busy()
    }

    /// A key press for the caller is queued or being sent.
    fn dtmf_busy(&self) -> bool {
        self.params.telephone_event_pt.is_some()
            && (self.dtmf_out.is_some() || !self.dtmf_queue.is_empty())
    }

    /// Encodes and returns the next RTP packet for an 8 kHz agent frame, if sending (not on
    /// hold). Call only while [`Self::slot_open`].
    pub fn send_frame(&mut self, now: Instant, frame: &AudioFrame) -> Option<(SocketAddr, &[u8])> {
        let pcm = frame.samples();
        let n = pcm.len().min(SAMPLES_PER_FRAME);
        let mut payload = [self.params.law.silence(); SAMPLES_PER_FRAME];
        g711::encode(self.params.law, &pcm[..n], &mut payload[..n]);
        self.emit(now, &payload, false)
    }

    /// Advances the clock: fills a slot whose deadline passed with comfort silence.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<(SocketAddr, &[u8])> {
        if self.pacer.needs_silence(now) {
            let payload = [self.params.law.silence(); SAMPLES_PER_FRAME];
            return self.emit(now, &payload, true);
        }
        None
    }

    /// Symmetric RTP: follows the caller's source once it has held for [`LATCH_AFTER`] packets.
    fn latch(&mut self) {
        let (Some(remote), Some((src, run))) = (self.params.remote, self.source_run) else {
            return;
        };
        if src == remote || run < LATCH_AFTER {
            return;
        }
        tracing::info!(from = %remote, to = %src, "RTP latched to the caller's source address");
        self.params.remote = Some(src);
    }

    fn emit(&mut self, now: Instant, payload: &[u8], silence: bool) -> Option<(SocketAddr, &[u8])> {
        let slot = self.pacer.slot();
        self.pacer.filled(now);
        let remote = self.params.remote.filter(|_| self.params.send)?;
        let timestamp = self
            .ts_base
            .wrapping_add((slot as u32).wrapping_mul(SAMPLES_PER_FRAME as u32));
        let len = match self.next_dtmf_packet(timestamp) {
            Some(len) => len,
            None => {
                let header = RtpHeader {
                    // The first packet after answering starts a talk spurt.
                    marker: self.counters.packets_sent == 0,
                    payload_type: self.params.payload_type,
                    sequence: self.seq,
                    timestamp,
                    ssrc: self.ssrc,
                };
                let len = rtp::write(&header, payload, &mut self.out).ok()?;
                self.seq = self.seq.wrapping_add(1);
                self.counters.packets_sent += 1;
                if silence {
                    self.counters.silence_sent += 1;
                }
                len
            }
        };
        let len = match self.srtp.as_mut() {
            // `out` has room for the tag; protect fails only on a packet too short for its
            // header, which we never write.
            Some(s) => s.tx.protect(&mut self.out, len).ok()?,
            None => len,
        };
        Some((remote, &self.out[..len]))
    }

    /// Writes the next telephone-event packet into `self.out` if a key press is being sent or
    /// waiting; `timestamp` is the slot's, the start of a new press.
    fn next_dtmf_packet(&mut self, timestamp: u32) -> Option<usize> {
        let pt = self.params.telephone_event_pt?;
        if self.dtmf_out.is_none() {
            let digit = self.dtmf_queue.pop_front()?;
            self.dtmf_out = Some(DtmfOut {
                digit,
                timestamp,
                sent: 0,
            });
        }
        let ev = self.dtmf_out.as_mut()?;
        ev.sent += 1;
        let end = ev.sent > DTMF_UPDATES;
        let duration = SAMPLES_PER_FRAME as u16 * ev.sent.min(DTMF_UPDATES);
        let mut block = [0u8; dtmf::EVENT_LEN];
        let header = RtpHeader {
            marker: ev.sent == 1,
            payload_type: pt,
            sequence: self.seq,
            timestamp: ev.timestamp,
            ssrc: self.ssrc,
        };
        if !dtmf::encode_event(ev.digit, end, DTMF_VOLUME, duration, &mut block) {
            self.dtmf_out = None;
            return None;
        }
        if ev.sent >= DTMF_UPDATES + DTMF_ENDS {
            self.dtmf_out = None;
        }
        let len = rtp::write(&header, &block, &mut self.out).ok()?;
        self.seq = self.seq.wrapping_add(1);
        self.counters.packets_sent += 1;
        self.counters.dtmf_sent += 1;
        Some(len)
    }

    /// True when the send clock's next slot is overdue by more than [`BEHIND`] past its grace:
    /// the driver was late (a stall, a backlog of sockets to read), not the caller or the agent,
    /// and the caller's frames for the overdue slots may be waiting unread on the socket. The
    /// driver reads them before it services the call; otherwise those slots get comfort silence
    /// while their frames wait, and each frame after goes out one slot late for the rest of the
    /// call (the echo's round trip grows 20 ms per slot so lost).
    pub fn behind(&self, now: Instant) -> bool {
        self.pacer.late_by(now, BEHIND)
    }

    /// The address the call's socket may be `connect()`ed to, so the kernel caches the route
    /// of every send and finds the socket of every receive without a lookup: the caller's
    /// media both comes from and goes to it ([`LATCH_AFTER`] packets in a row came from where
    /// we send), and came within [`PEER_IDLE`]. `None` means unconnected, hearing any source:
    /// a caller whose RTP comes from elsewhere than its SDP's (Twilio may) is never connected.
    pub fn peer(&self, now: Instant) -> Option<SocketAddr> {
        let remote = self.params.remote?;
        let (src, run) = self.source_run?;
        let recent = self.last_rx.is_some_and(|t| now < t + PEER_IDLE);
        (src == remote && run >= LATCH_AFTER && recent).then_some(remote)
    }

    /// The call ends when the caller's RTP never starts or stops for too long (a caller that
    /// vanished without BYE). A call on hold (no remote address) never times out this way.
    pub fn timed_out(&self, now: Instant) -> Option<MediaTimeout> {
        self.params.remote?;
        match self.last_rx {
            None if now >= self.answered_at + self.params.initial_media_timeout => {
                Some(MediaTimeout::NeverStarted)
            }
            Some(t) if now >= t + self.params.media_timeout => Some(MediaTimeout::Stopped),
            _ => None,
        }
    }

    /// The earliest instant something is due: a slot, a jitter-buffer gap deadline, or a
    /// media timeout. `frame_waiting` says whether the driver holds an agent frame for a slot.
    pub fn poll_timeout(&self, frame_waiting: bool) -> Instant {
        // A waiting frame cannot go while DTMF holds the slots: wake for the deadline only.
        let mut t = self.pacer.next_wakeup(frame_waiting && !self.dtmf_busy());
        if let Some(j) = self.jitter.poll_timeout() {
            t = t.min(j);
        }
        let media = match self.last_rx {
            None => self.answered_at + self.params.initial_media_timeout,
            Some(rx) => rx + self.params.media_timeout,
        };
        t.min(media)
    }
}

#[cfg(test)]
mod tests;
