//! SIP codec throughput on Twilio's <Dial><Sip> INVITE (fixture B): parse alone, parse plus
//! the typed views a transaction/dialog layer reads, and serializing a 200 OK built with
//! `Response::for_request`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use sipbridge::sip::message::{Message, Response};

fn fixture_b() -> Bytes {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/sip/twilio_dial_sip_invite.sip"
    );
    Bytes::from(std::fs::read(path).expect("fixture B"))
}

fn bench(c: &mut Criterion) {
    let raw = fixture_b();

    c.bench_function("parse fixture B INVITE", |b| {
        b.iter(|| Message::parse(black_box(raw.clone())).expect("parses"))
    });

    c.bench_function("parse + top_via/from/to/cseq/call_id", |b| {
        b.iter(|| {
            let msg = Message::parse(black_box(raw.clone())).expect("parses");
            let Message::Request(req) = msg else {
                unreachable!("fixture B is a request")
            };
            let via = req.top_via().expect("via");
            let from = req.from().expect("from");
            let to = req.to().expect("to");
            let cseq = req.cseq().expect("cseq");
            let call_id = req.call_id().map(str::len);
            black_box((via, from, to, cseq, call_id))
        })
    });

    let Ok(Message::Request(req)) = Message::parse(raw.clone()) else {
        unreachable!("fixture B is a request")
    };
    let ok = Response::for_request(&req, 200, Some("8a1b7c2d"));
    c.bench_function("serialize 200 OK (for_request)", |b| {
        b.iter(|| black_box(&ok).to_bytes())
    });
    c.bench_function("for_request + serialize 200 OK", |b| {
        b.iter(|| Response::for_request(black_box(&req), 200, Some("8a1b7c2d")).to_bytes())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
