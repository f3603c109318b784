//! A SIP INVITE flooder for `scripts/flood`: what an ordinary flood tool or a scanner does to
//! a public port 5060, on loopback only.
//!
//!   sip_flood TARGET SECONDS [SOURCES] [RATE]
//!
//! Sends credential-less INVITEs (each a new Call-ID, so each would cost a digest challenge)
//! from SOURCES addresses 127.0.0.2, .3, ... (default 1) as fast as one thread can, or at RATE
//! per second, for SECONDS, and counts every datagram that comes back. Prints one JSON line:
//! `{"sent": N, "received": N, "seconds": S}`.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: sip_flood TARGET:PORT SECONDS [SOURCES] [RATE]";
    let (Some(target), Some(secs)) = (
        args.get(1).and_then(|a| a.parse::<SocketAddr>().ok()),
        args.get(2).and_then(|a| a.parse::<f64>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    assert!(target.ip().is_loopback(), "loopback targets only");
    let sources: u8 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let rate: f64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(0.0);

    let sockets: Vec<UdpSocket> = (0..sources)
        .map(|i| {
            let ip = Ipv4Addr::new(127, 0, 0, 2 + i);
            let s = UdpSocket::bind((ip, 0)).expect("bind a 127/8 source");
            s.set_read_timeout(Some(Duration::from_millis(100))).ok();
            s
        })
        .collect();
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = sockets
        .iter()
        .map(|s| {
            let s = s.try_clone().expect("clone socket");
            let (received, done) = (received.clone(), done.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !done.load(Ordering::Relaxed) {
                    if s.recv(&mut buf).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut sent: u64 = 0;
    while Instant::now() < end {
        // Batches of 64 between clock reads and rate checks.
        for _ in 0..64 {
            let sock = &sockets[(sent % u64::from(sources)) as usize];
            let local = sock.local_addr().expect("local address");
            let msg = format!(
                "INVITE sip:+447846855904@{target} SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {local};branch=z9hG4bK-flood-{sent}\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:100@{local}>;tag=flood{sent}\r\n\
                 To: <sip:+447846855904@{target}>\r\n\
                 Call-ID: flood-{sent}@{local}\r\n\
                 CSeq: 1 INVITE\r\n\
                 Contact: <sip:100@{local}>\r\n\
                 User-Agent: friendly-scanner\r\n\
                 Content-Length: 0\r\n\r\n"
            );
            // A full socket buffer is the flood's problem, not ours: drop and go on.
            let _ = sock.send_to(msg.as_bytes(), target);
            sent += 1;
        }
        if rate > 0.0 {
            let due = start + Duration::from_secs_f64(sent as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // Late answers to the last requests.
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    for r in readers {
        let _ = r.join();
    }
    println!(
        "{{\"sent\": {sent}, \"received\": {}, \"seconds\": {seconds:.2}}}",
        received.load(Ordering::Relaxed)
    );
}
