//! The load harness's per-call work outside the kernel: building one paced RTP frame, matching
//! one returned frame, and one whole call's SIP (INVITE, 407, INVITE, 200, ACK, BYE, 200) in
//! the sans-IO UAC. Multiply by 50 frames per second per call for the media share of a core.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use sipbridge::codec::g711::{self, Law};
use sipbridge::load::media::{CallMedia, SendParams};
use sipbridge::load::signal::Program;
use sipbridge::load::uac::{Credentials, Uac, UacConfig};
use sipbridge::media::rtp;
use sipbridge::sip::message::{HeaderName, Message, Method, Response};
use sipbridge::sip::transaction::Timers;
use std::hint::black_box;

fn media() -> CallMedia {
    let mut m = CallMedia::new(Program::builtin(1).voice(2), 3);
    m.start(
        SendParams {
            law: Law::Mu,
            payload_type: 0,
            remote: "127.0.0.1:4000".parse().unwrap(),
            srtp: None,
        },
        0,
    );
    m
}

/// What the gateway's echo does to a frame: decode and re-encode.
fn echo(packet: &[u8]) -> Vec<u8> {
    let (h, payload) = rtp::parse(packet).unwrap();
    let mut pcm = [0i16; 160];
    g711::decode(Law::Mu, payload, &mut pcm);
    let mut codes = [0u8; 160];
    g711::encode(Law::Mu, &pcm, &mut codes);
    let mut out = vec![0u8; 172];
    rtp::write(&rtp::RtpHeader { ssrc: 9, ..h }, &codes, &mut out).unwrap();
    out
}

fn bench_media(c: &mut Criterion) {
    let mut group = c.benchmark_group("load_media");
    group.bench_function("next_packet", |b| {
        let mut m = media();
        let now = Instant::now();
        let mut tick = 0;
        b.iter(|| {
            tick += 1;
            m.next_packet(now, tick).map(|(_, p)| p.len())
        })
    });
    group.bench_function("on_datagram_echo", |b| {
        let mut m = media();
        let now = Instant::now();
        let echoes: Vec<Vec<u8>> = (0..32)
            .map(|k| echo(m.next_packet(now, k).unwrap().1))
            .collect();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % echoes.len();
            m.on_datagram(now, black_box(&echoes[i]))
        })
    });
    group.finish();
}

fn respond(req: &Message, status: u16, extra: &[(HeaderName, &str)], body: &str) -> Message {
    let Message::Request(req) = req else {
        unreachable!()
    };
    let mut r = Response::for_request(req, status, Some("gw"));
    for (n, v) in extra {
        r.headers.push(n.clone(), v.to_string());
    }
    r.body = Bytes::from(body.to_string());
    Message::Response(r)
}

fn last_request(uac: &mut Uac, method: Method) -> Message {
    let mut found = None;
    while let Some((_, bytes)) = uac.poll_transmit() {
        let m = Message::parse(bytes).unwrap();
        if matches!(&m, Message::Request(r) if r.method == method) {
            found = Some(m);
        }
    }
    found.expect("request sent")
}

fn bench_uac(c: &mut Criterion) {
    let target: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let cfg = UacConfig {
        target,
        local: "127.0.0.1:5070".parse().unwrap(),
        media_ip: "127.0.0.1".parse().unwrap(),
        law: Law::Mu,
        credentials: Some(Credentials {
            username: "u".into(),
            password: "p".into(),
        }),
        hold: Duration::ZERO,
        timers: Timers::default(),
        setup_timeout: Duration::from_secs(30),
        caller: "+447700900123".into(),
        called: "+447846855904".into(),
        account_sid: "AC0".into(),
        srtp: false,
    };
    let challenge = "Digest realm=\"sipbridge\", nonce=\"abc\", algorithm=MD5, qop=\"auth\"";
    let answer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                  m=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n";
    c.bench_function("load_uac_whole_call", |b| {
        b.iter(|| {
            let now = Instant::now();
            let mut uac = Uac::new(now, &cfg, 40000);
            let inv = last_request(&mut uac, Method::Invite);
            uac.on_message(
                now,
                respond(&inv, 407, &[(HeaderName::ProxyAuthenticate, challenge)], ""),
                target,
            );
            let inv = last_request(&mut uac, Method::Invite);
            let ok = respond(
                &inv,
                200,
                &[(HeaderName::Contact, "<sip:127.0.0.1>")],
                answer,
            );
            uac.on_message(now, ok, target);
            uac.handle_timeout(now);
            let bye = last_request(&mut uac, Method::Bye);
            uac.on_message(now, respond(&bye, 200, &[], ""), target);
            uac.result().map(|r| r.outcome)
        })
    });
}

criterion_group!(benches, bench_media, bench_uac);
criterion_main!(benches);
