//! The per-call media pipeline, one 20 ms frame: RTP in, jitter buffer, G.711 decode, the echo
//! agent, G.711 encode, RTP out. This is the work the gateway does 50 times a second per call.

use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sipbridge::agent::echo::EchoSession;
use sipbridge::agent::{AgentOutput, AgentSession};
use sipbridge::codec::g711::Law;
use sipbridge::media::rtp::{self, RtpHeader};
use sipbridge::media::session::{MediaParams, MediaSession};

fn pipeline(c: &mut Criterion) {
    let remote: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let t0 = Instant::now();
    let mut media = MediaSession::new(
        t0,
        MediaParams {
            law: Law::Mu,
            payload_type: 0,
            telephone_event_pt: Some(101),
            remote: Some(remote),
            send: true,
            media_timeout: Duration::from_secs(3600),
            initial_media_timeout: Duration::from_secs(3600),
            latch: false,
            srtp: None,
        },
    );
    let mut agent = EchoSession::new();
    let mut cx = Context::from_waker(Waker::noop());
    let mut packet = [0u8; 172];
    let payload = [0x55u8; 160];
    let mut seq: u16 = 0;
    let mut now = t0;
    c.bench_function("echo call: one 20 ms frame in and out", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            now += Duration::from_millis(20);
            let h = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: seq,
                timestamp: seq as u32 * 160,
                ssrc: 1,
            };
            let n = rtp::write(&h, &payload, &mut packet).unwrap();
            media.on_datagram(now, remote, &mut packet[..n]);
            while let Some(f) = media.poll_caller_audio(now) {
                agent.send_audio(&f);
            }
            let open = media.slot_open(now);
            if let Poll::Ready(Some(AgentOutput::Audio(f))) = agent.poll_output(&mut cx, open) {
                let out = media.send_frame(now, &f).map(|(_, p)| p.len());
                std::hint::black_box(out);
            }
            std::hint::black_box(media.handle_timeout(now).map(|(_, p)| p.len()));
        })
    });
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
