//! SRTP protect and unprotect of a 172-byte packet (12-byte header + one 20 ms G.711 frame),
//! AES_CM_128_HMAC_SHA1_80: the per-packet cost SDES adds to each direction of a call.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sipbridge::media::rtp::{self, RtpHeader, HEADER_LEN};
use sipbridge::media::srtp::{MasterKey, SrtpReceiver, SrtpSender, Suite, MAX_TAG_LEN};
use std::hint::black_box;

const PACKET_LEN: usize = HEADER_LEN + 160;

fn header(sequence: u16) -> RtpHeader {
    RtpHeader {
        marker: false,
        payload_type: 0,
        sequence,
        timestamp: u32::from(sequence).wrapping_mul(160),
        ssrc: 0x5EED_F00D,
    }
}

fn bench_srtp(c: &mut Criterion) {
    let suite = Suite::AesCm128HmacSha1_80;
    let key = MasterKey::random();
    let payload = [0xFFu8; 160];

    let mut group = c.benchmark_group("srtp");
    group.throughput(Throughput::Elements(1));

    group.bench_function("protect_172", |b| {
        let mut sender = SrtpSender::new(suite, &key);
        let mut buf = [0u8; PACKET_LEN + MAX_TAG_LEN];
        let mut sequence = 0u16;
        b.iter(|| {
            // Rewriting the header keeps every iteration a new, in-order packet, as a call is.
            sequence = sequence.wrapping_add(1);
            let len = rtp::write(&header(sequence), &payload, &mut buf).expect("buffer fits");
            sender.protect(black_box(&mut buf), len)
        })
    });

    // A receiver rejects a packet it has seen, so each iteration needs a fresh one: protect a
    // window's worth up front and feed them to a new receiver each time round.
    let mut sender = SrtpSender::new(suite, &key);
    let packets: Vec<[u8; PACKET_LEN + MAX_TAG_LEN]> = (0..4096u16)
        .map(|sequence| {
            let mut buf = [0u8; PACKET_LEN + MAX_TAG_LEN];
            let len = rtp::write(&header(sequence), &payload, &mut buf).expect("buffer fits");
            let srtp_len = sender.protect(&mut buf, len).expect("protects");
            assert_eq!(srtp_len, buf.len());
            buf
        })
        .collect();
    group.bench_function("unprotect_172", |b| {
        let mut receiver = SrtpReceiver::new(suite, &key);
        let mut next = 0;
        let mut buf = [0u8; PACKET_LEN + MAX_TAG_LEN];
        b.iter(|| {
            if next == packets.len() {
                receiver = SrtpReceiver::new(suite, &key);
                next = 0;
            }
            buf.copy_from_slice(&packets[next]);
            next += 1;
            receiver.unprotect(black_box(&mut buf))
        })
    });
    group.finish();
}

criterion_group!(benches, bench_srtp);
criterion_main!(benches);
