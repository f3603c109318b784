//! A Twilio-shaped caller for the LiveKit tests: the load harness's sans-IO UAC on a real
//! socket, plus RTP both ways: a tone (or RFC 4733 key presses) out, everything back decoded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use sipbridge::codec::g711::{self, Law};
use sipbridge::load::media::SendParams;
use sipbridge::load::uac::{Credentials, SipResult, Uac, UacConfig, UacEvent};
use sipbridge::media::dtmf::{self, DtmfDecoder};
use sipbridge::media::rtp::{self, RtpHeader};
use sipbridge::sip::message::Message;
use sipbridge::sip::transaction::Timers;
use tokio::net::UdpSocket;
use tokio::time::Instant;

pub const CALLER_TONE_HZ: f64 = 1000.0;
const TE_PT: u8 = 101;

pub struct Caller {
    uac: Uac,
    sip: UdpSocket,
    rtp: UdpSocket,
    /// 180s received before the final response.
    pub ringing: u32,
    pub answered: Option<SendParams>,
    /// What the caller heard, decoded (8 kHz).
    pub heard: Vec<i16>,
    pub heard_packets: u64,
    pub heard_dtmf: Vec<char>,
    dtmf_dec: DtmfDecoder,
    presses: VecDeque<char>,
    /// The press being sent: digit, start timestamp, packets sent.
    pressing: Option<(char, u32, u16)>,
    seq: u16,
    ts: u32,
    sample: u64,
    next_frame: Instant,
    pub media_stopped: bool,
}

impl Caller {
    /// Places a call to `target` that hangs up by itself after `hold`.
    pub async fn call(target: SocketAddr, user: &str, password: &str, hold: Duration) -> Caller {
        let sip = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let cfg = UacConfig {
            target,
            local: sip.local_addr().unwrap(),
            media_ip: "127.0.0.1".parse().unwrap(),
            law: Law::Mu,
            credentials: Some(Credentials {
                username: user.into(),
                password: password.into(),
            }),
            hold,
            timers: Timers::default(),
            setup_timeout: Duration::from_secs(60),
            caller: "+447700900123".into(),
            called: "+447846855904".into(),
            account_sid: "ACtest".into(),
            srtp: false,
        };
        let port = rtp.local_addr().unwrap().port();
        let uac = Uac::new(Instant::now().into_std(), &cfg, port);
        let mut c = Caller {
            uac,
            sip,
            rtp,
            ringing: 0,
            answered: None,
            heard: Vec::new(),
            heard_packets: 0,
            heard_dtmf: Vec::new(),
            dtmf_dec: DtmfDecoder::new(8000),
            presses: VecDeque::new(),
            pressing: None,
            seq: 1,
            ts: 0,
            sample: 0,
            next_frame: Instant::now(),
            media_stopped: false,
        };
        c.flush().await;
        c
    }

    pub fn result(&self) -> Option<&SipResult> {
        self.uac.result()
    }

    pub fn press(&mut self, digit: char) {
        self.presses.push_back(digit);
    }

    pub async fn hangup(&mut self) {
        self.uac.hangup(Instant::now().into_std());
        self.flush().await;
    }

    async fn flush(&mut self) {
        while let Some((to, bytes)) = self.uac.poll_transmit() {
            let _ = self.sip.send_to(&bytes, to).await;
        }
        while let Some(ev) = self.uac.poll_event() {
            match ev {
                UacEvent::Answered(p) => {
                    self.answered = Some(p);
                    self.next_frame = Instant::now();
                }
                UacEvent::MediaStop => self.media_stopped = true,
            }
        }
    }

    /// Drives SIP and media until `done` holds or `limit` passes; returns whether it held.
    pub async fn run_until(&mut self, limit: Duration, done: impl Fn(&Caller) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        let mut sip_buf = vec![0u8; 65536];
        let mut rtp_buf = [0u8; 2048];
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            let sip_due = self
                .uac
                .poll_timeout()
                .map(Instant::from_std)
                .unwrap_or(deadline);
            let media_due = if self.answered.is_some() && !self.media_stopped {
                self.next_frame
            } else {
                deadline
            };
            tokio::select! {
                r = self.sip.recv_from(&mut sip_buf) => {
                    if let Ok((n, src)) = r {
                        if let Ok(msg) = Message::parse(Bytes::copy_from_slice(&sip_buf[..n])) {
                            if let Message::Response(resp) = &msg {
                                if resp.status == 180 && self.answered.is_none() {
                                    self.ringing += 1;
                                }
                            }
                            self.uac.on_message(Instant::now().into_std(), msg, src);
                        }
                    }
                }
                r = self.rtp.recv_from(&mut rtp_buf) => {
                    if let Ok((n, _)) = r {
                        self.on_rtp(&rtp_buf[..n]);
                    }
                }
                _ = tokio::time::sleep_until(sip_due.min(deadline)) => {
                    self.uac.handle_timeout(Instant::now().into_std());
                }
                _ = tokio::time::sleep_until(media_due.min(deadline)) => {
                    if media_due <= Instant::now() {
                        self.send_frame().await;
                        self.next_frame += Duration::from_millis(20);
                    }
                }
            }
            self.flush().await;
        }
    }

    fn on_rtp(&mut self, pkt: &[u8]) {
        let Ok((h, payload)) = rtp::parse(pkt) else {
            return;
        };
        match h.payload_type {
            0 | 8 => {
                let law = if h.payload_type == 0 { Law::Mu } else { Law::A };
                let mut pcm = vec![0i16; payload.len()];
                g711::decode(law, payload, &mut pcm);
                self.heard.extend_from_slice(&pcm);
                self.heard_packets += 1;
            }
            TE_PT => {
                if let Some(d) = self.dtmf_dec.on_packet(&h, payload) {
                    self.heard_dtmf.push(d);
                }
            }
            _ => {}
        }
    }

    async fn send_frame(&mut self) {
        let Some(p) = self.answered.clone() else {
            return;
        };
        let mut out = [0u8; 12 + 160];
        if self.pressing.is_none() {
            if let Some(d) = self.presses.pop_front() {
                self.pressing = Some((d, self.ts, 0));
            }
        }
        let len = if let Some((digit, start, sent)) = self.pressing.as_mut() {
            *sent += 1;
            let end = *sent > 5;
            let mut block = [0u8; 4];
            dtmf::encode_event(*digit, end, 10, 160 * (*sent).min(5), &mut block);
            let h = RtpHeader {
                marker: *sent == 1,
                payload_type: TE_PT,
                sequence: self.seq,
                timestamp: *start,
                ssrc: 0xCA11_E700,
            };
            if *sent >= 8 {
                self.pressing = None;
            }
            rtp::write(&h, &block, &mut out).unwrap()
        } else {
            let pcm: Vec<i16> = (0..160)
                .map(|i| {
                    let t = (self.sample + i) as f64 / 8000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * CALLER_TONE_HZ * t).sin()) as i16
                })
                .collect();
            let mut payload = [0u8; 160];
            g711::encode(p.law, &pcm, &mut payload);
            let h = RtpHeader {
                marker: false,
                payload_type: p.payload_type,
                sequence: self.seq,
                timestamp: self.ts,
                ssrc: 0xCA11_E700,
            };
            rtp::write(&h, &payload, &mut out).unwrap()
        };
        self.sample += 160;
        self.ts = self.ts.wrapping_add(160);
        self.seq = self.seq.wrapping_add(1);
        let _ = self.rtp.send_to(&out[..len], p.remote).await;
    }
}
