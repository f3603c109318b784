//! The sans-IO front door (`call::dispatch`) fed whole datagrams on a fake clock, from a few
//! sources: whatever arrives, it answers at most once per datagram or drops it, and never
//! panics. Input: datagrams separated by 0xFF 0xFE; each one's first byte picks the source
//! (bits 0-1), how far the clock moves (bits 2-6) and whether the driver is behind on its
//! socket (bit 7: strangers are shed unparsed).
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sipbridge::call::dispatch::{Dispatcher, Output};
use sipbridge::config::{Credentials, Route, Trunk};
use sipbridge::routing::Router;
use sipbridge::sip::acl::AddressList;
use sipbridge::sip::auth::{ChallengeKind, NonceClock};
use sipbridge::sip::guard::Limits;

fn dispatcher(now: Instant) -> Dispatcher {
    let trunks = vec![
        Trunk {
            name: "digest".into(),
            credentials: Some(Credentials {
                username: "ai-voice-agent".into(),
                password: "pw".into(),
            }),
            allowed: AddressList::parse(&[]).expect("any"),
            numbers: vec![],
            symmetric_rtp: false,
            media_encryption: Default::default(),
        },
        Trunk {
            name: "esip".into(),
            credentials: None,
            allowed: AddressList::parse(&["10.9.0.0/16".to_string()]).expect("cidr"),
            numbers: vec![],
            symmetric_rtp: false,
            media_encryption: Default::default(),
        },
    ];
    let routes = vec![Route {
        numbers: vec![],
        agent: "echo".into(),
    }];
    let clock = NonceClock {
        epoch: now,
        unix_ms_at_epoch: 1_800_000_000_000,
    };
    let router = Router::new(
        trunks,
        routes,
        "sipbridge",
        ChallengeKind::Proxy,
        [7; 32],
        clock,
    );
    Dispatcher::new(now, router, 4, Limits::default())
}

const SOURCES: [&str; 4] = [
    "198.51.100.7:5060",
    "10.9.1.1:5060",
    "[2001:db8::1]:5060",
    "54.171.127.193:5060",
];

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let mut now = t0;
    let mut d = dispatcher(t0);
    let mut rest = data;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == [0xFF, 0xFE])
            .unwrap_or(rest.len());
        let (datagram, tail) = rest.split_at(end);
        rest = tail.get(2..).unwrap_or(&[]);
        let Some((&first, body)) = datagram.split_first() else {
            continue;
        };
        let src: SocketAddr = SOURCES[usize::from(first & 3)].parse().expect("source");
        now += Duration::from_millis(u64::from((first >> 2) & 0x1F) * 37);
        d.set_backlogged(first & 0x80 != 0);
        d.handle_datagram(now, src, Bytes::copy_from_slice(body));
        let mut answers = 0;
        while let Some(out) = d.poll_output() {
            match out {
                Output::Transmit { .. } => answers += 1,
                Output::NewCall(call) => {
                    d.call_answered(&call.call_id);
                    d.call_finished(&call.call_id);
                }
                Output::Route { .. } => {}
            }
        }
        assert!(answers <= 1, "{answers} answers to one datagram");
        while d.poll_stat().is_some() {}
    }
});
