//! The tests' fake OpenAI server as a process, for capacity runs: every socket is configured as
//! the client asks (Realtime `session.update`, Live `session.start`), then, once caller audio
//! arrives, gets a 440 Hz reply streamed in real time (100 ms deltas in the session's format,
//! 300 ms ahead) until the socket closes. Nothing is recorded.
//!
//!   cargo run --release --example fake_openai -- [realtime|live] [LISTEN_ADDR]
//!
//! (default realtime on 127.0.0.1:8766; the key is `Authorization: Bearer <API_KEY>` as printed).

// Only its runtime: the address is parsed here, after the API argument.
#[allow(dead_code)]
mod fake_common;
#[path = "../tests/fake_openai/mod.rs"]
mod fake_openai;

use std::net::SocketAddr;

use fake_openai::{step, Act, Api, FakeOpenai, When};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let api = match args.first().map(String::as_str) {
        Some("live") => Api::Live,
        Some("realtime") => Api::Realtime,
        _ => {
            args.insert(0, "realtime".into());
            Api::Realtime
        }
    };
    if args.len() > 2 {
        eprintln!("usage: fake_openai [realtime|live] [LISTEN_ADDR]");
        std::process::exit(2);
    }
    let addr_text = args.get(1).map_or("127.0.0.1:8766", String::as_str);
    let addr: SocketAddr = match addr_text.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fake_openai: bad listen address {addr_text:?}: {e}");
            std::process::exit(2);
        }
    };
    let rt = fake_common::runtime();
    rt.block_on(async move {
        let fake = FakeOpenai::start_on(addr, api, false, |_| {
            vec![step(
                When::Appends(1),
                vec![Act::Stream {
                    hz: 440.0,
                    chunk_ms: 100,
                    lead: 3,
                }],
            )]
        })
        .await;
        println!(
            "fake OpenAI {api:?} listening on {} (Authorization: Bearer {})",
            fake.url(),
            fake_openai::API_KEY
        );
        let _ = tokio::signal::ctrl_c().await;
        drop(fake);
    });
}
