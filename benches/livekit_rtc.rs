//! The LiveKit leg's WebRTC cost per 20 ms frame, without sockets or a runtime: two peer
//! connections made as the gateway makes them (`peer::peer_connection`), joined in memory by
//! handing each one's datagrams to the other. One iteration is what a frame costs both ends:
//! the sender's `write_rtp` (RTCP report interceptor, SRTP encrypt) and the receiver's
//! `handle_read` through ICE, DTLS and SRTP demux and decrypt to the RTP packet. The kernel,
//! which the capacity runs include, is not in it.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use sipbridge::agent::livekit::peer::{opus_codec, peer_connection, OPUS_PT};

const SSRC: u32 = 0x5151_0001;

struct End {
    pc: RTCPeerConnection,
    addr: SocketAddr,
    connected: bool,
}

impl End {
    fn new(port: u16) -> End {
        let mut pc = peer_connection().expect("peer connection");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".into(),
                address: addr.ip().to_string(),
                port,
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .expect("candidate");
        let init = RTCIceCandidate::from(&candidate).to_json().expect("json");
        pc.add_local_candidate(init).expect("local candidate");
        End {
            pc,
            addr,
            connected: false,
        }
    }

    /// Notes state changes; counts the RTP packets read.
    fn drain(&mut self) -> usize {
        while let Some(ev) = self.pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(s) = ev {
                self.connected = s == RTCPeerConnectionState::Connected;
            }
        }
        let mut rtp = 0;
        while let Some(m) = self.pc.poll_read() {
            if let RTCMessage::RtpPacket(_, p) = m.message {
                black_box(p.payload.len());
                rtp += 1;
            }
        }
        rtp
    }
}

/// Hands every datagram `from` has to send to `to`.
fn carry(from: &mut End, to: &mut End, now: Instant) {
    while let Some(out) = from.pc.poll_write() {
        let msg = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: to.addr,
                peer_addr: from.addr,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(&out.message[..]),
        };
        let _ = to.pc.handle_read(msg);
    }
}

/// A sender with our Opus track and a receiver, connected (ICE, DTLS-SRTP) in memory.
fn connected_pair() -> (End, End, rtc::rtp_transceiver::RTCRtpSenderId) {
    let mut a = End::new(10_001);
    let mut b = End::new(10_002);
    let track = MediaStreamTrack::new(
        "bench".into(),
        "bench-audio".into(),
        "bench-audio".into(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(SSRC),
                ..Default::default()
            },
            codec: opus_codec(),
            ..Default::default()
        }],
    );
    let sender = a.pc.add_track(track).expect("track");
    let now = Instant::now();
    let offer = a.pc.create_offer(None).expect("offer");
    a.pc.set_local_description(now, offer.clone())
        .expect("local offer");
    let offer = RTCSessionDescription::offer(offer.sdp).expect("offer sdp");
    b.pc.set_remote_description(now, offer)
        .expect("remote offer");
    let answer = b.pc.create_answer(None).expect("answer");
    b.pc.set_local_description(now, answer.clone())
        .expect("local answer");
    let answer = RTCSessionDescription::answer(answer.sdp).expect("answer sdp");
    a.pc.set_remote_description(now, answer)
        .expect("remote answer");
    let give_up = Instant::now() + Duration::from_secs(20);
    while !(a.connected && b.connected) {
        assert!(Instant::now() < give_up, "the pair did not connect in 20 s");
        let now = Instant::now();
        for end in [&mut a, &mut b] {
            if end.pc.poll_timeout().is_some_and(|t| t <= now) {
                let _ = end.pc.handle_timeout(now);
            }
        }
        carry(&mut a, &mut b, now);
        carry(&mut b, &mut a, now);
        a.drain();
        b.drain();
        std::thread::sleep(Duration::from_millis(1));
    }
    (a, b, sender)
}

fn per_frame(c: &mut Criterion) {
    let (mut a, mut b, sender) = connected_pair();
    let payload = Bytes::from_static(&[0x5a; 80]); // 32 kb/s Opus, 20 ms
    let mut seq = 0u16;
    c.bench_function(
        "webrtc: one Opus frame, write_rtp -> SRTP -> handle_read -> RTP",
        |bench| {
            bench.iter(|| {
                let now = Instant::now();
                let packet = rtc::rtp::Packet {
                    header: rtc::rtp::header::Header {
                        version: 2,
                        payload_type: OPUS_PT,
                        sequence_number: seq,
                        timestamp: u32::from(seq).wrapping_mul(960),
                        ssrc: SSRC,
                        ..Default::default()
                    },
                    payload: payload.clone(),
                };
                seq = seq.wrapping_add(1);
                a.pc.rtp_sender(sender)
                    .expect("sender")
                    .write_rtp(now, packet)
                    .expect("write_rtp");
                carry(&mut a, &mut b, now);
                assert_eq!(b.drain(), 1, "one RTP packet through");
            })
        },
    );
}

criterion_group!(benches, per_frame);
criterion_main!(benches);
