//! RFC 4733 telephone-events (DTMF digits 0-9, *, #, A-D).
//!
//! A key press is identified by its RTP timestamp: every packet of one event, including the
//! retransmitted end packets, carries the timestamp of the event's start (RFC 4733 §2.5.1.1).
//! The decoder reports a digit on the first packet it sees of a new timestamp, so a press is
//! reported once, at the lowest latency, whether or not the start packet (with the marker bit,
//! which some providers omit anyway) arrived.

use super::rtp::RtpHeader;

/// Payload length of one event block (RFC 4733 §2.3).
pub const EVENT_LEN: usize = 4;

/// Longest duration one event segment can carry; longer events continue in a new segment.
const MAX_SEGMENT: u32 = 0xFFFF;
/// A segment at least this long without an end bit may be continued by a next segment
/// (RFC 4733 §2.5.2.3); a press that short cannot be, so a same-digit repeat stays a new press.
const LONG_SEGMENT: u32 = 0xC000;

/// The key press most recently seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DtmfEvent {
    pub digit: char,
    /// Duration so far (the final duration once `ended`).
    pub duration_ms: u32,
    /// Whether an end packet has been seen.
    pub ended: bool,
    /// Volume in -dBm0 (0 is loudest).
    pub volume: u8,
}

#[derive(Clone, Copy, Debug)]
struct Press {
    ssrc: u32,
    /// Timestamp of the current segment.
    timestamp: u32,
    event: u8,
    /// Duration of earlier segments of a long press, in timestamp units.
    earlier_segments: u32,
    /// Longest duration seen in the current segment.
    duration: u32,
    ended: bool,
    volume: u8,
}

/// Turns a stream of telephone-event packets into one digit per key press.
#[derive(Clone, Debug)]
pub struct DtmfDecoder {
    clock_rate: u32,
    press: Option<Press>,
}

impl DtmfDecoder {
    pub fn new(clock_rate: u32) -> Self {
        DtmfDecoder {
            clock_rate: clock_rate.max(1),
            press: None,
        }
    }

    /// Feeds one telephone-event packet (its header and payload). Returns the digit exactly
    /// once per key press, on the first packet seen of it. Short payloads and events other
    /// than the 16 DTMF keys are ignored.
    pub fn on_packet(&mut self, header: &RtpHeader, payload: &[u8]) -> Option<char> {
        let [event, flags, d0, d1] = *payload.first_chunk::<EVENT_LEN>()?;
        let digit = event_to_digit(event)?;
        let end = flags & 0x80 != 0;
        let volume = flags & 0x3F;
        let duration = u32::from(u16::from_be_bytes([d0, d1]));

        if let Some(press) = self.press.as_mut().filter(|p| p.ssrc == header.ssrc) {
            let since = header.timestamp.wrapping_sub(press.timestamp);
            if since == 0 {
                // Update or retransmitted end of the press already reported.
                press.duration = press.duration.max(duration);
                press.ended |= end;
                return None;
            }
            if (since as i32) < 0 {
                // A straggler of an earlier press, reordered behind the current one.
                return None;
            }
            let continues_long_press = press.event == event
                && !press.ended
                && press.duration >= LONG_SEGMENT
                && (press.duration..=MAX_SEGMENT).contains(&since);
            if continues_long_press {
                press.earlier_segments = press.earlier_segments.saturating_add(since);
                press.timestamp = header.timestamp;
                press.duration = duration;
                press.ended = end;
                return None;
            }
        }

        self.press = Some(Press {
            ssrc: header.ssrc,
            timestamp: header.timestamp,
            event,
            earlier_segments: 0,
            duration,
            ended: end,
            volume,
        });
        Some(digit)
    }

    /// The press most recently reported, with its duration so far.
    pub fn last_event(&self) -> Option<DtmfEvent> {
        let p = self.press?;
        let units = u64::from(p.earlier_segments) + u64::from(p.duration);
        Some(DtmfEvent {
            digit: event_to_digit(p.event)?,
            duration_ms: (units * 1000 / u64::from(self.clock_rate)) as u32,
            ended: p.ended,
            volume: p.volume,
        })
    }
}

/// Writes one event block: `digit`, the end bit, `volume` (-dBm0, 0..=63) and `duration` in
/// timestamp units. Returns false, leaving `out` untouched, for an unknown digit or a volume
/// that does not fit in 6 bits.
pub fn encode_event(digit: char, end: bool, volume: u8, duration: u16, out: &mut [u8; 4]) -> bool {
    let Some(event) = digit_to_event(digit) else {
        return false;
    };
    if volume > 0x3F {
        return false;
    }
    let [d0, d1] = duration.to_be_bytes();
    *out = [event, (u8::from(end) << 7) | volume, d0, d1];
    true
}

/// RFC 4733 §3.2 event code of a DTMF key (`a`-`d` accepted as `A`-`D`).
pub fn digit_to_event(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(c as u8 - b'A' + 12),
        'a'..='d' => Some(c as u8 - b'a' + 12),
        _ => None,
    }
}

/// DTMF key of an RFC 4733 event code; `None` for codes above 15 (flash and non-DTMF events).
pub fn event_to_digit(e: u8) -> Option<char> {
    match e {
        0..=9 => Some(char::from(b'0' + e)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + e - 12)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SSRC: u32 = 0x0D7F_0001;

    fn header(marker: bool, seq: u16, timestamp: u32) -> RtpHeader {
        RtpHeader {
            marker,
            payload_type: 101,
            sequence: seq,
            timestamp,
            ssrc: SSRC,
        }
    }

    fn block(digit: char, end: bool, duration: u16) -> [u8; 4] {
        let mut out = [0; 4];
        assert!(encode_event(digit, end, 10, duration, &mut out));
        out
    }

    /// The packets a typical sender emits for one press: updates every 20 ms (160 units),
    /// then the end packet three times. The first carries the marker if `marker`.
    fn press(digit: char, ts: u32, seq: u16, marker: bool) -> Vec<(RtpHeader, [u8; 4])> {
        let mut packets: Vec<_> = (1..=5u16)
            .map(|i| {
                (
                    header(marker && i == 1, seq + i - 1, ts),
                    block(digit, false, 160 * i),
                )
            })
            .collect();
        for i in 0..3 {
            packets.push((header(false, seq + 5 + i, ts), block(digit, true, 960)));
        }
        packets
    }

    fn feed(dec: &mut DtmfDecoder, packets: &[(RtpHeader, [u8; 4])]) -> Vec<char> {
        packets
            .iter()
            .filter_map(|(h, p)| dec.on_packet(h, p))
            .collect()
    }

    #[test]
    fn one_press_with_marker_reports_once_on_first_packet() {
        let mut dec = DtmfDecoder::new(8000);
        let packets = press('5', 1000, 1, true);
        assert_eq!(dec.on_packet(&packets[0].0, &packets[0].1), Some('5'));
        assert_eq!(feed(&mut dec, &packets[1..]), Vec::<char>::new());
        let last = dec.last_event().unwrap();
        assert_eq!(
            last,
            DtmfEvent {
                digit: '5',
                duration_ms: 120,
                ended: true,
                volume: 10
            }
        );
    }

    #[test]
    fn one_press_without_marker() {
        let mut dec = DtmfDecoder::new(8000);
        assert_eq!(feed(&mut dec, &press('#', 1000, 1, false)), vec!['#']);
    }

    #[test]
    fn press_whose_start_packets_were_lost_is_still_reported() {
        let mut dec = DtmfDecoder::new(8000);
        let packets = press('7', 5000, 1, true);
        assert_eq!(feed(&mut dec, &packets[3..]), vec!['7']);
        // Only the end packets arrived.
        let mut dec = DtmfDecoder::new(8000);
        assert_eq!(feed(&mut dec, &packets[5..]), vec!['7']);
        assert!(dec.last_event().unwrap().ended);
    }

    #[test]
    fn end_retransmits_and_reordered_stragglers_do_not_repeat() {
        let mut dec = DtmfDecoder::new(8000);
        let first = press('1', 1000, 1, true);
        let second = press('2', 3000, 9, true);
        assert_eq!(feed(&mut dec, &first), vec!['1']);
        assert_eq!(feed(&mut dec, &second[..2]), vec!['2']);
        // A late end retransmit of '1' arrives after '2' began.
        assert_eq!(feed(&mut dec, &first[7..]), Vec::<char>::new());
        assert_eq!(feed(&mut dec, &second[2..]), Vec::<char>::new());
    }

    #[test]
    fn two_presses_of_the_same_digit_are_two_digits() {
        let mut dec = DtmfDecoder::new(8000);
        let mut packets = press('9', 1000, 1, false);
        packets.extend(press('9', 2760, 9, false));
        assert_eq!(feed(&mut dec, &packets), vec!['9', '9']);
        // Even when the first press's end packets were all lost.
        let mut dec = DtmfDecoder::new(8000);
        let mut packets = press('9', 1000, 1, false);
        packets.truncate(5);
        packets.extend(press('9', 2760, 9, false));
        assert_eq!(feed(&mut dec, &packets), vec!['9', '9']);
    }

    #[test]
    fn malformed_and_non_dtmf_payloads_are_ignored() {
        let mut dec = DtmfDecoder::new(8000);
        let h = header(true, 1, 1000);
        assert_eq!(dec.on_packet(&h, &[]), None);
        assert_eq!(dec.on_packet(&h, &[5, 0x0A, 0]), None);
        assert_eq!(
            dec.on_packet(&h, &[16, 0x0A, 0, 160]),
            None,
            "flash is not a digit"
        );
        assert_eq!(dec.on_packet(&h, &[200, 0x0A, 0, 160]), None);
        assert_eq!(dec.last_event(), None);
        // A well-formed packet afterwards is still reported; trailing bytes are ignored.
        assert_eq!(dec.on_packet(&h, &[5, 0x0A, 0, 160, 0xFF]), Some('5'));
    }

    #[test]
    fn timestamp_wrap_and_ssrc_change_start_new_presses() {
        let mut dec = DtmfDecoder::new(8000);
        assert_eq!(
            feed(&mut dec, &press('3', u32::MAX - 100, 1, false)),
            vec!['3']
        );
        assert_eq!(feed(&mut dec, &press('4', 1500, 9, false)), vec!['4']);
        let other = RtpHeader {
            ssrc: 42,
            ..header(false, 1, 1500)
        };
        assert_eq!(dec.on_packet(&other, &block('4', false, 160)), Some('4'));
    }

    #[test]
    fn long_press_continued_in_a_new_segment_is_one_press() {
        let mut dec = DtmfDecoder::new(8000);
        let ts = 10_000u32;
        assert_eq!(
            dec.on_packet(&header(true, 1, ts), &block('0', false, 0xFF00)),
            Some('0')
        );
        assert_eq!(
            dec.on_packet(&header(false, 2, ts), &block('0', false, 0xFFFF)),
            None
        );
        let next = ts + 0xFFFF;
        assert_eq!(
            dec.on_packet(&header(false, 3, next), &block('0', false, 800)),
            None
        );
        assert_eq!(
            dec.on_packet(&header(false, 4, next), &block('0', true, 1600)),
            None
        );
        let last = dec.last_event().unwrap();
        assert_eq!((last.duration_ms, last.ended), ((0xFFFF + 1600) / 8, true));
        // Once ended, the same digit at the next position is a new press.
        let later = next + 1600;
        assert_eq!(
            dec.on_packet(&header(false, 5, later), &block('0', false, 160)),
            Some('0')
        );
    }

    #[test]
    fn digit_event_mapping_round_trips() {
        let digits = "0123456789*#ABCD";
        for (code, digit) in digits.chars().enumerate() {
            assert_eq!(digit_to_event(digit), Some(code as u8));
            assert_eq!(event_to_digit(code as u8), Some(digit));
        }
        assert_eq!(digit_to_event('b'), Some(13));
        assert_eq!(digit_to_event('E'), None);
        assert_eq!(digit_to_event('x'), None);
        assert_eq!(event_to_digit(16), None);
    }

    #[test]
    fn encode_event_layout_and_validation() {
        let mut out = [0xEE; 4];
        assert!(encode_event('#', true, 63, 0x1234, &mut out));
        assert_eq!(out, [11, 0x80 | 63, 0x12, 0x34]);
        assert!(encode_event('D', false, 0, 160, &mut out));
        assert_eq!(out, [15, 0, 0, 160]);
        assert!(!encode_event('x', false, 10, 160, &mut out));
        assert!(!encode_event('1', false, 64, 160, &mut out));
        assert_eq!(out, [15, 0, 0, 160], "left untouched on failure");
    }
}
