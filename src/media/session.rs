//! One call's RTP media towards the caller, sans-IO: datagrams in, PCM frames and DTMF out to
//! the agent; agent frames in, paced G.711 RTP packets out; media timeouts.
//!
//! The driver owns the socket: it hands every received datagram to [`MediaSession::on_datagram`],
//! drains [`MediaSession::poll_caller_audio`] and [`MediaSession::poll_dtmf`], offers agent frames
//! while [`MediaSession::slot_open`], calls [`MediaSession::handle_timeout`] at
//! [`MediaSession::poll_timeout`], and sends whatever packet those return.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::agent::AudioFrame;
use crate::codec::g711::{self, Law};
use crate::media::dtmf::DtmfDecoder;
use crate::media::jitter::{JitterBuffer, JitterConfig, Playout};
use crate::media::pacer::Pacer;
use crate::media::rtp::{self, RecvStats, RtpHeader};

const SAMPLES_PER_FRAME: usize = 160;
const MAX_PACKET: usize = rtp::HEADER_LEN + SAMPLES_PER_FRAME;

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
}

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
    pub packets_received: u64,
    pub silence_sent: u64,
    pub ignored: u64,
    pub concealed: u64,
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
    source_noted: bool,
    counters: MediaCounters,
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
            source_noted: false,
            counters: MediaCounters::default(),
            out: [0; MAX_PACKET],
            params,
        }
    }

    /// A re-INVITE changed the far end's address, direction or codec; the RTP stream (SSRC,
    /// sequence, timestamp) carries on.
    pub fn update(&mut self, params: MediaParams) {
        self.params = params;
    }

    pub fn params(&self) -> &MediaParams {
        &self.params
    }

    pub fn counters(&self) -> MediaCounters {
        self.counters
    }

    pub fn recv_stats(&self) -> &RecvStats {
        &self.stats
    }

    /// A datagram arrived on the call's RTP port.
    pub fn on_datagram(&mut self, now: Instant, src: SocketAddr, data: &[u8]) {
        if rtp::is_rtcp(data) {
            return;
        }
        let Ok((header, payload)) = rtp::parse(data) else {
            self.counters.ignored += 1;
            return;
        };
        // RTP is taken from any source: Twilio's media servers may send from an address other
        // than their SDP's, and refusing it would be one-way audio. We still send to the SDP
        // address (Twilio advises against symmetric RTP); a mismatch is logged once.
        if !self.source_noted && self.params.remote.is_some_and(|r| r != src) {
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

    /// True when a frame offered now would be sent now.
    pub fn slot_open(&self, now: Instant) -> bool {
        self.pacer.slot_open(now)
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

    fn emit(&mut self, now: Instant, payload: &[u8], silence: bool) -> Option<(SocketAddr, &[u8])> {
        let slot = self.pacer.slot();
        self.pacer.filled(now);
        let remote = self.params.remote.filter(|_| self.params.send)?;
        let header = RtpHeader {
            // The first packet after answering starts a talk spurt.
            marker: self.counters.packets_sent == 0,
            payload_type: self.params.payload_type,
            sequence: self.seq,
            timestamp: self
                .ts_base
                .wrapping_add((slot as u32).wrapping_mul(SAMPLES_PER_FRAME as u32)),
            ssrc: self.ssrc,
        };
        let len = rtp::write(&header, payload, &mut self.out).ok()?;
        self.seq = self.seq.wrapping_add(1);
        self.counters.packets_sent += 1;
        if silence {
            self.counters.silence_sent += 1;
        }
        Some((remote, &self.out[..len]))
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
        let mut t = self.pacer.next_wakeup(frame_waiting);
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
