//! The OpenAI leg's work per 20 ms frame, both ways, in the sans-IO core: a caller frame made
//! into an `input_audio_buffer.append` (G.711, base64, JSON), and a 100 ms
//! `response.output_audio.delta` parsed and cut into five frames for the call (per frame).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipbridge::agent::openai::core::OpenaiCore;
use sipbridge::agent::ws::session::{Output, SocketCore};
use sipbridge::codec::g711::Law;
use sipbridge::config::{OpenaiApi, OpenaiSpec, Tool, TurnDetection};

fn core() -> (OpenaiCore, Instant) {
    let spec = OpenaiSpec {
        api: OpenaiApi::Realtime,
        url: OpenaiSpec::REALTIME_URL.into(),
        api_key: "sk-bench".into(),
        headers: Vec::new(),
        model: OpenaiSpec::REALTIME_MODEL.into(),
        voice: OpenaiSpec::VOICE.into(),
        instructions: OpenaiSpec::INSTRUCTIONS.into(),
        tools: Tool::ALL.to_vec(),
        turn_detection: TurnDetection::ServerVad {
            silence_duration_ms: None,
        },
        transcription_model: None,
        delegation_model: None,
        connect_timeout: Duration::from_secs(10),
        audio_batch_ms: 20,
    };
    let t0 = Instant::now();
    let mut c = OpenaiCore::new(t0, Arc::new(spec), Law::Mu);
    c.on_connected(t0, ());
    c.on_text(
        t0,
        r#"{"type":"session.created","event_id":"e0","session":{"type":"realtime"}}"#,
    );
    c.on_text(
        t0,
        r#"{"type":"session.updated","event_id":"e1","session":{"type":"realtime"}}"#,
    );
    while c.poll_output().is_some() {}
    (c, t0)
}

fn bench_openai_leg(c: &mut Criterion) {
    let mut group = c.benchmark_group("openai_leg");
    group.throughput(Throughput::Elements(1));
    let pcm: Vec<i16> = (0..160)
        .map(|i| (6000.0 * (i as f64 * 0.13).sin()) as i16)
        .collect();
    group.bench_function("caller_frame_to_append", |b| {
        let (mut s, t0) = core();
        b.iter(|| {
            s.on_caller_audio(t0, black_box(&pcm));
            match s.poll_output() {
                Some(Output::Send(text)) => black_box(text.len()),
                _ => 0,
            }
        })
    });

    let delta = base64::engine::general_purpose::STANDARD.encode([0x5Au8; 800]);
    let message = format!(
        r#"{{"type":"response.output_audio.delta","event_id":"event_1","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"{delta}"}}"#
    );
    group.throughput(Throughput::Elements(5));
    group.bench_function("delta_100ms_to_frames", |b| {
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

criterion_group!(benches, bench_openai_leg);
criterion_main!(benches);
