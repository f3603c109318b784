//! Jitter (reorder) buffer behaviour under a fake clock: every `Instant` is built from a base.

use proptest::prelude::*;
use sipbridge::media::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
use sipbridge::media::rtp::RtpHeader;
use std::time::{Duration, Instant};

const SSRC: u32 = 0xCAFE_0001;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn header(ssrc: u32, seq: u16) -> RtpHeader {
    RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: seq,
        timestamp: u32::from(seq).wrapping_mul(160),
        ssrc,
    }
}

/// Payload that identifies its packet, so released frames can be checked against what was sent.
fn payload(ssrc: u32, seq: u16) -> [u8; 6] {
    let [a, b, c, d] = ssrc.to_be_bytes();
    let [e, f] = seq.to_be_bytes();
    [a, b, c, d, e, f]
}

fn push(jb: &mut JitterBuffer, at: Instant, ssrc: u32, seq: u16) {
    jb.push(at, &header(ssrc, seq), &payload(ssrc, seq));
}

#[derive(Debug, PartialEq, Eq)]
enum Out {
    F(u16),
    L(u16),
}

/// Pops everything due at `now`, checking each frame's payload and timestamp against its number.
fn drain(jb: &mut JitterBuffer, now: Instant, ssrc: u32) -> Vec<Out> {
    let mut out = Vec::new();
    while let Some(item) = jb.pop(now) {
        match item {
            Playout::Frame {
                sequence,
                timestamp,
                payload: p,
            } => {
                assert_eq!(p, payload(ssrc, sequence), "payload of {sequence}");
                assert_eq!(timestamp, u32::from(sequence).wrapping_mul(160));
                out.push(Out::F(sequence));
            }
            Playout::Lost { sequence } => out.push(Out::L(sequence)),
        }
    }
    out
}

fn buffer() -> JitterBuffer {
    JitterBuffer::new(JitterConfig::default())
}

#[test]
fn in_order_packets_are_released_at_once() {
    let mut jb = buffer();
    let t0 = Instant::now();
    for seq in 100..150u16 {
        let at = t0 + ms(20 * u64::from(seq - 100));
        push(&mut jb, at, SSRC, seq);
        assert_eq!(drain(&mut jb, at, SSRC), vec![Out::F(seq)]);
        assert_eq!(jb.poll_timeout(), None);
        assert_eq!(jb.held(), 0);
    }
    assert_eq!(
        jb.stats(),
        JitterStats {
            released: 50,
            ..JitterStats::default()
        }
    );
}

#[test]
fn reordered_packet_within_deadline_fills_the_gap() {
    let mut jb = buffer();
    let t0 = Instant::now();
    push(&mut jb, t0, SSRC, 1);
    assert_eq!(drain(&mut jb, t0, SSRC), vec![Out::F(1)]);
    push(&mut jb, t0 + ms(20), SSRC, 3);
    assert_eq!(drain(&mut jb, t0 + ms(20), SSRC), vec![]);
    assert_eq!(
        jb.poll_timeout(),
        Some(t0 + ms(80)),
        "deadline is max_wait after 3 arrived"
    );
    push(&mut jb, t0 + ms(45), SSRC, 2);
    assert_eq!(
        drain(&mut jb, t0 + ms(45), SSRC),
        vec![Out::F(2), Out::F(3)]
    );
    assert_eq!(jb.stats().lost, 0);
    assert_eq!(jb.poll_timeout(), None);
}

#[test]
fn missing_packet_is_reported_lost_at_the_deadline() {
    let mut jb = buffer();
    let t0 = Instant::now();
    push(&mut jb, t0, SSRC, 1);
    drain(&mut jb, t0, SSRC);
    push(&mut jb, t0 + ms(40), SSRC, 3);
    push(&mut jb, t0 + ms(60), SSRC, 4);
    assert_eq!(drain(&mut jb, t0 + ms(99), SSRC), vec![]);
    assert_eq!(
        drain(&mut jb, t0 + ms(100), SSRC),
        vec![Out::L(2), Out::F(3), Out::F(4)]
    );
    assert_eq!(jb.stats().lost, 1);
    assert_eq!(jb.stats().released, 3);
}

#[test]
fn holding_more_than_max_wait_worth_of_frames_gives_up_the_gap_early() {
    let mut jb = buffer();
    let t0 = Instant::now();
    push(&mut jb, t0, SSRC, 10);
    drain(&mut jb, t0, SSRC);
    for seq in 12..=14 {
        push(&mut jb, t0, SSRC, seq);
        assert_eq!(drain(&mut jb, t0, SSRC), vec![], "3 held frames still wait");
    }
    push(&mut jb, t0, SSRC, 15);
    assert_eq!(
        drain(&mut jb, t0, SSRC),
        vec![Out::L(11), Out::F(12), Out::F(13), Out::F(14), Out::F(15)]
    );
}

#[test]
fn a_long_gap_is_reported_frame_by_frame() {
    let mut jb = buffer();
    let t0 = Instant::now();
    push(&mut jb, t0, SSRC, 1);
    push(&mut jb, t0, SSRC, 6);
    let out = drain(&mut jb, t0 + ms(60), SSRC);
    let expected: Vec<Out> = [Out::F(1)]
        .into_iter()
        .chain((2..6).map(Out::L))
        .chain([Out::F(6)])
        .collect();
    assert_eq!(out, expected);
}

#[test]
fn each_held_packet_gets_its_own_deadline() {
    let mut jb = buffer();
    let t0 = Instant::now();
    push(&mut jb, t0, SSRC, 1);
    push(&mut jb, t0, SSRC, 3);
    assert_eq!(drain(&mut jb, t0, SSRC), vec![Out::F(1)]);
    push(&mut jb, t0 + ms(50), SSRC, 5);
    // 3's deadline releases 2 (lost) and 3; 5 then waits for 4 until its own deadline.
    assert_eq!(
        drain(&mut jb, t0 + ms(60), SSRC),
        vec![Out::L(2), Out::F(3)]
    );
    assert_eq!(jb.poll_timeout(), Some(t0 + ms(110)));
    assert_eq!(drain(&mut jb, t0 + ms(109), SSRC), vec![]);
    assert_eq!(
        drain(&mut jb, t0 + ms(110), SSRC),
        vec![Out::L(4), Out::F(5)]
    );
}

#[test]
fn duplicates_are_dropped_whether_held_or_released() {
    let mut jb = buffer();
    let t0 = Instant::now();
    push(&mut jb, t0, SSRC, 1);
    drain(&mut jb, t0, SSRC);
    push(&mut jb, t0, SSRC, 1);
    push(&mut jb, t0, SSRC, 3);
    push(&mut jb, t0, SSRC, 3);
    push(&mut jb, t0, SSRC, 2);
    assert_eq!(drain(&mut jb, t0, SSRC), vec![Out::F(2), Out::F(3)]);
    push(&mut jb, t0, SSRC, 2);
    assert_eq!(drain(&mut jb, t0, SSRC), vec![]);
    let stats = jb.stats();
    assert_eq!((stats.duplicates, stats.late, stats.released), (3, 0, 3));
}

#[test]
fn packets_arriving_after_their_loss_was_reported_are_late() {
    let mut jb = buffer();
    let t0 = Instant::now();
    push(&mut jb, t0, SSRC, 1);
    push(&mut jb, t0, SSRC, 3);
    assert_eq!(
        drain(&mut jb, t0 + ms(60), SSRC),
        vec![Out::F(1), Out::L(2), Out::F(3)]
    );
    push(&mut jb, t0 + ms(61), SSRC, 2);
    // Older than the first packet ever seen is late too, not a restart.
    push(&mut jb, t0 + ms(62), SSRC, 0);
    assert_eq!(drain(&mut jb, t0 + ms(62), SSRC), vec![]);
    assert_eq!((jb.stats().late, jb.stats().duplicates), (2, 0));
}

#[test]
fn sequence_wrap_is_seamless() {
    let mut jb = buffer();
    let t0 = Instant::now();
    let arrival = [65533u16, 65534, 0, 65535, 1, 3, 2];
    let mut out = Vec::new();
    for seq in arrival {
        push(&mut jb, t0, SSRC, seq);
        out.extend(drain(&mut jb, t0, SSRC));
    }
    let expected: Vec<Out> = [65533u16, 65534, 65535, 0, 1, 2, 3].map(Out::F).into();
    assert_eq!(out, expected);
    // A loss across the wrap is reported with the wrapped number.
    push(&mut jb, t0, SSRC, 5);
    assert_eq!(
        drain(&mut jb, t0 + ms(60), SSRC),
        vec![Out::L(4), Out::F(5)]
    );
}

#[test]
fn large_jump_resynchronises_instead_of_reporting_hundreds_lost() {
    let mut jb = buffer();
    let t0 = Instant::now();
    for seq in 1..=3 {
        push(&mut jb, t0, SSRC, seq);
    }
    push(&mut jb, t0, SSRC, 500);
    push(&mut jb, t0, SSRC, 501);
    assert_eq!(
        drain(&mut jb, t0, SSRC),
        [1, 2, 3, 500, 501]
            .map(Out::F)
            .into_iter()
            .collect::<Vec<_>>()
    );
    let stats = jb.stats();
    assert_eq!((stats.resyncs, stats.lost), (1, 0));
    // A jump of exactly MAX_JUMP past the next expected number is still a gap.
    push(&mut jb, t0, SSRC, 602);
    assert_eq!(jb.stats().resyncs, 1);
    assert_eq!(drain(&mut jb, t0 + ms(60), SSRC).len(), 101);
}

#[test]
fn ssrc_change_drains_the_old_stream_first() {
    let mut jb = buffer();
    let t0 = Instant::now();
    let other = 0xBEEF;
    push(&mut jb, t0, SSRC, 65534);
    push(&mut jb, t0, SSRC, 0);
    push(&mut jb, t0, SSRC, 1);
    assert_eq!(drain(&mut jb, t0, SSRC), vec![Out::F(65534)]);
    push(&mut jb, t0 + ms(5), other, 7000);
    let mut out = Vec::new();
    while let Some(item) = jb.pop(t0 + ms(5)) {
        out.push(match item {
            Playout::Frame { sequence, .. } => Out::F(sequence),
            Playout::Lost { sequence } => Out::L(sequence),
        });
    }
    assert_eq!(out, vec![Out::L(65535), Out::F(0), Out::F(1), Out::F(7000)]);
    // The old stream's straggler neither plays nor flips the stream back.
    push(&mut jb, t0 + ms(6), SSRC, 65535);
    push(&mut jb, t0 + ms(20), other, 7001);
    assert_eq!(drain(&mut jb, t0 + ms(20), other), vec![Out::F(7001)]);
    let stats = jb.stats();
    assert_eq!((stats.resyncs, stats.late, stats.lost), (1, 1, 1));
}

#[test]
fn returning_to_the_previous_ssrc_is_accepted_once_confirmed() {
    let mut jb = buffer();
    let t0 = Instant::now();
    let other = 0xBEEF;
    push(&mut jb, t0, SSRC, 10);
    assert_eq!(drain(&mut jb, t0, SSRC), vec![Out::F(10)]);
    push(&mut jb, t0, other, 500);
    assert_eq!(drain(&mut jb, t0, other), vec![Out::F(500)]);
    push(&mut jb, t0, SSRC, 20);
    push(&mut jb, t0, SSRC, 21);
    assert_eq!(drain(&mut jb, t0, SSRC), vec![Out::F(21)]);
    assert_eq!((jb.stats().resyncs, jb.stats().late), (2, 1));
}

#[test]
fn sequence_restart_far_behind_needs_two_consecutive_packets() {
    let mut jb = buffer();
    let t0 = Instant::now();
    for seq in 5000..5005 {
        push(&mut jb, t0, SSRC, seq);
    }
    drain(&mut jb, t0, SSRC);
    // A lone stray far behind is dropped.
    push(&mut jb, t0, SSRC, 30);
    push(&mut jb, t0, SSRC, 5005);
    assert_eq!(drain(&mut jb, t0, SSRC), vec![Out::F(5005)]);
    assert_eq!(jb.stats().resyncs, 0);
    // The sender restarted at 10: the second consecutive packet confirms it.
    push(&mut jb, t0, SSRC, 10);
    push(&mut jb, t0, SSRC, 11);
    push(&mut jb, t0, SSRC, 12);
    assert_eq!(drain(&mut jb, t0, SSRC), vec![Out::F(11), Out::F(12)]);
    let stats = jb.stats();
    assert_eq!((stats.resyncs, stats.late), (1, 2));
}

#[test]
fn oversized_payload_is_released_as_lost_without_waiting() {
    let mut jb = JitterBuffer::new(JitterConfig {
        max_payload: 8,
        ..JitterConfig::default()
    });
    let t0 = Instant::now();
    push(&mut jb, t0, SSRC, 1);
    jb.push(t0, &header(SSRC, 2), &[0u8; 9]);
    push(&mut jb, t0, SSRC, 3);
    assert_eq!(
        drain(&mut jb, t0, SSRC),
        vec![Out::F(1), Out::L(2), Out::F(3)]
    );
    assert_eq!((jb.stats().oversized, jb.stats().lost), (1, 1));
}

#[test]
fn pushing_without_popping_overflows_into_losses_not_panics() {
    let mut jb = buffer();
    let t0 = Instant::now();
    for seq in 0..12u16 {
        push(&mut jb, t0, SSRC, seq);
    }
    assert_eq!(jb.stats().overflow, 4);
    assert_eq!(
        drain(&mut jb, t0, SSRC),
        (0..8).map(Out::F).collect::<Vec<_>>()
    );
    // The dropped packets are a gap like any other: reported once 12 has waited max_wait.
    push(&mut jb, t0, SSRC, 12);
    assert_eq!(drain(&mut jb, t0, SSRC), vec![]);
    let out = drain(&mut jb, t0 + ms(60), SSRC);
    assert_eq!(
        out,
        vec![Out::L(8), Out::L(9), Out::L(10), Out::L(11), Out::F(12)]
    );
}

#[test]
fn poll_timeout_reports_due_items_as_already_passed() {
    let mut jb = buffer();
    let t0 = Instant::now();
    assert_eq!(jb.poll_timeout(), None);
    push(&mut jb, t0, SSRC, 1);
    assert_eq!(jb.poll_timeout(), Some(t0), "an in-order packet is due now");
    drain(&mut jb, t0, SSRC);
    push(&mut jb, t0 + ms(30), SSRC, 3);
    assert_eq!(jb.poll_timeout(), Some(t0 + ms(90)));
}

/// Arrival scenario: each of `n` packets (numbered from `start`) is dropped, sent once or twice,
/// and the sends are shuffled into an arbitrary order, each after a random pause.
fn scenario() -> impl Strategy<Value = (u16, Vec<u16>, Vec<u64>, Vec<bool>)> {
    (any::<u16>(), 1usize..90)
        .prop_flat_map(|(start, n)| {
            let copies = prop::collection::vec(0u8..=2, n);
            (Just(start), copies)
        })
        .prop_flat_map(|(start, copies)| {
            let sends: Vec<u16> = copies
                .iter()
                .enumerate()
                .flat_map(|(i, &c)| std::iter::repeat_n(start.wrapping_add(i as u16), c.into()))
                .collect();
            let len = sends.len();
            (
                Just(start),
                Just(sends).prop_shuffle(),
                prop::collection::vec(0u64..50, len),
                prop::collection::vec(prop::bool::weighted(0.8), len),
            )
        })
}

proptest! {
    #[test]
    fn every_number_is_released_once_in_order((start, sends, gaps_ms, pop_after) in scenario()) {
        let mut jb = buffer();
        let t0 = Instant::now();
        let mut now = t0;
        let mut out = Vec::new();
        for ((&seq, &gap), &pop) in sends.iter().zip(&gaps_ms).zip(&pop_after) {
            now += ms(gap);
            push(&mut jb, now, SSRC, seq);
            if pop {
                out.extend(drain(&mut jb, now, SSRC));
            }
            prop_assert!(jb.held() <= 8);
        }
        out.extend(drain(&mut jb, now + ms(60), SSRC));
        prop_assert_eq!(jb.held(), 0);
        prop_assert_eq!(jb.poll_timeout(), None);

        if let Some(&first) = sends.first() {
            // Everything from the first packet seen to the newest sent, each once, in order.
            let newest = sends.iter().copied().max_by_key(|&s| s.wrapping_sub(start)).unwrap();
            let numbers: Vec<u16> = out.iter().map(|o| match o { Out::F(s) | Out::L(s) => *s }).collect();
            let expected: Vec<u16> =
                (0..=newest.wrapping_sub(first)).map(|i| first.wrapping_add(i)).collect();
            prop_assert_eq!(numbers, expected);
            // Frames are only released for packets that were sent (payloads are checked in drain).
            for o in &out {
                if let Out::F(s) = o {
                    prop_assert!(sends.contains(s));
                }
            }
            let stats = jb.stats();
            let frames = out.iter().filter(|o| matches!(o, Out::F(_))).count() as u64;
            prop_assert_eq!(stats.released, frames);
            prop_assert_eq!(stats.lost, out.len() as u64 - frames);
            prop_assert_eq!(stats.resyncs, 0);
            // Every send is released, or accounted for as a drop.
            prop_assert_eq!(
                stats.released + stats.duplicates + stats.late + stats.overflow,
                sends.len() as u64
            );
        }
    }

    #[test]
    fn arbitrary_packets_never_panic_and_output_stays_consistent(
        packets in prop::collection::vec(
            (0u32..3, any::<u16>(), 0usize..400, 0u64..100, any::<bool>()),
            0..200,
        )
    ) {
        let mut jb = buffer();
        let mut now = Instant::now();
        let data = [0x5Au8; 400];
        for (ssrc, seq, len, gap, pop) in packets {
            now += ms(gap);
            jb.push(now, &header(ssrc, seq), &data[..len]);
            if pop {
                while let Some(item) = jb.pop(now) {
                    if let Playout::Frame { payload, .. } = item {
                        prop_assert!(payload.len() <= 320);
                    }
                }
            }
            if let Some(t) = jb.poll_timeout() {
                prop_assert!(t <= now + ms(60));
            }
        }
        while jb.pop(now + ms(60)).is_some() {}
        prop_assert_eq!(jb.held(), 0);
    }
}
