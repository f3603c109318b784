//! The tests' fake Hume EVI server as a process, for capacity runs (scripts/capacity-agent hume):
//! every socket gets `chat_metadata`, then, once caller audio arrives, a 440 Hz reply streamed
//! in real time (100 ms WAV chunks at 48 kHz, 300 ms ahead) until the socket closes. Nothing is
//! recorded.
//!
//!   cargo run --release --example fake_evi -- [LISTEN_ADDR]     (default 127.0.0.1:8765)

mod fake_common;
#[path = "../tests/fake_evi/mod.rs"]
mod fake_evi;

use fake_evi::{step, Act, FakeEvi, When};

fn main() {
    let addr = fake_common::listen_addr("fake_evi", "127.0.0.1:8765");
    let rt = fake_common::runtime();
    rt.block_on(async move {
        let fake = FakeEvi::start_on(addr, false, |_| {
            vec![
                step(When::Connected, vec![Act::Metadata]),
                step(
                    When::AudioInputs(1),
                    vec![Act::Stream {
                        hz: 440.0,
                        chunk_ms: 100,
                        lead: 3,
                    }],
                ),
            ]
        })
        .await;
        println!(
            "fake EVI listening on {} (X-Hume-Api-Key: {})",
            fake.url(),
            fake_evi::API_KEY
        );
        let _ = tokio::signal::ctrl_c().await;
        drop(fake);
    });
}
