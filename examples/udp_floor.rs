//! The kernel's floor under a call's media on this machine: what one loopback `send` and one
//! `recv` of an RTP-sized datagram cost with nothing else around them (no epoll, no peer to
//! wake, no user-space work), over as many socket pairs as calls.
//!
//!   udp_floor [PAIRS] [ROUNDS]      defaults 2000 100; run it pinned: taskset -c 0 ...
//!
//! Each round sends one 172-byte datagram (RTP header + 20 ms of G.711) from every pair's
//! first socket to its second, then reads each of them, so every socket holds at most one
//! datagram as in a call. Twice: with the sockets `connect()`ed to each other, as the media
//! engine's are once media is symmetric, and unconnected (`sendto`/`recvfrom`). On loopback a
//! send also delivers the datagram into the receiving socket (a real NIC leaves that to the
//! receiver), which is how every capacity figure in docs/performance.md is measured too.
//!
//! A gateway call receives 50 datagrams a second and sends 50, so it cannot cost less than
//! 50 x (send + recv) of a core-second: printed as a percentage of a core per call.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

const DATAGRAM: usize = 12 + 160;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: usize| {
        args.get(i).map_or(default, |a| {
            a.parse().unwrap_or_else(|_| {
                eprintln!("usage: udp_floor [PAIRS] [ROUNDS]");
                std::process::exit(2)
            })
        })
    };
    let pairs = arg(1, 2000).max(1);
    let rounds = arg(2, 100).max(1);
    for connected in [true, false] {
        let (send, recv) = measure(pairs, rounds, connected);
        let per_call = 50.0 * (send + recv).as_secs_f64() * 100.0;
        println!(
            "{:<11} {pairs} pairs x {rounds} rounds: send {:.2} µs, recv {:.2} µs per datagram; \
             floor per call (50 of each a second) {per_call:.4} % of a core",
            if connected {
                "connected"
            } else {
                "unconnected"
            },
            send.as_secs_f64() * 1e6,
            recv.as_secs_f64() * 1e6,
        );
    }
}

/// Mean time of one send and of one receive.
fn measure(pairs: usize, rounds: usize, connected: bool) -> (Duration, Duration) {
    let bind = || UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let sockets: Vec<(UdpSocket, UdpSocket)> = (0..pairs)
        .map(|_| {
            let (a, b) = (bind(), bind());
            if connected {
                a.connect(b.local_addr().expect("address"))
                    .expect("connect");
                b.connect(a.local_addr().expect("address"))
                    .expect("connect");
            }
            (a, b)
        })
        .collect();
    let to: Vec<_> = sockets
        .iter()
        .map(|(_, b)| b.local_addr().expect("address"))
        .collect();
    let payload = [0x55u8; DATAGRAM];
    let mut buf = [0u8; 2048];
    let (mut send, mut recv) = (Duration::ZERO, Duration::ZERO);
    // One round first to warm caches and the socket buffers; not counted.
    for round in 0..=rounds {
        let t = Instant::now();
        for ((a, _), to) in sockets.iter().zip(&to) {
            let sent = if connected {
                a.send(&payload)
            } else {
                a.send_to(&payload, to)
            };
            sent.expect("send");
        }
        let t_sent = Instant::now();
        for (_, b) in &sockets {
            let got = if connected {
                b.recv(&mut buf)
            } else {
                b.recv_from(&mut buf).map(|(n, _)| n)
            };
            assert_eq!(got.expect("recv"), DATAGRAM);
        }
        if round > 0 {
            send += t_sent - t;
            recv += t_sent.elapsed();
        }
    }
    let n = (pairs * rounds) as u32;
    (send / n, recv / n)
}
