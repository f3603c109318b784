//! The LiveKit leg's audio work per 20 ms frame, up (phone to room) and down (room to phone),
//! two ways: running libopus at the phone's 8 kHz (what the gateway does), and the textbook way
//! of resampling to and from 48 kHz around a 48 kHz codec, with the encoder settings that
//! decide the cost.

use std::hint::black_box;

use audiopus::Bandwidth;
use criterion::{criterion_group, criterion_main, Criterion};
use sipbridge::agent::livekit::media::{Downlink, Uplink};
use sipbridge::agent::AudioFrame;
use sipbridge::codec::opus::{
    EncoderSettings, Mode, OpusDecoder, OpusEncoder, FRAME, MAX_PACKET, RATE,
};
use sipbridge::codec::resample::Resampler;

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

fn settings(mode: Mode, complexity: u8, max_bandwidth: Bandwidth) -> EncoderSettings {
    EncoderSettings {
        mode,
        complexity,
        max_bandwidth,
    }
}

fn uplink(c: &mut Criterion) {
    let frames: Vec<AudioFrame> = (0..50)
        .map(|k| AudioFrame::from_samples(8000, &voice(8000.0, 160, k * 160)))
        .collect();
    for (mode, complexity) in [
        (Mode::Celt, 0),
        (Mode::Celt, 1),
        (Mode::Celt, 5),
        (Mode::Silk, 0),
        (Mode::Silk, 1),
        (Mode::Silk, 3),
        (Mode::Silk, 10),
    ] {
        let mut up = Uplink::new(settings(mode, complexity, Bandwidth::Narrowband)).unwrap();
        let mut k = 0;
        c.bench_function(
            &format!("up: opus encode at 8 kHz, {mode:?}, complexity {complexity}"),
            |b| {
                b.iter(|| {
                    k = (k + 1) % frames.len();
                    black_box(up.push(&frames[k]).unwrap().map(|p| p.len()));
                })
            },
        );
    }
    for (complexity, bw, name) in [
        (1, Bandwidth::Narrowband, "narrowband"),
        (3, Bandwidth::Wideband, "wideband"),
    ] {
        let mut rs = Resampler::new(8000, RATE).unwrap();
        let mut enc = OpusEncoder::new(RATE, settings(Mode::Silk, complexity, bw)).unwrap();
        let mut pcm = Vec::with_capacity(FRAME * 2);
        let mut out = [0u8; MAX_PACKET];
        let mut k = 0;
        c.bench_function(
            &format!(
                "up: resample 8k->48k + opus encode at 48 kHz, complexity {complexity}, {name}"
            ),
            |b| {
                b.iter(|| {
                    k = (k + 1) % frames.len();
                    rs.process(frames[k].samples(), &mut pcm);
                    if pcm.len() >= FRAME {
                        black_box(enc.encode(&pcm[..FRAME], &mut out).unwrap());
                        pcm.drain(..FRAME);
                    }
                })
            },
        );
    }
}

fn downlink(c: &mut Criterion) {
    // The agent's stream as a LiveKit agent's libwebrtc publishes it: 48 kHz, VoIP mode
    // (SILK or hybrid for speech), full band, high complexity.
    let mut enc = OpusEncoder::new(RATE, settings(Mode::Silk, 9, Bandwidth::Fullband)).unwrap();
    let mut out = [0u8; MAX_PACKET];
    let packets: Vec<Vec<u8>> = (0..50)
        .map(|k| {
            let n = enc
                .encode(&voice(48_000.0, FRAME, k * FRAME), &mut out)
                .unwrap();
            out[..n].to_vec()
        })
        .collect();
    let mut down = Downlink::new();
    let mut k = 0;
    c.bench_function("down: opus decode at 8 kHz + mix, one track", |b| {
        b.iter(|| {
            k = (k + 1) % packets.len();
            down.on_packet(1, &packets[k]).unwrap();
            black_box(down.tick());
        })
    });
    let mut dec = OpusDecoder::new(RATE).unwrap();
    let mut rs = Resampler::new(RATE, 8000).unwrap();
    let mut pcm = vec![0i16; FRAME];
    let mut phone = Vec::with_capacity(320);
    c.bench_function("down: opus decode at 48 kHz + resample 48k->8k", |b| {
        b.iter(|| {
            k = (k + 1) % packets.len();
            let n = dec.decode(&packets[k], &mut pcm).unwrap();
            rs.process(&pcm[..n], &mut phone);
            black_box(phone.len());
            phone.clear();
        })
    });
}

criterion_group!(benches, uplink, downlink);
criterion_main!(benches);
