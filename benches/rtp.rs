//! Parse and write of a 172-byte packet (12-byte header + one 20 ms G.711 frame).

use criterion::{criterion_group, criterion_main, Criterion};
use sipbridge::media::rtp::{self, RtpHeader, HEADER_LEN};
use std::hint::black_box;

fn bench_rtp(c: &mut Criterion) {
    let header = RtpHeader {
        marker: false,
        payload_type: 0,
        sequence: 4242,
        timestamp: 678_720,
        ssrc: 0x5EED_F00D,
    };
    let payload = [0xFFu8; 160];
    let mut packet = [0u8; HEADER_LEN + 160];
    let len = rtp::write(&header, &payload, &mut packet).expect("buffer sized for the packet");

    let mut group = c.benchmark_group("rtp");
    group.bench_function("parse_172", |b| {
        b.iter(|| rtp::parse(black_box(&packet[..len])).map(|(h, p)| (h.sequence, p.len())))
    });
    group.bench_function("write_172", |b| {
        let mut out = [0u8; 1500];
        b.iter(|| rtp::write(black_box(&header), black_box(&payload), black_box(&mut out)))
    });
    group.finish();
}

criterion_group!(benches, bench_rtp);
criterion_main!(benches);
