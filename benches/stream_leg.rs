//! The Media Streams leg's work per 20 ms frame, both ways, in the sans-IO core: a caller frame
//! made into a `media` message (mu-law, base64, JSON), and a bot's `media` message parsed and
//! cut into a frame for the call.

use std::hint::black_box;
use std::time::{Duration, Instant};

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipbridge::agent::stream::core::{CoreConfig, Output, SocketCore, StreamCore};
use sipbridge::agent::stream::protocol::StreamIds;

fn core() -> (StreamCore, Instant) {
    let t0 = Instant::now();
    let mut c = StreamCore::new(
        t0,
        CoreConfig {
            ids: StreamIds {
                stream_sid: format!("MZ{}", "1".repeat(32)),
                call_sid: format!("CA{}", "2".repeat(32)),
                account_sid: format!("AC{}", "3".repeat(32)),
            },
            parameters: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            hangup_on_close: true,
            batch_frames: 1,
        },
    );
    c.on_connected(t0, Vec::new());
    while c.poll_output().is_some() {}
    (c, t0)
}

fn bench_stream_leg(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_leg");
    group.throughput(Throughput::Elements(1));
    let pcm: Vec<i16> = (0..160)
        .map(|i| (6000.0 * (i as f64 * 0.13).sin()) as i16)
        .collect();

    group.bench_function("caller_frame_to_media_message", |b| {
        let (mut s, t0) = core();
        let mut k = 0u64;
        b.iter(|| {
            k += 1;
            s.on_caller_audio(t0 + Duration::from_millis(20 * k), black_box(&pcm));
            match s.poll_output() {
                Some(Output::Send(text)) => black_box(text.len()),
                _ => 0,
            }
        })
    });

    let payload = base64::engine::general_purpose::STANDARD.encode([0x5Au8; 160]);
    let message = format!(
        r#"{{"event":"media","streamSid":"MZ{}","media":{{"payload":"{payload}"}}}}"#,
        "1".repeat(32)
    );
    group.bench_function("bot_media_message_to_frame", |b| {
        let (mut s, t0) = core();
        b.iter(|| {
            s.on_text(t0, black_box(&message));
            let mut n = 0;
            while let Some(out) = s.poll_output() {
                n += matches!(out, Output::Down(_)) as usize;
            }
            black_box(n)
        })
    });
    group.finish();
}

criterion_group!(benches, bench_stream_leg);
criterion_main!(benches);
