//! The LiveKit leg's audio work per 20 ms frame: up (8 kHz -> 48 kHz, Opus encode) and down
//! (Opus decode, 48 kHz -> 8 kHz), with the encoder settings that decide its cost.

use std::hint::black_box;

use audiopus::Bandwidth;
use criterion::{criterion_group, criterion_main, Criterion};
use sipbridge::agent::livekit::media::{Downlink, Uplink};
use sipbridge::agent::AudioFrame;
use sipbridge::codec::opus::{EncoderSettings, OpusEncoder, FRAME, MAX_PACKET};

/// Speech-like test signal: a few harmonics with a slow vibrato, so the encoder has work.
fn voice(rate: f64, n: usize, from: usize) -> Vec<i16> {
    (from..from + n)
        .map(|i| {
            let t = i as f64 / rate;
            let f0 = 140.0 + 20.0 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let s: f64 = (1..6)
                .map(|h| (2.0 * std::f64::consts::PI * f0 * h as f64 * t).sin() / h as f64)
                .sum();
            (3000.0 * s) as i16
        })
        .collect()
}

fn uplink(c: &mut Criterion) {
    let frames: Vec<AudioFrame> = (0..50)
        .map(|k| AudioFrame::from_samples(8000, &voice(8000.0, 160, k * 160)))
        .collect();
    for (name, settings) in [
        (
            "complexity 1, wideband",
            EncoderSettings {
                complexity: 1,
                max_bandwidth: Bandwidth::Wideband,
            },
        ),
        (
            "complexity 3, wideband (default)",
            EncoderSettings::default(),
        ),
        (
            "complexity 5, wideband",
            EncoderSettings {
                complexity: 5,
                max_bandwidth: Bandwidth::Wideband,
            },
        ),
        (
            "complexity 10, wideband",
            EncoderSettings {
                complexity: 10,
                max_bandwidth: Bandwidth::Wideband,
            },
        ),
        (
            "complexity 3, narrowband",
            EncoderSettings {
                complexity: 3,
                max_bandwidth: Bandwidth::Narrowband,
            },
        ),
        (
            "complexity 10, fullband",
            EncoderSettings {
                complexity: 10,
                max_bandwidth: Bandwidth::Fullband,
            },
        ),
    ] {
        let mut up = Uplink::new(settings).unwrap();
        let mut k = 0;
        c.bench_function(&format!("uplink 8k->48k + opus encode, {name}"), |b| {
            b.iter(|| {
                k = (k + 1) % frames.len();
                black_box(up.push(&frames[k]).unwrap().map(|p| p.len()));
            })
        });
    }
}

fn downlink(c: &mut Criterion) {
    let mut enc = OpusEncoder::new(EncoderSettings::default()).unwrap();
    let mut out = [0u8; MAX_PACKET];
    let packets: Vec<Vec<u8>> = (0..50)
        .map(|k| {
            let n = enc
                .encode(&voice(48_000.0, FRAME, k * FRAME), &mut out)
                .unwrap();
            out[..n].to_vec()
        })
        .collect();
    let mut down = Downlink::new().unwrap();
    let mut k = 0;
    c.bench_function("downlink opus decode + mix + 48k->8k, one track", |b| {
        b.iter(|| {
            k = (k + 1) % packets.len();
            down.on_packet(1, &packets[k]).unwrap();
            black_box(down.tick());
        })
    });
}

criterion_group!(benches, uplink, downlink);
criterion_main!(benches);
