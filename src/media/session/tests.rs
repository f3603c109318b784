use std::time::Duration;

use super::*;

fn remote() -> SocketAddr {
    "168.86.138.121:12692".parse().unwrap()
}

fn params() -> MediaParams {
    MediaParams {
        law: Law::Mu,
        payload_type: 0,
        telephone_event_pt: Some(101),
        remote: Some(remote()),
        send: true,
        media_timeout: Duration::from_secs(15),
        initial_media_timeout: Duration::from_secs(30),
        latch: false,
        srtp: None,
    }
}

fn packet(seq: u16, pt: u8, payload: &[u8]) -> Vec<u8> {
    let h = RtpHeader {
        marker: false,
        payload_type: pt,
        sequence: seq,
        timestamp: seq as u32 * 160,
        ssrc: 0x1234,
    };
    let mut out = vec![0u8; 12 + payload.len()];
    let n = rtp::write(&h, payload, &mut out).unwrap();
    out.truncate(n);
    out
}

fn tone_payload(level: i16) -> [u8; 160] {
    let pcm = [level; 160];
    let mut out = [0u8; 160];
    g711::encode(Law::Mu, &pcm, &mut out);
    out
}

#[test]
fn caller_audio_is_decoded_in_order_without_delay() {
    let t0 = Instant::now();
    let mut m = MediaSession::new(t0, params());
    m.on_datagram(t0, remote(), &mut packet(10, 0, &tone_payload(1000)));
    let f = m
        .poll_caller_audio(t0)
        .expect("in-order frame released at once");
    assert_eq!(f.sample_rate(), 8000);
    assert_eq!(f.samples().len(), 160);
    assert!(
        (f.samples()[0] - 1000).abs() < 40,
        "decoded {}",
        f.samples()[0]
    );
    assert!(m.poll_caller_audio(t0).is_none());
}

#[test]
fn a_lost_frame_is_concealed_once_the_gap_deadline_passes() {
    let t0 = Instant::now();
    let mut m = MediaSession::new(t0, params());
    m.on_datagram(t0, remote(), &mut packet(1, 0, &tone_payload(2000)));
    assert!(m.poll_caller_audio(t0).is_some());
    // 2 is lost; 3 arrives and is held until the gap's deadline.
    let t1 = t0 + Duration::from_millis(40);
    m.on_datagram(t1, remote(), &mut packet(3, 0, &tone_payload(2000)));
    assert!(m.poll_caller_audio(t1).is_none());
    let late = t1 + Duration::from_millis(100);
    let concealed = m.poll_caller_audio(late).expect("concealment");
    // The first concealed frame repeats the last one, quieter.
    assert!(concealed.samples()[0] > 500 && concealed.samples()[0] < 2000);
    assert!(m.poll_caller_audio(late).is_some(), "frame 3 follows");
    assert_eq!(m.counters().concealed, 1);
}

#[test]
fn dtmf_comes_out_once_per_press() {
    let t0 = Instant::now();
    let mut m = MediaSession::new(t0, params());
    // Event 5, three updates and three end packets, same timestamp, no marker bit.
    for (i, end) in [false, false, false, true, true, true]
        .into_iter()
        .enumerate()
    {
        let dur = 160 * (i as u16 + 1);
        let payload = [
            5u8,
            if end { 0x80 | 10 } else { 10 },
            (dur >> 8) as u8,
            dur as u8,
        ];
        let h = RtpHeader {
            marker: false,
            payload_type: 101,
            sequence: 100 + i as u16,
            timestamp: 8000,
            ssrc: 7,
        };
        let mut buf = [0u8; 16];
        let n = rtp::write(&h, &payload, &mut buf).unwrap();
        m.on_datagram(t0, remote(), &mut buf[..n]);
    }
    assert_eq!(m.poll_dtmf(), Some('5'));
    assert_eq!(m.poll_dtmf(), None);
}

#[test]
fn the_send_clock_fills_idle_slots_with_silence_and_sends_agent_frames() {
    let t0 = Instant::now();
    let mut m = MediaSession::new(t0, params());
    assert!(m.slot_open(t0));
    let frame = AudioFrame::from_samples(8000, &[3000; 160]);
    let (to, pkt) = m.send_frame(t0, &frame).expect("packet");
    assert_eq!(to, remote());
    let (h, payload) = rtp::parse(pkt).unwrap();
    assert_eq!((h.payload_type, payload.len()), (0, 160));
    assert!(h.marker, "first packet starts a talk spurt");
    let first_ts = h.timestamp;
    let first_seq = h.sequence;

    // Nothing from the agent: at the next deadline and its 10 ms grace, comfort silence with the
    // next timestamp.
    let due = m.poll_timeout(false);
    assert_eq!(due, t0 + Duration::from_millis(50));
    let (_, pkt) = m.handle_timeout(due).expect("silence");
    let (h, payload) = rtp::parse(pkt).unwrap();
    assert_eq!(h.timestamp, first_ts.wrapping_add(160));
    assert_eq!(h.sequence, first_seq.wrapping_add(1));
    assert!(payload.iter().all(|&b| b == Law::Mu.silence()));
    assert_eq!(m.counters().silence_sent, 1);
}

#[test]
fn on_hold_nothing_is_sent_but_the_clock_runs() {
    let t0 = Instant::now();
    let mut m = MediaSession::new(
        t0,
        MediaParams {
            send: false,
            ..params()
        },
    );
    let frame = AudioFrame::silence(8000);
    // Nothing goes out, but the slots are used: after two (the most that may go ahead of the
    // clock), the next waits for its window.
    for _ in 0..2 {
        assert!(m.slot_open(t0));
        assert!(m.send_frame(t0, &frame).is_none());
    }
    assert!(!m.slot_open(t0));
}

#[test]
fn media_timeouts_before_and_after_the_first_packet() {
    let t0 = Instant::now();
    let m = MediaSession::new(t0, params());
    assert_eq!(m.timed_out(t0 + Duration::from_secs(29)), None);
    assert_eq!(
        m.timed_out(t0 + Duration::from_secs(30)),
        Some(MediaTimeout::NeverStarted)
    );

    let mut m = MediaSession::new(t0, params());
    let t1 = t0 + Duration::from_secs(1);
    m.on_datagram(t1, remote(), &mut packet(1, 0, &tone_payload(0)));
    assert_eq!(m.timed_out(t1 + Duration::from_secs(14)), None);
    assert_eq!(
        m.timed_out(t1 + Duration::from_secs(15)),
        Some(MediaTimeout::Stopped)
    );
    assert!(m.poll_timeout(false) <= t1 + Duration::from_secs(15));
}

#[test]
fn garbage_and_foreign_payload_types_are_counted_not_fatal() {
    let t0 = Instant::now();
    let mut m = MediaSession::new(t0, params());
    m.on_datagram(t0, remote(), &mut [0x00, 0x01]);
    m.on_datagram(t0, remote(), &mut packet(1, 18, &[0; 20]));
    m.on_datagram(t0, remote(), &mut [0x80, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // RTCP SR
    assert_eq!(m.counters().ignored, 2);
    assert!(m.poll_caller_audio(t0).is_none());
}

/// Runs the send clock for `slots` slots with no agent audio; returns what went out.
fn run_slots(s: &mut MediaSession, t0: Instant, slots: u64) -> Vec<(RtpHeader, Vec<u8>)> {
    let mut out = Vec::new();
    for k in 1..=slots {
        let t = t0 + Duration::from_millis(20 * k);
        if let Some((to, pkt)) = s.handle_timeout(t) {
            assert_eq!(to, remote());
            let (h, p) = rtp::parse(pkt).unwrap();
            out.push((h, p.to_vec()));
        }
    }
    out
}

#[test]
fn dtmf_to_the_caller_is_rfc4733_events_in_the_stream() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, params());
    assert!(s.send_dtmf('5'));
    assert!(s.send_dtmf('#'));
    assert!(!s.send_dtmf('x'));
    let out = run_slots(&mut s, t0, 20);
    let events: Vec<_> = out.iter().filter(|(h, _)| h.payload_type == 101).collect();
    assert_eq!(events.len(), 16, "two presses of 5 updates + 3 ends");
    assert_eq!(s.counters().dtmf_sent, 16);
    // Our own decoder reads them back as exactly two presses.
    let mut dec = DtmfDecoder::new(8000);
    let digits: Vec<char> = events
        .iter()
        .filter_map(|(h, p)| dec.on_packet(h, p))
        .collect();
    assert_eq!(digits, vec!['5', '#']);
    let first = &events[..8];
    assert!(first[0].0.marker && !first[1].0.marker);
    assert!(first
        .iter()
        .all(|(h, _)| h.timestamp == first[0].0.timestamp));
    let durations: Vec<u16> = first
        .iter()
        .map(|(_, p)| u16::from_be_bytes([p[2], p[3]]))
        .collect();
    assert_eq!(durations, vec![160, 320, 480, 640, 800, 800, 800, 800]);
    let ends: Vec<bool> = first.iter().map(|(_, p)| p[1] & 0x80 != 0).collect();
    assert_eq!(
        ends,
        vec![false, false, false, false, false, true, true, true]
    );
    // The second press starts at its own timestamp; sequence numbers run on unbroken.
    assert!(events[8].0.timestamp > first[0].0.timestamp);
    for w in out.windows(2) {
        assert_eq!(w[1].0.sequence, w[0].0.sequence.wrapping_add(1));
    }
    // Then the audio stream (silence here) resumes.
    assert_eq!(out[16].0.payload_type, 0);
}

#[test]
fn agent_audio_waits_while_a_key_press_takes_the_slots() {
    let t0 = Instant::now();
    let mut s = MediaSession::new(t0, params());
    let frame = AudioFrame::from_samples(8000, &[1000; 160]);
    assert!(s.send_dtmf('7'));
    // Eight slots of events: the agent's frame is not taken, and its wake-up is the deadline
    // (plus the 10 ms a slot waits for a late frame).
    let mut events = 0;
    for k in 1..=8u64 {
        let t = t0 + Duration::from_millis(20 * k + 10);
        assert!(!s.slot_open(t - Duration::from_millis(10)), "slot {k}");
        assert_eq!(s.poll_timeout(true), t);
        let (_, pkt) = s.handle_timeout(t).expect("an event packet");
        let (h, _) = rtp::parse(pkt).unwrap();
        assert_eq!(h.payload_type, 101);
        events += 1;
    }
    assert_eq!(events, 8);
    // Then the held frame goes out in the next slot, as audio.
    let t = t0 + Duration::from_millis(170);
    assert!(s.slot_open(t));
    let (_, pkt) = s.send_frame(t, &frame).expect("the agent's frame");
    let (h, p) = rtp::parse(pkt).unwrap();
    assert_eq!(h.payload_type, 0);
    assert!(p.iter().any(|&b| b != 0xFF), "not silence");
}

#[test]
fn dtmf_without_telephone_event_is_refused() {
    let t0 = Instant::now();
    let mut p = params();
    p.telephone_event_pt = None;
    let mut s = MediaSession::new(t0, p);
    assert!(!s.send_dtmf('1'));
    let out = run_slots(&mut s, t0, 3);
    assert!(out.iter().all(|(h, _)| h.payload_type == 0));
}

/// The agent's audio goes to the SDP address unless the trunk latches; then it follows the
/// caller's source once three packets in a row came from there (a NAT rebinding), and a single
/// stray packet from elsewhere moves nothing.
#[test]
fn latching_follows_a_rebound_source_after_three_packets() {
    let t0 = Instant::now();
    let rebound: SocketAddr = "198.51.100.9:40000".parse().unwrap();
    let stray: SocketAddr = "203.0.113.66:5004".parse().unwrap();
    let frame = AudioFrame::silence(8000);
    let mut t = t0;
    let mut send_to = |m: &mut MediaSession| {
        t += Duration::from_millis(20);
        m.send_frame(t, &frame).map(|(to, _)| to)
    };

    let mut fixed = MediaSession::new(t0, params());
    for seq in 0..5 {
        fixed.on_datagram(t0, rebound, &mut packet(seq, 0, &tone_payload(100)));
    }
    assert_eq!(
        send_to(&mut fixed),
        Some(remote()),
        "Twilio-style: the SDP address"
    );

    let mut nat = MediaSession::new(
        t0,
        MediaParams {
            latch: true,
            ..params()
        },
    );
    nat.on_datagram(t0, remote(), &mut packet(1, 0, &tone_payload(100)));
    nat.on_datagram(t0, stray, &mut packet(2, 0, &tone_payload(100)));
    nat.on_datagram(t0, remote(), &mut packet(3, 0, &tone_payload(100)));
    assert_eq!(
        send_to(&mut nat),
        Some(remote()),
        "one stray packet moves nothing"
    );
    nat.on_datagram(t0, rebound, &mut packet(4, 0, &tone_payload(100)));
    nat.on_datagram(t0, rebound, &mut packet(5, 0, &tone_payload(100)));
    assert_eq!(send_to(&mut nat), Some(remote()), "two are not enough");
    nat.on_datagram(t0, rebound, &mut packet(6, 0, &tone_payload(100)));
    assert_eq!(send_to(&mut nat), Some(rebound), "the third moves it");
    assert_eq!(nat.params().remote, Some(rebound));
}

/// The caller's stream, one packet per 20 ms, played straight back as the echo agent does:
/// the payload codes the caller sent, in the order they come back, `None` for a slot filled
/// with anything else (comfort silence or concealment).
fn echo_through(packets: &[(u32, u16, u32, u8)]) -> (Vec<Option<u8>>, MediaCounters) {
    let t0 = Instant::now();
    let mut m = MediaSession::new(t0, params());
    let mut heard = Vec::new();
    let mut queue = VecDeque::new();
    let mut buf = [0u8; 12 + 160];
    // Four slots past the last packet, for anything the jitter buffer still holds.
    for k in 0..packets.len() + 4 {
        let now = t0 + Duration::from_millis(20 * k as u64);
        if let Some(&(ssrc, sequence, timestamp, code)) = packets.get(k) {
            let h = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence,
                timestamp,
                ssrc,
            };
            let n = rtp::write(&h, &[code; 160], &mut buf).unwrap();
            m.on_datagram(now, remote(), &mut buf[..n]);
        }
        while let Some(f) = m.poll_caller_audio(now) {
            queue.push_back(f);
        }
        let sent = match queue.pop_front() {
            Some(f) if m.slot_open(now) => m.send_frame(now, &f),
            _ => m.handle_timeout(now),
        };
        if let Some((_, pkt)) = sent {
            let (_, payload) = rtp::parse(pkt).unwrap();
            let code = payload[0];
            heard.push(
                (code != Law::Mu.silence() && payload.iter().all(|&b| b == code)).then_some(code),
            );
        }
    }
    (heard, m.counters())
}

/// Distinct mu-law codes that survive decode and encode unchanged (0x7F, minus zero, does not).
fn code(i: usize) -> u8 {
    0x10 + i as u8
}

#[test]
fn a_sequence_wrap_plays_on_without_a_gap() {
    // 65526 .. 65535, then 0 .. 9: twenty packets, the timestamp wrapping too.
    let packets: Vec<_> = (0..20)
        .map(|i| {
            let seq = 65526u16.wrapping_add(i as u16);
            (
                0x5151,
                seq,
                (u32::MAX - 1600).wrapping_add(160 * i as u32),
                code(i),
            )
        })
        .collect();
    let (heard, counters) = echo_through(&packets);
    let codes: Vec<u8> = heard.iter().flatten().copied().collect();
    assert_eq!(codes, (0..20).map(code).collect::<Vec<_>>(), "{heard:?}");
    // Each frame went out in the slot it arrived in: no silence between them.
    let first = heard.iter().position(Option::is_some).unwrap();
    assert!(
        heard[first..first + 20].iter().all(Option::is_some),
        "{heard:?}"
    );
    assert_eq!(counters.concealed, 0);
}

#[test]
fn an_ssrc_change_mid_call_costs_at_most_one_frame() {
    // What an SBC failover does: a new SSRC, sequence and timestamp, at the same cadence.
    let packets: Vec<_> = (0..20)
        .map(|i| match i {
            0..10 => (0xA1, 40_000 + i as u16, 1_000 + 160 * i as u32, code(i)),
            _ => (0xB2, 7 + i as u16, 9_999_999 + 160 * i as u32, code(i)),
        })
        .collect();
    let (heard, counters) = echo_through(&packets);
    let codes: Vec<u8> = heard.iter().flatten().copied().collect();
    assert_eq!(codes, (0..20).map(code).collect::<Vec<_>>(), "{heard:?}");
    let first = heard.iter().position(|h| *h == Some(code(0))).unwrap();
    let last = heard.iter().position(|h| *h == Some(code(19))).unwrap();
    assert!(last - first <= 20, "more than one frame's gap: {heard:?}");
    assert!(counters.concealed <= 1);
}

/// The socket may be connected to the caller once three packets in a row came from where we
/// send, and must be unconnected again when the caller falls quiet (a connected socket would
/// not hear it move), when its packets come from elsewhere (Twilio may send from another
/// address than its SDP's), and on hold.
#[test]
fn the_peer_is_the_caller_only_while_its_media_is_symmetric() {
    let t0 = Instant::now();
    let elsewhere: SocketAddr = "168.86.138.122:20000".parse().unwrap();
    let mut m = MediaSession::new(t0, params());
    let ms = |n: u64| t0 + Duration::from_millis(n);
    assert_eq!(m.peer(t0), None, "nothing heard yet");
    m.on_datagram(ms(0), remote(), &mut packet(1, 0, &tone_payload(100)));
    m.on_datagram(ms(20), remote(), &mut packet(2, 0, &tone_payload(100)));
    assert_eq!(m.peer(ms(20)), None, "two packets are not enough");
    m.on_datagram(ms(40), remote(), &mut packet(3, 0, &tone_payload(100)));
    assert_eq!(m.peer(ms(40)), Some(remote()));
    assert_eq!(
        m.peer(ms(40) + PEER_IDLE - Duration::from_millis(1)),
        Some(remote())
    );
    assert_eq!(m.peer(ms(40) + PEER_IDLE), None, "quiet: hear any source");

    // Not RTP: it does not count, and breaks nothing.
    m.on_datagram(ms(300), remote(), &mut [0u8; 4]);
    assert_eq!(m.peer(ms(300)), None);
    for (i, t) in [300, 320, 340].into_iter().enumerate() {
        m.on_datagram(
            ms(t),
            remote(),
            &mut packet(4 + i as u16, 0, &tone_payload(100)),
        );
    }
    assert_eq!(
        m.peer(ms(340)),
        Some(remote()),
        "heard again: connected again"
    );

    // Twilio-style asymmetric media: never connected.
    m.on_datagram(ms(360), elsewhere, &mut packet(7, 0, &tone_payload(100)));
    assert_eq!(m.peer(ms(360)), None);
    for (i, t) in [380, 400, 420, 440].into_iter().enumerate() {
        m.on_datagram(
            ms(t),
            elsewhere,
            &mut packet(8 + i as u16, 0, &tone_payload(100)),
        );
    }
    assert_eq!(
        m.peer(ms(440)),
        None,
        "we send to the SDP address, not there"
    );

    // A re-INVITE to where the caller sends from connects; hold unconnects.
    m.update(MediaParams {
        remote: Some(elsewhere),
        ..params()
    });
    assert_eq!(m.peer(ms(440)), Some(elsewhere));
    m.update(MediaParams {
        remote: None,
        send: false,
        ..params()
    });
    assert_eq!(m.peer(ms(440)), None, "on hold");
}

/// A latching call is connected to the source it latched to, once latched.
#[test]
fn a_latched_call_is_connected_to_its_new_source() {
    let t0 = Instant::now();
    let rebound: SocketAddr = "198.51.100.9:40000".parse().unwrap();
    let mut m = MediaSession::new(
        t0,
        MediaParams {
            latch: true,
            ..params()
        },
    );
    for seq in 0..2 {
        m.on_datagram(t0, rebound, &mut packet(seq, 0, &tone_payload(100)));
        assert_eq!(m.peer(t0), None);
    }
    m.on_datagram(t0, rebound, &mut packet(2, 0, &tone_payload(100)));
    assert_eq!(m.params().remote, Some(rebound));
    assert_eq!(m.peer(t0), Some(rebound));
}
