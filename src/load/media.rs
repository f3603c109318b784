//! One call's RTP, sans-IO: builds the paced G.711 packets the driver sends on each 20 ms tick,
//! and classifies every packet that comes back.
//!
//! Returned audio is matched against what was sent: each sent frame's payload hash and send
//! time stay in a ring of the last [`RING`] frames, and a returned frame with the same hash is
//! an intact echo whose age is the round-trip latency. The gateway's G.711 decode and re-encode
//! is bit-exact except μ-law code 0x7F (negative zero), which comes back as 0xFF, so 0x7F is
//! never sent (it becomes 0xFF; both decode to 0). Comfort silence (every byte the law's
//! silence code) is counted apart, and no sent frame is ever all silence, nor equal to another
//! frame still in the ring: such a frame gets one code nudged by one step.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::codec::g711::{self, Law};
use crate::media::rtp::{self, RecvStats, RtpHeader};
use crate::media::srtp::{SrtpReceiver, SrtpSender, MAX_TAG_LEN};
use crate::sdp::SrtpKeys;

use super::signal::{Voice, FRAME};

/// Frames remembered for matching: 64 x 20 ms = 1.28 s, far beyond any sane echo delay.
pub const RING: usize = 64;
const PACKET: usize = rtp::HEADER_LEN + FRAME;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MediaCounters {
    /// RTP packets sent.
    pub sent: u64,
    /// Packets the socket refused (counted, not retried: the next tick sends the next frame).
    pub send_errors: u64,
    /// RTP packets received (any payload type).
    pub received: u64,
    /// Received frames of comfort silence (every byte 0xFF for μ-law, 0xD5 for A-law).
    pub silence: u64,
    /// Received frames identical to one we sent: intact echoes.
    pub matched: u64,
    /// Received G.711 frames that are neither silence nor anything we sent recently.
    pub unmatched: u64,
    /// Anything else: other payload types (telephone-event), RTCP, datagrams that are not RTP.
    pub other: u64,
    /// Frames the impaired link lost on the way to the gateway (`--impair-rtp`).
    pub lost_on_way_out: u64,
    /// Intact echoes the impaired link lost on the way back.
    pub echo_lost_on_way_back: u64,
    /// Frames that reached the gateway (as far as the caller's link knows) and whose intact
    /// echo never came back while they were remembered (1.28 s): what the gateway lost or
    /// mangled. Frames still in flight when the call ends are not counted.
    pub not_returned: u64,
}

/// What became of a sent frame, as far as the caller can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Pending,
    LostOnWayOut,
    Echoed,
    EchoLostOnWayBack,
}

/// Round-trip latency of one call's matched echoes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RttStats {
    pub count: u64,
    pub sum: Duration,
    pub min: Option<Duration>,
    pub max: Duration,
}

impl RttStats {
    fn add(&mut self, d: Duration) {
        self.count += 1;
        self.sum += d;
        self.min = Some(self.min.map_or(d, |m| m.min(d)));
        self.max = self.max.max(d);
    }

    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| self.sum / self.count as u32)
    }
}

/// What a received datagram was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// An echo of a frame sent this long ago.
    Echo(Duration),
    Silence,
    Unmatched,
    Other,
}

/// Negotiated sending parameters, from the SDP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendParams {
    pub law: Law,
    pub payload_type: u8,
    pub remote: SocketAddr,
    /// SRTP keys (`--srtp`): `local` is ours, `remote` the gateway's answer's.
    pub srtp: Option<SrtpKeys>,
}

pub struct CallMedia {
    voice: Voice,
    send: Option<SendParams>,
    ssrc: u32,
    seq: u16,
    ts_base: u32,
    /// The driver's tick number when sending started: the RTP timestamp follows the tick
    /// clock, so a stalled tick shows as a timestamp jump, not as drift.
    start_tick: u64,
    /// Hashes of the last frames sent (0: empty), kept apart from their send times so the
    /// per-frame scans touch 512 contiguous bytes.
    ring_hash: [u64; RING],
    ring_at: [Option<Instant>; RING],
    ring_fate: [Fate; RING],
    ring_next: usize,
    stats: RecvStats,
    first_rx: Option<Instant>,
    counters: MediaCounters,
    rtt: RttStats,
    pcm: [i16; FRAME],
    /// Room for an SRTP tag after the packet.
    packet: [u8; PACKET + MAX_TAG_LEN],
    srtp: Option<(SrtpSender, SrtpReceiver)>,
}

impl CallMedia {
    /// `seed` picks the stream's SSRC, first sequence number and timestamp.
    pub fn new(voice: Voice, seed: u64) -> CallMedia {
        CallMedia {
            voice,
            send: None,
            ssrc: (seed >> 32) as u32,
            seq: (seed >> 16) as u16,
            ts_base: seed as u32,
            start_tick: 0,
            ring_hash: [0; RING],
            ring_at: [None; RING],
            ring_fate: [Fate::Pending; RING],
            ring_next: 0,
            stats: RecvStats::new(8000),
            first_rx: None,
            counters: MediaCounters::default(),
            rtt: RttStats::default(),
            pcm: [0; FRAME],
            packet: [0; PACKET + MAX_TAG_LEN],
            srtp: None,
        }
    }

    /// The call was answered: send from the next tick on.
    pub fn start(&mut self, params: SendParams, tick: u64) {
        self.srtp = params.srtp.as_ref().map(|k| {
            (
                SrtpSender::new(k.suite, &k.local),
                SrtpReceiver::new(k.suite, &k.remote),
            )
        });
        self.send = Some(params);
        self.start_tick = tick;
    }

    /// The call is ending: send nothing more (returns are still counted).
    pub fn stop(&mut self) {
        self.send = None;
    }

    pub fn is_sending(&self) -> bool {
        self.send.is_some()
    }

    pub fn counters(&self) -> &MediaCounters {
        &self.counters
    }

    pub fn recv_stats(&self) -> &RecvStats {
        &self.stats
    }

    pub fn rtt(&self) -> &RttStats {
        &self.rtt
    }

    pub fn first_rx(&self) -> Option<Instant> {
        self.first_rx
    }

    /// The packet for tick `tick`, sent at `now`, and where it goes; `None` when not sending.
    pub fn next_packet(&mut self, now: Instant, tick: u64) -> Option<(SocketAddr, &[u8])> {
        let params = self.send.as_ref()?;
        let (law, payload_type, remote) = (params.law, params.payload_type, params.remote);
        self.voice.next_frame(&mut self.pcm);
        let (header_bytes, payload) = self.packet[..PACKET].split_at_mut(rtp::HEADER_LEN);
        let payload: &mut [u8; FRAME] = payload.try_into().ok()?;
        g711::encode(law, &self.pcm, payload);
        let hash = make_distinct(&self.ring_hash, law, payload);
        let header = RtpHeader {
            marker: self.counters.sent == 0,
            payload_type,
            sequence: self.seq,
            timestamp: self.ts_base.wrapping_add(
                (tick.wrapping_sub(self.start_tick) as u32).wrapping_mul(FRAME as u32),
            ),
            ssrc: self.ssrc,
        };
        write_header(&header, header_bytes);
        self.seq = self.seq.wrapping_add(1);
        self.counters.sent += 1;
        let slot = self.ring_next;
        if self.ring_at[slot].is_some() && self.ring_fate[slot] == Fate::Pending {
            self.counters.not_returned += 1;
        }
        self.ring_hash[slot] = hash;
        self.ring_at[slot] = Some(now);
        self.ring_fate[slot] = Fate::Pending;
        self.ring_next = (slot + 1) % RING;
        let len = match self.srtp.as_mut() {
            Some((tx, _)) => tx.protect(&mut self.packet, PACKET).ok()?,
            None => PACKET,
        };
        Some((remote, &self.packet[..len]))
    }

    /// The impaired link lost this packet (one we sent) on its way to the gateway.
    pub fn lost_on_way_out(&mut self, packet: &[u8]) {
        if let Some(i) = self.ring_slot_of(packet) {
            if self.ring_fate[i] == Fate::Pending {
                self.ring_fate[i] = Fate::LostOnWayOut;
                self.counters.lost_on_way_out += 1;
            }
        }
    }

    /// The impaired link lost this packet on its way back: if it was an intact echo, the
    /// gateway did its part.
    pub fn lost_on_way_back(&mut self, packet: &[u8]) {
        if let Some(i) = self.ring_slot_of(packet) {
            if self.ring_fate[i] == Fate::Pending {
                self.ring_fate[i] = Fate::EchoLostOnWayBack;
                self.counters.echo_lost_on_way_back += 1;
            }
        }
    }

    /// The ring slot of the frame `packet` carries, if it is one we sent recently.
    fn ring_slot_of(&self, packet: &[u8]) -> Option<usize> {
        let (_, payload) = rtp::parse(packet).ok()?;
        let payload = <&[u8; FRAME]>::try_from(payload).ok()?;
        self.find(frame_hash(payload))
    }

    /// Newest first: an echo is almost always of one of the last few frames.
    fn find(&self, hash: u64) -> Option<usize> {
        (1..=RING)
            .map(|back| (self.ring_next + RING - back) % RING)
            .find(|&i| self.ring_hash[i] == hash && self.ring_at[i].is_some())
    }

    /// The socket refused `packet`: it does not count as sent, and no echo is expected.
    pub fn send_failed(&mut self, packet: &[u8]) {
        self.counters.sent = self.counters.sent.saturating_sub(1);
        self.counters.send_errors += 1;
        if let Some(i) = self.ring_slot_of(packet) {
            self.ring_fate[i] = Fate::LostOnWayOut;
        }
    }

    /// A datagram arrived on this call's RTP port at `now`.
    pub fn on_datagram(&mut self, now: Instant, data: &[u8]) -> Received {
        if rtp::is_rtcp(data) {
            self.counters.other += 1;
            return Received::Other;
        }
        let Some((_, rx)) = self.srtp.as_mut() else {
            return self.on_rtp(now, data);
        };
        let mut buf = [0u8; 1500];
        let Some(copy) = buf.get_mut(..data.len()) else {
            self.counters.other += 1;
            return Received::Other;
        };
        copy.copy_from_slice(data);
        match rx.unprotect(copy) {
            Ok(len) => self.on_rtp(now, &buf[..len]),
            Err(_) => {
                self.counters.other += 1;
                Received::Other
            }
        }
    }

    /// A plain RTP packet (decrypted, with `--srtp`).
    fn on_rtp(&mut self, now: Instant, data: &[u8]) -> Received {
        let Ok((header, payload)) = rtp::parse(data) else {
            self.counters.other += 1;
            return Received::Other;
        };
        self.counters.received += 1;
        self.first_rx.get_or_insert(now);
        // Classify by the packet's own payload type: returns can arrive before the 200 OK is
        // processed, and the answer may pick the other law.
        let Some(law) = Law::from_payload_type(header.payload_type) else {
            self.counters.other += 1;
            return Received::Other;
        };
        self.stats.on_packet(&header, now);
        if is_silence(law, payload) {
            self.counters.silence += 1;
            return Received::Silence;
        }
        let found = <&[u8; FRAME]>::try_from(payload)
            .ok()
            .and_then(|p| self.find(frame_hash(p)));
        match found.and_then(|i| Some((i, self.ring_at[i]?))) {
            Some((i, sent_at)) => {
                self.ring_fate[i] = Fate::Echoed;
                let rtt = now.saturating_duration_since(sent_at);
                self.counters.matched += 1;
                self.rtt.add(rtt);
                Received::Echo(rtt)
            }
            None => {
                self.counters.unmatched += 1;
                Received::Unmatched
            }
        }
    }
}

/// Makes the frame safe to match: no μ-law 0x7F, not all silence, not equal to a frame in
/// the ring. Returns its hash.
fn make_distinct(ring: &[u64; RING], law: Law, payload: &mut [u8; FRAME]) -> u64 {
    if law == Law::Mu {
        for c in payload.iter_mut() {
            if *c == 0x7F {
                *c = 0xFF;
            }
        }
    }
    let mut hash = frame_hash(payload);
    let mut attempt = 0;
    while attempt < FRAME && (is_silence(law, payload) || ring.contains(&hash)) {
        nudge(law, payload, attempt);
        hash = frame_hash(payload);
        attempt += 1;
    }
    hash
}

fn write_header(h: &RtpHeader, out: &mut [u8]) {
    // rtp::write also copies a payload; the payload is already in place here.
    if let Some(fixed) = out.get_mut(..rtp::HEADER_LEN) {
        fixed[0] = 0x80;
        fixed[1] = (u8::from(h.marker) << 7) | (h.payload_type & 0x7F);
        fixed[2..4].copy_from_slice(&h.sequence.to_be_bytes());
        fixed[4..8].copy_from_slice(&h.timestamp.to_be_bytes());
        fixed[8..12].copy_from_slice(&h.ssrc.to_be_bytes());
    }
}

fn is_silence(law: Law, payload: &[u8]) -> bool {
    let s = law.silence();
    !payload.is_empty() && payload.iter().all(|&c| c == s)
}

/// Moves one code by one quantisation step (an inaudible change), never to μ-law 0x7F.
fn nudge(law: Law, payload: &mut [u8; FRAME], attempt: usize) {
    let i = (attempt * 37) % FRAME;
    let c = payload[i];
    let mut n = c ^ 1;
    if law == Law::Mu && n == 0x7F {
        n = c ^ 2;
    }
    payload[i] = n;
}

/// A 64-bit hash of a frame, eight bytes at a time; never 0 (the ring's empty mark).
pub fn frame_hash(p: &[u8; FRAME]) -> u64 {
    let (words, _) = p.as_chunks::<8>();
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for w in words {
        h = (h.rotate_left(5) ^ u64::from_le_bytes(*w)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    (h ^ (h >> 29)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::wav::WavAudio;
    use crate::load::signal::Program;

    fn remote() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    fn media(law: Law) -> CallMedia {
        let mut m = CallMedia::new(Program::builtin(1).voice(2), 0x1234_5678_9ABC_DEF0);
        m.start(
            SendParams {
                law,
                payload_type: law.payload_type(),
                remote: remote(),
                srtp: None,
            },
            10,
        );
        m
    }

    /// What the gateway does to a frame: decode, then encode with the same law.
    fn gateway_round_trip(law: Law, packet: &[u8]) -> Vec<u8> {
        let (h, payload) = rtp::parse(packet).unwrap();
        let mut pcm = vec![0i16; payload.len()];
        g711::decode(law, payload, &mut pcm);
        let mut codes = vec![0u8; pcm.len()];
        g711::encode(law, &pcm, &mut codes);
        let mut out = vec![0u8; 12 + codes.len()];
        let echo = RtpHeader {
            ssrc: 77,
            sequence: h.sequence.wrapping_add(1000),
            ..h
        };
        rtp::write(&echo, &codes, &mut out).unwrap();
        out
    }

    #[test]
    fn packets_are_paced_rtp_with_tick_timestamps() {
        let mut m = media(Law::Mu);
        let t0 = Instant::now();
        let (to, p) = m.next_packet(t0, 10).unwrap();
        assert_eq!(to, remote());
        let (h, payload) = rtp::parse(p).unwrap();
        assert!(h.marker);
        assert_eq!((h.payload_type, payload.len()), (0, 160));
        let (seq0, ts0) = (h.sequence, h.timestamp);
        // Tick 13 after tick 10: the timestamp moves 3 frames, the sequence one.
        let (_, p) = m.next_packet(t0, 13).unwrap();
        let (h, _) = rtp::parse(p).unwrap();
        assert!(!h.marker);
        assert_eq!(h.sequence, seq0.wrapping_add(1));
        assert_eq!(h.timestamp, ts0.wrapping_add(480));
        m.stop();
        assert!(m.next_packet(t0, 14).is_none());
    }

    #[test]
    fn echoes_through_the_gateway_codec_match_with_their_latency() {
        for law in [Law::Mu, Law::A] {
            let mut m = media(law);
            let t0 = Instant::now();
            let mut echoes = Vec::new();
            for k in 0..200u64 {
                let sent_at = t0 + Duration::from_millis(20 * k);
                let (_, p) = m.next_packet(sent_at, k).unwrap();
                assert!(!rtp::parse(p).unwrap().1.contains(&0x7F) || law == Law::A);
                echoes.push(gateway_round_trip(law, p));
            }
            // Each echo comes back 7 ms after its frame was sent (the last 50 are in the ring).
            for (k, e) in echoes.iter().enumerate().skip(150) {
                let at = t0 + Duration::from_millis(20 * k as u64 + 7);
                assert_eq!(
                    m.on_datagram(at, e),
                    Received::Echo(Duration::from_millis(7))
                );
            }
            assert_eq!(m.counters().matched, 50);
            assert_eq!(m.counters().unmatched, 0);
        }
    }

    #[test]
    fn silence_unknown_frames_and_other_payloads_are_told_apart() {
        let mut m = media(Law::Mu);
        let now = Instant::now();
        let mut buf = [0u8; 172];
        let h = RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: 1,
            timestamp: 0,
            ssrc: 9,
        };
        let n = rtp::write(&h, &[0xFF; 160], &mut buf).unwrap();
        assert_eq!(m.on_datagram(now, &buf[..n]), Received::Silence);
        let a_law_silence = RtpHeader {
            payload_type: 8,
            sequence: 2,
            ..h
        };
        let n = rtp::write(&a_law_silence, &[0xD5; 160], &mut buf).unwrap();
        assert_eq!(m.on_datagram(now, &buf[..n]), Received::Silence);
        let n = rtp::write(&RtpHeader { sequence: 3, ..h }, &[0x42; 160], &mut buf).unwrap();
        assert_eq!(m.on_datagram(now, &buf[..n]), Received::Unmatched);
        let dtmf = RtpHeader {
            payload_type: 101,
            sequence: 4,
            ..h
        };
        let n = rtp::write(&dtmf, &[1, 0x80, 0, 160], &mut buf).unwrap();
        assert_eq!(m.on_datagram(now, &buf[..n]), Received::Other);
        assert_eq!(m.on_datagram(now, b"junk"), Received::Other);
        let c = m.counters();
        assert_eq!((c.received, c.silence, c.unmatched, c.other), (4, 2, 1, 2));
        assert_eq!(m.first_rx(), Some(now));
        assert_eq!(m.recv_stats().received(), 3);
    }

    #[test]
    fn repeated_and_silent_file_frames_are_made_distinct() {
        // A file of digital silence: every frame would be comfort silence and identical.
        let program = Program::from_wav(WavAudio::Pcm16(vec![0; 8000]));
        let mut m = CallMedia::new(program.voice(1), 5);
        m.start(
            SendParams {
                law: Law::Mu,
                payload_type: 0,
                remote: remote(),
                srtp: None,
            },
            0,
        );
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        for k in 0..RING as u64 {
            let (_, p) = m.next_packet(now, k).unwrap();
            let payload: [u8; 160] = rtp::parse(p).unwrap().1.try_into().unwrap();
            assert!(!is_silence(Law::Mu, &payload), "frame {k} is silence");
            assert!(!payload.contains(&0x7F));
            assert!(seen.insert(payload), "frame {k} repeats one in the ring");
        }
    }

    #[test]
    fn nudge_never_makes_mu_law_negative_zero() {
        let mut p = [0x7E; FRAME];
        for attempt in 0..FRAME {
            nudge(Law::Mu, &mut p, attempt);
        }
        assert!(!p.contains(&0x7F));
    }
}
