//! The tests' fake Media Streams bot as a process, for capacity runs (scripts/capacity-agent
//! stream): every stream's caller audio is sent straight back as the bot's, so the load
//! harness checks the echo through the whole stream leg. Nothing is recorded.
//!
//!   cargo run --release --example fake_stream_bot -- [LISTEN_ADDR]     (default 127.0.0.1:8766)

#[path = "../tests/fake_stream_bot/mod.rs"]
mod fake_stream_bot;

use fake_stream_bot::{step, Act, FakeBot, When};

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8766".into());
    let addr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fake_stream_bot: bad listen address {addr:?}: {e}");
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let bot = FakeBot::start_on(addr, false, vec![step(When::Start, vec![Act::Echo])]).await;
        println!("fake stream bot listening on {}", bot.url());
        let _ = tokio::signal::ctrl_c().await;
        drop(bot);
    });
}
