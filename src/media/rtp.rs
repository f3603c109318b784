//! RTP fixed-header codec (RFC 3550 §5.1), RTP/RTCP demultiplexing (RFC 5761 §4) and receive
//! statistics (RFC 3550 A.1, A.3, A.8).
//!
//! Parsing borrows the datagram and writing fills a caller buffer, so the per-packet path never
//! allocates. Statistics are sans-IO: the arrival time is an input.

use std::time::Instant;

/// Length of the fixed RTP header without CSRCs or extension.
pub const HEADER_LEN: usize = 12;

/// The fields of the RTP fixed header that a G.711 / telephone-event endpoint acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
}

/// Why a datagram is not a usable RTP packet, or why a packet could not be written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("packet of {len} bytes is shorter than the {HEADER_LEN}-byte RTP header")]
    TooShort { len: usize },
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("CSRC count {count} runs past the end of a {len}-byte packet")]
    CsrcOverflow { count: u8, len: usize },
    #[error("header extension runs past the end of the packet")]
    ExtensionOverflow,
    #[error("padding count {padding} is invalid for {available} bytes after the header")]
    BadPadding { padding: u8, available: usize },
    #[error("payload type {0} does not fit in 7 bits")]
    InvalidPayloadType(u8),
    #[error("output buffer of {available} bytes is too small for a {needed}-byte packet")]
    BufferTooSmall { needed: usize, available: usize },
}

/// Parses an RTP packet: validates version 2, skips CSRCs and a header extension, strips
/// padding, and returns the header and the payload slice.
pub fn parse(packet: &[u8]) -> Result<(RtpHeader, &[u8]), RtpError> {
    let Some((fixed, rest)) = packet.split_first_chunk::<HEADER_LEN>() else {
        return Err(RtpError::TooShort { len: packet.len() });
    };
    let version = fixed[0] >> 6;
    if version != 2 {
        return Err(RtpError::BadVersion(version));
    }
    let has_padding = fixed[0] & 0x20 != 0;
    let has_extension = fixed[0] & 0x10 != 0;
    let csrc_count = fixed[0] & 0x0F;
    let header = RtpHeader {
        marker: fixed[1] & 0x80 != 0,
        payload_type: fixed[1] & 0x7F,
        sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
        timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
    };

    let rest = rest
        .get(usize::from(csrc_count) * 4..)
        .ok_or(RtpError::CsrcOverflow {
            count: csrc_count,
            len: packet.len(),
        })?;

    let rest = if has_extension {
        // RFC 3550 §5.3.1: 16-bit profile id, 16-bit length in 32-bit words, then the words.
        let (ext, after) = rest
            .split_first_chunk::<4>()
            .ok_or(RtpError::ExtensionOverflow)?;
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        after.get(words * 4..).ok_or(RtpError::ExtensionOverflow)?
    } else {
        rest
    };

    let payload = if has_padding {
        // The last octet counts the padding including itself, so zero is as invalid as a count
        // reaching back into the header.
        let padding = rest.last().copied().unwrap_or(0);
        let available = rest.len();
        if padding == 0 || usize::from(padding) > available {
            return Err(RtpError::BadPadding { padding, available });
        }
        &rest[..available - usize::from(padding)]
    } else {
        rest
    };
    Ok((header, payload))
}

/// Writes a 12-byte header (V=2, no padding, extension or CSRC) followed by `payload` into `out`
/// and returns the packet length.
pub fn write(header: &RtpHeader, payload: &[u8], out: &mut [u8]) -> Result<usize, RtpError> {
    if header.payload_type > 0x7F {
        return Err(RtpError::InvalidPayloadType(header.payload_type));
    }
    let needed = HEADER_LEN + payload.len();
    let available = out.len();
    let Some(dst) = out.get_mut(..needed) else {
        return Err(RtpError::BufferTooSmall { needed, available });
    };
    let (fixed, body) = dst.split_at_mut(HEADER_LEN);
    fixed[0] = 0x80;
    fixed[1] = (u8::from(header.marker) << 7) | header.payload_type;
    fixed[2..4].copy_from_slice(&header.sequence.to_be_bytes());
    fixed[4..8].copy_from_slice(&header.timestamp.to_be_bytes());
    fixed[8..12].copy_from_slice(&header.ssrc.to_be_bytes());
    body.copy_from_slice(payload);
    Ok(needed)
}

/// Whether a datagram on a muxed RTP/RTCP port is RTCP.
///
/// RFC 5761 §4: RTCP packet types 192..=223 occupy the second octet where RTP has marker +
/// payload type, i.e. payload types 64..=95 with the marker set. That range (not just SR..APP,
/// 72..=76) is checked so feedback (205/206) and XR (207) reports are not mistaken for media;
/// RFC 5761 forbids RTP payload types 64..=95 on muxed sessions, so no media is misrouted.
pub fn is_rtcp(packet: &[u8]) -> bool {
    match packet {
        [b0, b1, _, _, ..] => b0 >> 6 == 2 && (64..=95).contains(&(b1 & 0x7F)),
        _ => false,
    }
}

/// Shortest signed distance `a - b` in sequence-number space (positive when `a` is newer).
/// Exactly half the space apart (32768) is reported as -32768.
#[inline]
pub fn seq_diff(a: u16, b: u16) -> i32 {
    i32::from(a.wrapping_sub(b) as i16)
}

/// Whether sequence number `a` is newer than `b`, allowing for wrap-around.
#[inline]
pub fn seq_newer(a: u16, b: u16) -> bool {
    seq_diff(a, b) > 0
}

/// RFC 3550 A.1: a forward jump of up to this many is a gap, not a restart.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a packet up to this many behind the highest is reordered, not a restart.
const MAX_MISORDER: u16 = 100;

/// Receive statistics for one inbound RTP stream (RFC 3550 A.1 sequence tracking, A.3 loss,
/// A.8 interarrival jitter).
///
/// Unlike the RFC's counters, `received` excludes duplicates (tracked over the last 128
/// sequence numbers, which covers every packet the reorder tolerance accepts), so `lost` is
/// the real loss. An SSRC change or a confirmed sequence restart starts a new epoch; counts
/// accumulate across epochs so a call-level figure survives re-INVITEs.
#[derive(Clone, Debug)]
pub struct RecvStats {
    clock_rate: u32,
    seq: Option<SeqState>,
    /// Expected packets of epochs that ended (SSRC change or sequence restart).
    expected_prior_epochs: u64,
    received: u64,
    duplicates: u64,
    /// Arrival time that maps to RTP-clock zero when converting arrivals for A.8.
    clock_origin: Option<Instant>,
    last_transit: Option<u32>,
    /// Interarrival jitter in RTP timestamp units.
    jitter: f64,
    report_expected: u64,
    report_received: u64,
}

#[derive(Clone, Copy, Debug)]
struct SeqState {
    ssrc: u32,
    max_seq: u16,
    /// Count of sequence wraps, in units of 65536.
    cycles: u64,
    base_seq: u16,
    /// Expected next sequence of a suspected restart (A.1 `bad_seq`).
    bad_seq: Option<u16>,
    /// Bit i set: extended sequence `highest - i` has been received.
    seen: u128,
}

impl SeqState {
    fn new(ssrc: u32, seq: u16) -> Self {
        SeqState {
            ssrc,
            max_seq: seq,
            cycles: 0,
            base_seq: seq,
            bad_seq: None,
            seen: 1,
        }
    }

    fn extended_max(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    fn expected(&self) -> u64 {
        self.extended_max() - u64::from(self.base_seq) + 1
    }
}

/// What a packet did to the sequence state.
enum SeqOutcome {
    Counted,
    Duplicate,
    /// Held back pending confirmation of a restart; neither counted nor used for jitter.
    Suspect,
}

impl RecvStats {
    pub fn new(clock_rate: u32) -> Self {
        RecvStats {
            clock_rate: clock_rate.max(1),
            seq: None,
            expected_prior_epochs: 0,
            received: 0,
            duplicates: 0,
            clock_origin: None,
            last_transit: None,
            jitter: 0.0,
            report_expected: 0,
            report_received: 0,
        }
    }

    /// Accounts one received packet.
    pub fn on_packet(&mut self, header: &RtpHeader, arrival: Instant) {
        match self.update_seq(header) {
            SeqOutcome::Counted => {
                self.received += 1;
                self.update_jitter(header.timestamp, arrival);
            }
            SeqOutcome::Duplicate => self.duplicates += 1,
            SeqOutcome::Suspect => {}
        }
    }

    fn start_epoch(&mut self, ssrc: u32, seq: u16) {
        if let Some(old) = &self.seq {
            self.expected_prior_epochs += old.expected();
        }
        self.seq = Some(SeqState::new(ssrc, seq));
        // A new source or restart has an unrelated timestamp base.
        self.last_transit = None;
    }

    fn update_seq(&mut self, header: &RtpHeader) -> SeqOutcome {
        let seq = header.sequence;
        let Some(state) = self.seq.as_mut().filter(|s| s.ssrc == header.ssrc) else {
            self.start_epoch(header.ssrc, seq);
            return SeqOutcome::Counted;
        };
        let udelta = seq.wrapping_sub(state.max_seq);
        if udelta != 0 && udelta < MAX_DROPOUT {
            if seq < state.max_seq {
                state.cycles += 1 << 16;
            }
            state.max_seq = seq;
            state.seen = state.seen.checked_shl(u32::from(udelta)).unwrap_or(0) | 1;
            state.bad_seq = None;
            SeqOutcome::Counted
        } else if udelta != 0 && udelta <= u16::MAX - MAX_MISORDER {
            // A.1: a jump this large is either a stray or the sender restarted; two sequential
            // packets confirm the restart.
            if state.bad_seq == Some(seq) {
                self.start_epoch(header.ssrc, seq);
                SeqOutcome::Counted
            } else {
                state.bad_seq = Some(seq.wrapping_add(1));
                SeqOutcome::Suspect
            }
        } else {
            let behind = state.max_seq.wrapping_sub(seq);
            let bit = 1u128 << behind;
            if state.seen & bit != 0 {
                SeqOutcome::Duplicate
            } else {
                state.seen |= bit;
                SeqOutcome::Counted
            }
        }
    }

    fn update_jitter(&mut self, timestamp: u32, arrival: Instant) {
        let origin = *self.clock_origin.get_or_insert(arrival);
        let (elapsed, negative) = match arrival.checked_duration_since(origin) {
            Some(d) => (d, false),
            None => (origin.duration_since(arrival), true),
        };
        let units = (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        let arrival_units = if negative {
            units.wrapping_neg()
        } else {
            units
        };
        // 32-bit wrapping arithmetic, as in A.8, so timestamp wrap is harmless.
        let transit = arrival_units.wrapping_sub(timestamp);
        if let Some(last) = self.last_transit {
            let d = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// Packets expected: extended highest sequence minus the first, plus one, summed over epochs.
    pub fn expected(&self) -> u64 {
        self.expected_prior_epochs + self.seq.as_ref().map_or(0, SeqState::expected)
    }

    /// Distinct packets received (duplicates excluded).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Cumulative packets lost. Signed as in RFC 3550: packets from before the first one seen
    /// that arrive late make it negative.
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Duplicate packets seen.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Interarrival jitter (A.8) in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate)
    }

    /// Interarrival jitter in RTP timestamp units, as carried in a receiver report.
    pub fn jitter_rtp_units(&self) -> u32 {
        self.jitter as u32
    }

    /// Extended highest sequence number received (cycles in the top 16 bits), as carried in a
    /// receiver report; `None` before the first packet.
    pub fn extended_highest_seq(&self) -> Option<u32> {
        self.seq.as_ref().map(|s| s.extended_max() as u32)
    }

    /// Fraction of packets lost since the previous call, in 1/256 units (A.3), and starts a new
    /// reporting interval.
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected - self.report_expected;
        let received_interval = self.received - self.report_received;
        self.report_expected = expected;
        self.report_received = self.received;
        if expected_interval == 0 || received_interval >= expected_interval {
            return 0;
        }
        let lost_interval = expected_interval - received_interval;
        ((lost_interval << 8) / expected_interval).min(255) as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn header(seq: u16, ts: u32) -> RtpHeader {
        RtpHeader {
            marker: false,
            payload_type: 0,
            sequence: seq,
            timestamp: ts,
            ssrc: 0x1234_5678,
        }
    }

    #[test]
    fn write_then_parse_round_trips() {
        let h = RtpHeader {
            marker: true,
            payload_type: 101,
            sequence: 0xBEEF,
            timestamp: 0xDEAD_BEEF,
            ssrc: 0x0102_0304,
        };
        let payload: Vec<u8> = (0..160).map(|i| i as u8).collect();
        let mut buf = [0u8; 200];
        let n = write(&h, &payload, &mut buf).unwrap();
        assert_eq!(n, 172);
        assert_eq!(&buf[..4], &[0x80, 0x80 | 101, 0xBE, 0xEF]);
        let (parsed, body) = parse(&buf[..n]).unwrap();
        assert_eq!(parsed, h);
        assert_eq!(body, &payload[..]);
    }

    #[test]
    fn write_rejects_small_buffer_and_wide_payload_type() {
        let mut buf = [0u8; 20];
        assert_eq!(
            write(&header(1, 1), &[0; 9], &mut buf),
            Err(RtpError::BufferTooSmall {
                needed: 21,
                available: 20
            })
        );
        assert_eq!(write(&header(1, 1), &[0; 8], &mut buf), Ok(20));
        let wide = RtpHeader {
            payload_type: 128,
            ..header(1, 1)
        };
        assert_eq!(
            write(&wide, &[], &mut buf),
            Err(RtpError::InvalidPayloadType(128))
        );
    }

    fn packet(first: u8, tail: &[u8]) -> Vec<u8> {
        let mut p = vec![first, 0x00, 0, 7, 0, 0, 0, 160, 1, 2, 3, 4];
        p.extend_from_slice(tail);
        p
    }

    #[test]
    fn rejects_wrong_version() {
        for first in [0x00, 0x40, 0xC0] {
            assert_eq!(
                parse(&packet(first, &[1, 2])),
                Err(RtpError::BadVersion(first >> 6))
            );
        }
    }

    #[test]
    fn rejects_truncated_header() {
        let p = packet(0x80, &[]);
        for len in 0..HEADER_LEN {
            assert_eq!(parse(&p[..len]), Err(RtpError::TooShort { len }));
        }
        let (h, body) = parse(&p).unwrap();
        assert_eq!((h.sequence, h.timestamp, body.len()), (7, 160, 0));
    }

    #[test]
    fn skips_csrcs_and_rejects_csrc_count_past_end() {
        let ok = packet(0x82, &[0, 0, 0, 1, 0, 0, 0, 2, 0xAA, 0xBB]);
        assert_eq!(parse(&ok).unwrap().1, &[0xAA, 0xBB]);
        let bad = packet(0x83, &[0; 8]);
        assert_eq!(
            parse(&bad),
            Err(RtpError::CsrcOverflow { count: 3, len: 20 })
        );
    }

    #[test]
    fn skips_extension_and_rejects_overflowing_length() {
        let ok = packet(0x90, &[0xBE, 0xDE, 0, 1, 9, 9, 9, 9, 0xAA]);
        assert_eq!(parse(&ok).unwrap().1, &[0xAA]);
        let too_long = packet(0x90, &[0xBE, 0xDE, 0, 2, 9, 9, 9, 9]);
        assert_eq!(parse(&too_long), Err(RtpError::ExtensionOverflow));
        let cut_header = packet(0x90, &[0xBE, 0xDE]);
        assert_eq!(parse(&cut_header), Err(RtpError::ExtensionOverflow));
        // The extension is located after the CSRC list, not at a fixed offset.
        let both = packet(0x91, &[0, 0, 0, 1, 0xBE, 0xDE, 0, 0, 0xCC]);
        assert_eq!(parse(&both).unwrap().1, &[0xCC]);
    }

    #[test]
    fn strips_padding_and_rejects_bad_counts() {
        let ok = packet(0xA0, &[0xAA, 0xBB, 0, 0, 3]);
        assert_eq!(parse(&ok).unwrap().1, &[0xAA, 0xBB]);
        let all_padding = packet(0xA0, &[0, 0, 3]);
        assert_eq!(parse(&all_padding).unwrap().1, &[] as &[u8]);
        let too_long = packet(0xA0, &[0xAA, 4]);
        assert_eq!(
            parse(&too_long),
            Err(RtpError::BadPadding {
                padding: 4,
                available: 2
            })
        );
        let zero = packet(0xA0, &[0xAA, 0]);
        assert_eq!(
            parse(&zero),
            Err(RtpError::BadPadding {
                padding: 0,
                available: 2
            })
        );
        let nothing = packet(0xA0, &[]);
        assert_eq!(
            parse(&nothing),
            Err(RtpError::BadPadding {
                padding: 0,
                available: 0
            })
        );
        // Padding is counted from the end of the packet, after CSRCs and extension are skipped.
        let with_ext = packet(0xB1, &[0, 0, 0, 9, 0xBE, 0xDE, 0, 0, 0xAA, 0, 2]);
        assert_eq!(parse(&with_ext).unwrap().1, &[0xAA]);
        let into_ext = packet(0xB0, &[0xBE, 0xDE, 0, 0, 0xAA, 3]);
        assert_eq!(
            parse(&into_ext),
            Err(RtpError::BadPadding {
                padding: 3,
                available: 2
            })
        );
    }

    #[test]
    fn tells_rtcp_from_rtp() {
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1];
        let sr = [0x80, 200, 0, 6];
        let psfb = [0x81, 206, 0, 2];
        let xr = [0x80, 207, 0, 2];
        for p in [&rr[..], &sr, &psfb, &xr] {
            assert!(is_rtcp(p), "{p:?}");
        }
        let pcmu_marker = [0x80, 0x80, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        let event = [0x80, 101, 0, 1];
        let pcma = [0x80, 8, 0, 1];
        for p in [
            &pcmu_marker[..],
            &event,
            &pcma,
            &[0x81, 201],
            &[0x01, 201, 0, 7],
        ] {
            assert!(!is_rtcp(p), "{p:?}");
        }
    }

    #[test]
    fn sequence_comparison_wraps() {
        assert_eq!(seq_diff(0, 65535), 1);
        assert_eq!(seq_diff(65535, 0), -1);
        assert_eq!(seq_diff(100, 50), 50);
        assert_eq!(seq_diff(5, 65000), 541);
        assert_eq!(seq_diff(32768, 0), -32768);
        assert!(seq_newer(0, 65535));
        assert!(!seq_newer(65535, 0));
        assert!(!seq_newer(7, 7));
    }

    /// Feeds `seqs` as 20 ms frames (160 units at 8 kHz) numbered from the first; the i-th
    /// packet fed arrives `offset_ms(i)` after its nominal time.
    fn feed(stats: &mut RecvStats, t0: Instant, seqs: &[u16], offset_ms: impl Fn(usize) -> u64) {
        for (i, &seq) in seqs.iter().enumerate() {
            let n = seq.wrapping_sub(seqs[0]);
            let ts = u32::from(n) * 160;
            let at = t0 + Duration::from_millis(20 * u64::from(n) + offset_ms(i));
            stats.on_packet(&header(seq, ts), at);
        }
    }

    #[test]
    fn stats_in_order_stream_has_no_loss_or_jitter() {
        let mut s = RecvStats::new(8000);
        assert_eq!(
            (s.expected(), s.received(), s.extended_highest_seq()),
            (0, 0, None)
        );
        let seqs: Vec<u16> = (1000..1100).collect();
        feed(&mut s, Instant::now(), &seqs, |_| 0);
        assert_eq!((s.expected(), s.received(), s.lost()), (100, 100, 0));
        assert_eq!(s.jitter_ms(), 0.0);
        assert_eq!(s.extended_highest_seq(), Some(1099));
    }

    #[test]
    fn stats_count_loss_across_sequence_wrap() {
        let mut s = RecvStats::new(8000);
        let seqs: Vec<u16> = (0..40u16)
            .map(|i| 65520u16.wrapping_add(i))
            .filter(|&q| q % 7 != 0)
            .collect();
        feed(&mut s, Instant::now(), &seqs, |_| 0);
        let first = seqs[0];
        let last = *seqs.last().unwrap();
        let expected = u64::from(last.wrapping_sub(first)) + 1;
        assert_eq!(s.expected(), expected);
        assert_eq!(s.lost(), (expected - seqs.len() as u64) as i64);
        assert_eq!(s.extended_highest_seq(), Some(65536 + u32::from(last)));
    }

    #[test]
    fn stats_reordering_is_not_loss_and_duplicates_are_not_received() {
        let mut s = RecvStats::new(8000);
        feed(&mut s, Instant::now(), &[1, 2, 4, 3, 5, 5, 2, 6], |_| 0);
        assert_eq!(
            (s.expected(), s.received(), s.lost(), s.duplicates()),
            (6, 6, 0, 2)
        );
    }

    #[test]
    fn stats_single_stray_jump_is_ignored_but_confirmed_restart_starts_new_epoch() {
        let mut s = RecvStats::new(8000);
        feed(&mut s, Instant::now(), &[10, 11, 12, 40000, 13, 14], |_| 0);
        assert_eq!((s.expected(), s.received(), s.lost()), (5, 5, 0));
        // Two sequential packets far away: the sender restarted its sequence.
        feed(&mut s, Instant::now(), &[20000, 20001, 20002, 20004], |_| 0);
        assert_eq!(s.expected(), 5 + 4);
        assert_eq!(s.received(), 5 + 3);
        assert_eq!(s.lost(), 1);
    }

    #[test]
    fn stats_accumulate_across_ssrc_change() {
        let mut s = RecvStats::new(8000);
        let t0 = Instant::now();
        feed(&mut s, t0, &[1, 2, 3, 5], |_| 0);
        for (i, seq) in [9000u16, 9001, 9002].into_iter().enumerate() {
            let h = RtpHeader {
                ssrc: 77,
                ..header(seq, 555 + 160 * i as u32)
            };
            s.on_packet(&h, t0 + Duration::from_millis(100 + 20 * i as u64));
        }
        assert_eq!((s.expected(), s.received(), s.lost()), (5 + 3, 4 + 3, 1));
        assert_eq!(
            s.jitter_ms(),
            0.0,
            "the new timestamp base must not register as jitter"
        );
    }

    #[test]
    fn stats_jitter_converges_to_alternating_delay() {
        let mut s = RecvStats::new(8000);
        let seqs: Vec<u16> = (0..400).collect();
        // Every other packet is 5 ms late: |D| is 5 ms for every pair, so J tends to 5 ms.
        feed(&mut s, Instant::now(), &seqs, |i| {
            if i % 2 == 1 {
                5
            } else {
                0
            }
        });
        assert!(
            (s.jitter_ms() - 5.0).abs() < 0.01,
            "jitter {}",
            s.jitter_ms()
        );
        assert_eq!(s.jitter_rtp_units(), 39);
    }

    #[test]
    fn stats_fraction_lost_per_interval() {
        let mut s = RecvStats::new(8000);
        let t0 = Instant::now();
        let seqs: Vec<u16> = (0..100).filter(|q| q % 4 != 0 || *q == 0).collect();
        feed(&mut s, t0, &seqs, |_| 0);
        // Expected 100, received 76: 24 lost -> 24 * 256 / 100 = 61.
        assert_eq!(s.take_fraction_lost(), 61);
        assert_eq!(s.take_fraction_lost(), 0, "no packets in the new interval");
        feed(&mut s, t0, &[100, 101], |_| 0);
        assert_eq!(s.take_fraction_lost(), 0);
    }
}
