//! One Twilio-shaped call from the project's own sans-IO UAC (`load::uac`), with a caller that
//! sends a tone (and key presses, RFC 4733) and keeps every RTP packet it receives (decoded),
//! for the agents' end-to-end tests.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::UdpSocket;

use sipbridge::codec::g711::{self, Law};
use sipbridge::load::uac::{Credentials, SipResult, Uac, UacConfig, UacEvent};
use sipbridge::media::rtp::{self, RtpHeader};
use sipbridge::sip::message::Message;
use sipbridge::sip::transaction::Timers;

pub const CALLER: &str = "+447700900123";
pub const CALLED: &str = "+447846855904";

#[derive(Clone, Debug)]
pub struct CallPlan {
    pub target: SocketAddr,
    pub username: String,
    pub password: String,
    /// How long the answered call is held before our BYE.
    pub hold: Duration,
    /// The caller's tone (Hz) at -12 dBFS; silence when `None`.
    pub caller_hz: Option<f64>,
    /// Give up on everything after this long.
    pub max_wait: Duration,
    /// Key presses, each this long after the answer (in order).
    pub dtmf: Vec<(Duration, char)>,
}

/// The telephone-event payload type the UAC offers.
const EVENT_PT: u8 = 101;

/// RFC 4733 event codes.
fn event_code(digit: char) -> u8 {
    match digit {
        '0'..='9' => digit as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => digit as u8 - b'A' + 12,
        _ => panic!("not a DTMF digit: {digit}"),
    }
}

fn digit_of(code: u8) -> char {
    match code {
        0..=9 => (b'0' + code) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + code - 12) as char,
        _ => '?',
    }
}

/// One received RTP packet.
#[derive(Clone, Debug)]
pub struct Rx {
    pub at: Instant,
    pub seq: u16,
    pub pcm: Vec<i16>,
}

impl Rx {
    pub fn rms(&self) -> f64 {
        sipbridge::load::signal::rms(&self.pcm)
    }
}

#[derive(Debug)]
pub struct CallResult {
    pub call_id: String,
    pub sip: Option<SipResult>,
    /// Status codes of every response to our INVITEs, in arrival order.
    pub responses: Vec<u16>,
    pub rx: Vec<Rx>,
    /// RFC 4733 key presses the far end sent, once each.
    pub dtmf_rx: Vec<char>,
    pub rtp_sent: u64,
}

/// A received packet louder than this carries speech (the agents' test tones are ~5800 RMS;
/// G.711 silence is ~0).
pub const SPEECH_RMS: f64 = 500.0;

/// The audio of `packets`, concatenated.
pub fn joined(packets: &[&Rx]) -> Vec<i16> {
    packets.iter().flat_map(|r| r.pcm.iter().copied()).collect()
}

impl CallResult {
    /// The received packets that carry speech, in order.
    pub fn speech(&self) -> Vec<&Rx> {
        self.rx.iter().filter(|r| r.rms() > SPEECH_RMS).collect()
    }

    pub fn status(&self) -> Option<u16> {
        match self.sip.as_ref()?.outcome {
            sipbridge::load::uac::Outcome::Status(s) => Some(s),
            _ => None,
        }
    }

    pub fn bye(&self) -> Option<sipbridge::load::uac::ByeOutcome> {
        self.sip.as_ref().map(|s| s.bye)
    }

    /// The received audio, concatenated.
    pub fn pcm(&self) -> Vec<i16> {
        self.rx.iter().flat_map(|r| r.pcm.iter().copied()).collect()
    }
}

/// Places the call and runs it to the end (or `max_wait`).
pub async fn place_call(plan: CallPlan) -> CallResult {
    place_call_in(plan, Law::Mu).await
}

/// [`place_call`] offering only `law` (PCMU or PCMA).
pub async fn place_call_in(plan: CallPlan, law: Law) -> CallResult {
    let sip = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cfg = UacConfig {
        target: plan.target,
        local: sip.local_addr().unwrap(),
        media_ip: "127.0.0.1".parse().unwrap(),
        law,
        credentials: Some(Credentials {
            username: plan.username.clone(),
            password: plan.password.clone(),
        }),
        hold: plan.hold,
        timers: Timers::default(),
        setup_timeout: plan.max_wait,
        caller: CALLER.into(),
        called: CALLED.into(),
        account_sid: "AC0123456789abcdef0123456789abcdef".into(),
        srtp: false,
    };
    let start = Instant::now();
    let mut uac = Uac::new(start, &cfg, rtp_sock.local_addr().unwrap().port());
    let mut result = CallResult {
        call_id: uac.call_id().to_string(),
        sip: None,
        responses: Vec::new(),
        rx: Vec::new(),
        dtmf_rx: Vec::new(),
        rtp_sent: 0,
    };
    let mut sending: Option<(Law, u8, SocketAddr)> = None;
    let mut last_event_ts: Option<u32> = None;
    let mut answered_at: Option<Instant> = None;
    let mut keys = plan.dtmf.clone().into_iter().peekable();
    // The key being sent: its code, its start timestamp and the packets sent so far.
    let mut key: Option<(u8, u32, u16)> = None;
    let mut seq: u16 = 1;
    let mut sample: usize = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut sip_buf = vec![0u8; 65536];
    let mut rtp_buf = vec![0u8; 2048];
    let give_up = tokio::time::Instant::from_std(start + plan.max_wait);
    loop {
        while let Some((to, bytes)) = uac.poll_transmit() {
            let _ = sip.send_to(&bytes, to).await;
        }
        while let Some(ev) = uac.poll_event() {
            match ev {
                UacEvent::Answered(p) => {
                    sending = Some((p.law, p.payload_type, p.remote));
                    answered_at = Some(Instant::now());
                }
                UacEvent::MediaStop => sending = None,
            }
        }
        if result.sip.is_none() {
            result.sip = uac.result().cloned();
        }
        // Done once the outcome is known; the transactions' retransmission absorbers (up to
        // 32 s) are not worth waiting for here.
        if result.sip.is_some() {
            break;
        }
        let timer = uac
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or(give_up);
        tokio::select! {
            r = sip.recv_from(&mut sip_buf) => {
                let Ok((n, src)) = r else { continue };
                if let Ok(msg) = Message::parse(Bytes::copy_from_slice(&sip_buf[..n])) {
                    if let Message::Response(resp) = &msg {
                        if resp.headers.get(&sipbridge::sip::message::HeaderName::CSeq)
                            .is_some_and(|c| c.contains("INVITE")) {
                            result.responses.push(resp.status);
                        }
                    }
                    uac.on_message(Instant::now(), msg, src);
                }
            }
            r = rtp_sock.recv_from(&mut rtp_buf) => {
                let Ok((n, _)) = r else { continue };
                let Ok((h, payload)) = rtp::parse(&rtp_buf[..n]) else { continue };
                let law = if h.payload_type == 8 { Law::A } else { Law::Mu };
                if h.payload_type == 0 || h.payload_type == 8 {
                    let mut pcm = vec![0i16; payload.len()];
                    g711::decode(law, payload, &mut pcm);
                    result.rx.push(Rx { at: Instant::now(), seq: h.sequence, pcm });
                } else if h.payload_type == EVENT_PT && payload.len() >= 4 && payload[1] & 0x80 != 0 {
                    // The end packet comes three times: one key per event timestamp.
                    if last_event_ts != Some(h.timestamp) {
                        last_event_ts = Some(h.timestamp);
                        result.dtmf_rx.push(digit_of(payload[0]));
                    }
                }
            }
            _ = tick.tick() => {
                if key.is_none()
                    && keys.peek().is_some_and(|(after, _)| {
                        answered_at.is_some_and(|t| t.elapsed() >= *after)
                    })
                {
                    let (_, digit) = keys.next().unwrap();
                    key = Some((event_code(digit), (seq as u32).wrapping_mul(160), 0));
                }
                if let (Some((code, ts, n)), Some((_, _, to))) = (key, sending) {
                    // Three updates 20 ms apart, then the end packet three times.
                    let packets = if n < 3 { 1 } else { 3 };
                    for _ in 0..packets {
                        let end = if n >= 3 { 0x80 } else { 0 };
                        let duration = 160 * (n.min(3) + 1);
                        let payload = [code, end | 10, (duration >> 8) as u8, duration as u8];
                        let header = RtpHeader {
                            marker: n == 0,
                            payload_type: EVENT_PT,
                            sequence: seq,
                            timestamp: ts,
                            ssrc: 0x1234_5678,
                        };
                        let mut pkt = [0u8; 16];
                        if let Ok(len) = rtp::write(&header, &payload, &mut pkt) {
                            let _ = rtp_sock.send_to(&pkt[..len], to).await;
                        }
                        seq = seq.wrapping_add(1);
                    }
                    key = if n < 3 { Some((code, ts, n + 1)) } else { None };
                    continue;
                }
                if let Some((law, pt, to)) = sending {
                    let pcm: Vec<i16> = (sample..sample + 160)
                        .map(|i| match plan.caller_hz {
                            Some(hz) => (8192.0 * (2.0 * std::f64::consts::PI * hz * i as f64
                                / 8000.0).sin()) as i16,
                            None => 0,
                        })
                        .collect();
                    sample += 160;
                    let mut payload = [0u8; 160];
                    g711::encode(law, &pcm, &mut payload);
                    let header = RtpHeader {
                        marker: seq == 1,
                        payload_type: pt,
                        sequence: seq,
                        timestamp: (seq as u32).wrapping_mul(160),
                        ssrc: 0x1234_5678,
                    };
                    let mut pkt = [0u8; 12 + 160];
                    if let Ok(len) = rtp::write(&header, &payload, &mut pkt) {
                        let _ = rtp_sock.send_to(&pkt[..len], to).await;
                        result.rtp_sent += 1;
                    }
                    seq = seq.wrapping_add(1);
                }
            }
            _ = tokio::time::sleep_until(timer) => {
                if timer >= give_up {
                    uac.abandon();
                    result.sip = uac.result().cloned();
                    break;
                }
                uac.handle_timeout(Instant::now());
            }
        }
    }
    result
}
