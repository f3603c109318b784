//! One 20 ms frame through each media-path conversion: 48k->8k (agent audio to G.711),
//! 8k->48k (caller audio to Opus), 24k->8k and 44.1k->8k (other agent rates).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipbridge::codec::resample::Resampler;
use std::hint::black_box;

/// 20 ms of a speech-band tone mix at `rate` (441 samples at 22.05 kHz, etc.).
fn frame(rate: u32) -> Vec<i16> {
    let n = rate as usize / 50;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let s = (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                + 0.5 * (2.0 * std::f64::consts::PI * 2_300.0 * t).sin();
            (s * 12_000.0) as i16
        })
        .collect()
}

fn bench_resample(c: &mut Criterion) {
    let mut group = c.benchmark_group("resample");
    for (from, to) in [
        (48_000, 8_000),
        (8_000, 48_000),
        (24_000, 8_000),
        (44_100, 8_000),
    ] {
        let input = frame(from);
        let mut r = Resampler::new(from, to).unwrap();
        let mut out = Vec::with_capacity(to as usize / 50 + 1);
        group.throughput(Throughput::Elements(input.len() as u64));
        group.bench_function(format!("{}k_to_{}k_20ms", from / 1000, to / 1000), |b| {
            b.iter(|| {
                out.clear();
                r.process(black_box(&input), &mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
    c.bench_function("resample/new_44k_to_8k", |b| {
        b.iter(|| Resampler::new(black_box(44_100), black_box(8_000)))
    });
    c.bench_function("resample/new_48k_to_8k", |b| {
        b.iter(|| Resampler::new(black_box(48_000), black_box(8_000)))
    });
}

criterion_group!(benches, bench_resample);
criterion_main!(benches);
