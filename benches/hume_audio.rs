//! The Hume EVI leg's audio work per 20 ms of speech: EVI's `audio_output` chunk (base64 of a
//! 48 kHz 16-bit WAV file) decoded and resampled to 8 kHz, and the caller's frame encoded as an
//! `audio_input` message.

use std::hint::black_box;

use base64::Engine;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipbridge::agent::hume::playout::Playout;
use sipbridge::agent::hume::protocol::{AudioInput, AudioOutput, ClientMessage};
use sipbridge::codec::resample::Resampler;
use sipbridge::codec::wav;

/// 20 ms at 48 kHz.
const CHUNK_48K: usize = 960;

fn speech_like(n: usize) -> Vec<i16> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|i| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let tone = 6000.0 * (i as f64 * 0.13).sin();
            (tone as i32 + ((x >> 16) as i16 >> 4) as i32) as i16
        })
        .collect()
}

fn bench_hume_audio(c: &mut Criterion) {
    let wav20 = wav::write_pcm16(48_000, &speech_like(CHUNK_48K));
    let b64_20 = base64::engine::general_purpose::STANDARD.encode(&wav20);
    let mut group = c.benchmark_group("hume_audio");
    group.throughput(Throughput::Elements(1));

    // The pieces, with buffers reused as the playout does.
    group.bench_function("decode_resample_20ms", |b| {
        let mut bytes = Vec::new();
        let mut pcm = Vec::new();
        let mut out = Vec::new();
        let mut r = Resampler::new(48_000, 8_000).unwrap();
        b.iter(|| {
            bytes.clear();
            base64::engine::general_purpose::STANDARD
                .decode_vec(black_box(&b64_20), &mut bytes)
                .unwrap();
            let w = wav::read_pcm16(&bytes).unwrap();
            pcm.clear();
            w.decode_into(&mut pcm);
            out.clear();
            r.process(&pcm, &mut out);
            black_box(out.len())
        })
    });

    // The whole playout path (ordering, decode, resample, 160-sample frames) for a 100 ms
    // chunk, reported per 20 ms of speech.
    let wav100 = wav::write_pcm16(48_000, &speech_like(5 * CHUNK_48K));
    let b64_100 = base64::engine::general_purpose::STANDARD.encode(&wav100);
    group.throughput(Throughput::Elements(5));
    group.bench_function("playout_push_100ms_chunk", |b| {
        let mut p = Playout::new();
        let mut index = 0u32;
        let mut frames = 0usize;
        b.iter(|| {
            let chunk = AudioOutput {
                id: "seg".into(),
                index,
                data: b64_100.clone(),
                custom_session_id: None,
            };
            index += 1;
            p.push(chunk, &mut |f| frames += f.samples().len(), &mut |_| {});
            black_box(frames)
        })
    });

    // Caller -> EVI: one 20 ms frame of 8 kHz linear16 to JSON text.
    group.throughput(Throughput::Elements(1));
    let frame: Vec<i16> = speech_like(160);
    group.bench_function("audio_input_encode_20ms", |b| {
        let mut bytes = Vec::with_capacity(320);
        b.iter(|| {
            bytes.clear();
            bytes.extend(black_box(&frame).iter().flat_map(|s| s.to_le_bytes()));
            let msg = ClientMessage::AudioInput(AudioInput {
                data: base64::engine::general_purpose::STANDARD.encode(&bytes),
                custom_session_id: None,
            });
            black_box(serde_json::to_string(&msg).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_hume_audio);
criterion_main!(benches);
