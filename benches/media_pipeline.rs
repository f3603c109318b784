//! The per-call media pipeline, one 20 ms frame, as a media reactor runs it: a datagram into the
//! call (RTP parse, jitter buffer, G.711 decode), the echo agent, G.711 encode, RTP out through
//! the call's `transmit`. The sockets are memory here: this is the work the reactor adds to the
//! kernel's `recvfrom` and `sendto`, 50 times a second per call.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sipbridge::agent::echo::EchoSession;
use sipbridge::call::registry::Registry;
use sipbridge::codec::g711::Law;
use sipbridge::engine::{MediaCall, Sinks};
use sipbridge::media::rtp::{self, RtpHeader};
use sipbridge::media::session::{MediaParams, MediaSession};
use sipbridge::metrics::Metrics;

fn pipeline(c: &mut Criterion) {
    let remote: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let t0 = Instant::now();
    let session = MediaSession::new(
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
    let (mut call, _hangups) = MediaCall::new(
        session,
        Box::new(EchoSession::new()),
        "bench".into(),
        "echo",
    );
    let sinks = Sinks {
        registry: Arc::new(Registry::new()),
        metrics: Arc::new(Metrics::new()),
    };
    let mut cx = Context::from_waker(Waker::noop());
    let mut packet = [0u8; 172];
    let mut wire = [0u8; 256];
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
            call.handle_datagram(now, remote, &mut packet[..n]);
            let mut transmit = |_: SocketAddr, pkt: &[u8]| {
                wire[..pkt.len()].copy_from_slice(pkt);
                pkt.len()
            };
            call.service(now, &mut cx, || {}, &sinks, &mut transmit);
            std::hint::black_box(call.poll_timeout());
        })
    });
    assert!(
        call.session.counters().packets_sent > 0,
        "the echo was sent"
    );
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
