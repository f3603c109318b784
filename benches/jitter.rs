//! Push + pop per packet: an in-order stream, and one with 5 % of packets swapped with their
//! successor (each swap leaves a one-packet gap that the next arrival fills).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipbridge::media::jitter::{JitterBuffer, JitterConfig, Playout};
use sipbridge::media::rtp::RtpHeader;
use std::hint::black_box;
use std::time::{Duration, Instant};

const PACKETS: u16 = 1000;

/// Arrival order as offsets from the batch start: in order, or with `swap_percent` of the
/// packets swapped with their successor.
fn arrival_order(swap_percent: u32) -> Vec<u16> {
    let mut order: Vec<u16> = (0..PACKETS).collect();
    let mut x: u32 = 0x9E37_79B9;
    let mut i = 0;
    while i + 1 < order.len() {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        if (x >> 8) % 100 < swap_percent {
            order.swap(i, i + 1);
            i += 2;
        } else {
            i += 1;
        }
    }
    order
}

fn bench_jitter(c: &mut Criterion) {
    let payload = [0xFFu8; 160];
    let mut group = c.benchmark_group("jitter");
    group.throughput(Throughput::Elements(u64::from(PACKETS)));
    for (name, swap) in [("in_order", 0), ("reorder_5pct", 5)] {
        let order = arrival_order(swap);
        group.bench_function(format!("push_pop_{name}_x1000"), |b| {
            let mut jb = JitterBuffer::new(JitterConfig::default());
            let mut now = Instant::now();
            let mut base: u16 = 0;
            b.iter(|| {
                let mut bytes = 0usize;
                for &offset in &order {
                    let seq = base.wrapping_add(offset);
                    let header = RtpHeader {
                        marker: false,
                        payload_type: 0,
                        sequence: seq,
                        timestamp: u32::from(seq) * 160,
                        ssrc: 1,
                    };
                    now += Duration::from_millis(20);
                    jb.push(now, &header, black_box(&payload));
                    while let Some(item) = jb.pop(now) {
                        if let Playout::Frame { payload, .. } = item {
                            bytes += payload.len();
                        }
                    }
                }
                base = base.wrapping_add(PACKETS);
                bytes
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_jitter);
criterion_main!(benches);
