//! The tests' fake Media Streams bot as a process, for capacity runs (scripts/capacity-agent
//! stream): every stream's caller audio is sent straight back as the bot's, so the load
//! harness checks the echo through the whole stream leg. Nothing is recorded.
//!
//!   cargo run --release --example fake_stream_bot -- [LISTEN_ADDR]     (default 127.0.0.1:8766)
//!
//! FAKE_STREAM_FRAMES=2 sends the echo back in 40 ms messages, as Pipecat's transport does
//! (one message per caller frame by default).

mod fake_common;
#[path = "../tests/fake_stream_bot/mod.rs"]
mod fake_stream_bot;

use fake_stream_bot::{step, Act, FakeBot, When};

fn main() {
    let addr = fake_common::listen_addr("fake_stream_bot", "127.0.0.1:8766");
    let rt = fake_common::runtime();
    rt.block_on(async move {
        let frames = std::env::var("FAKE_STREAM_FRAMES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let script = vec![step(When::Start, vec![Act::EchoBatched(frames)])];
        let bot = FakeBot::start_on(addr, false, script).await;
        println!("fake stream bot listening on {}", bot.url());
        let _ = tokio::signal::ctrl_c().await;
        drop(bot);
    });
}
