//! A SIP INVITE flooder for `scripts/flood`: what an ordinary flood tool or a scanner does to
//! a public port 5060, on loopback only.
//!
//!   sip_flood TARGET SECONDS [SOURCES] [RATE]
//!
//! Sends credential-less INVITEs (each a new Call-ID, so each would cost a digest challenge)
//! from SOURCES addresses 127.0.0.2, .3, ... (default 1, at most 60,000) in turn, as fast as
//! one thread can or at RATE per second, for SECONDS, and counts every datagram that comes
//! back. Prints one JSON line: `{"sent": N, "received": N, "seconds": S}` (sent: the
//! datagrams the kernel took; a full send buffer drops the rest).

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
    let sources: u32 = args
        .get(3)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1)
        .clamp(1, 60_000);
    let rate: f64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(0.0);

    let first = u32::from(Ipv4Addr::new(127, 0, 0, 2));
    let sockets: Vec<UdpSocket> = (0..sources)
        .map(|i| UdpSocket::bind((Ipv4Addr::from(first + i), 0)).expect("bind a 127/8 source"))
        .collect();
    // One thread counts the answers on every source socket (thousands of them: one task each
    // on a single-threaded runtime, not a thread each).
    let received = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let clones: Vec<UdpSocket> = sockets
        .iter()
        .map(|s| s.try_clone().expect("clone socket"))
        .collect();
    let reader = {
        let (received, done) = (received.clone(), done.clone());
        std::thread::spawn(move || count_answers(clones, &received, &done))
    };
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut sent: u64 = 0;
    let mut delivered: u64 = 0;
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
            if sock.send_to(msg.as_bytes(), target).is_ok() {
                delivered += 1;
            }
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
    let _ = reader.join();
    println!(
        "{{\"sent\": {delivered}, \"received\": {}, \"seconds\": {seconds:.2}}}",
        received.load(Ordering::Relaxed)
    );
}

fn count_answers(sockets: Vec<UdpSocket>, received: &Arc<AtomicU64>, done: &AtomicBool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for s in sockets {
            // The sending side shares this socket: non-blocking there too, where a full send
            // buffer then fails the send (not counted) instead of stalling the flood.
            s.set_nonblocking(true).expect("non-blocking");
            let s = tokio::net::UdpSocket::from_std(s).expect("tokio socket");
            let received = received.clone();
            tasks.spawn(async move {
                let mut buf = [0u8; 4096];
                loop {
                    if s.recv(&mut buf).await.is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        while !done.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tasks.abort_all();
    });
}
