//! The tests' mock LiveKit server as a program, for capacity runs (`scripts/capacity-livekit`):
//! prints its `ws://` URL, then serves until killed. Every participant gets an agent that plays
//! a 440 Hz tone at once; nothing is recorded.
//!
//!   cargo run --release --example mock_livekit [PORT_FILE]

#[path = "../tests/mock_livekit/mod.rs"]
mod mock_livekit;

use std::time::Duration;

use mock_livekit::{MockConfig, MockLivekit};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mock = MockLivekit::start(MockConfig {
        agent_delay: Duration::ZERO,
        record_audio: false,
        ping_timeout_secs: 30,
        ..Default::default()
    })
    .await;
    println!("{}", mock.url);
    if let Some(path) = std::env::args().nth(1) {
        std::fs::write(&path, &mock.url).expect("write the URL file");
    }
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
