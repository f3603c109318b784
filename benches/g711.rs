//! One 20 ms frame (160 samples at 8 kHz) per law, both directions.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipbridge::codec::g711::{decode, encode, Law};
use std::hint::black_box;

const FRAME: usize = 160;

fn speech_like_frame() -> [i16; FRAME] {
    // A mix of amplitudes across all segments, so no single table region stays hot by accident.
    let mut pcm = [0i16; FRAME];
    let mut x: u32 = 0x1234_5678;
    for s in pcm.iter_mut() {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *s = (x >> 16) as i16 >> ((x >> 8) & 7);
    }
    pcm
}

fn bench_g711(c: &mut Criterion) {
    let pcm = speech_like_frame();
    let mut group = c.benchmark_group("g711");
    group.throughput(Throughput::Elements(FRAME as u64));
    for (name, law) in [("ulaw", Law::Mu), ("alaw", Law::A)] {
        let mut codes = [0u8; FRAME];
        encode(law, &pcm, &mut codes);
        group.bench_function(format!("encode_{name}_160"), |b| {
            let mut out = [0u8; FRAME];
            b.iter(|| encode(law, black_box(&pcm), black_box(&mut out)))
        });
        group.bench_function(format!("decode_{name}_160"), |b| {
            let mut out = [0i16; FRAME];
            b.iter(|| decode(law, black_box(&codes), black_box(&mut out)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_g711);
criterion_main!(benches);
