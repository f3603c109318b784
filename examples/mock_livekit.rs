//! The tests' mock LiveKit server as a program, for capacity runs (scripts/capacity-agent livekit):
//! prints its `ws://` URL, then serves until killed. Every participant gets an agent that plays
//! a 440 Hz tone at once. With `MOCK_LIVEKIT_STATS` set it records what participants send and
//! prints a line per session every second (scripts/livekit-python-check reads them).
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
        record_audio: std::env::var_os("MOCK_LIVEKIT_STATS").is_some(),
        ping_timeout_secs: 30,
        ..Default::default()
    })
    .await;
    println!("{}", mock.url);
    if let Some(path) = std::env::args().nth(1) {
        std::fs::write(&path, &mock.url).expect("write the URL file");
    }
    // One line a second per session, for scripts that check what the mock got.
    let verbose = std::env::var_os("MOCK_LIVEKIT_STATS").is_some();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if !verbose {
            continue;
        }
        let s = mock.state.lock().unwrap();
        for (i, x) in s.sessions.iter().enumerate() {
            println!(
                "session {i} room={} identity={} audio_packets={} loud_hz={:.0} dtmf={:?} \
                 answers={:?} offers={} left={} ended={:?}",
                x.room,
                x.claims.as_ref().map(|c| c.sub.as_str()).unwrap_or(""),
                x.audio_packets,
                zero_crossing_hz(&x.audio),
                x.dtmf,
                x.subscriber_answers,
                x.offers_sent,
                x.left.is_some(),
                x.ended
            );
        }
        for r in &s.refused {
            println!("refused {r}");
        }
    }
}

/// Pitch of the last second of what a participant sent (48 kHz).
fn zero_crossing_hz(pcm: &[i16]) -> f64 {
    let tail = &pcm[pcm.len().saturating_sub(48_000)..];
    if tail.len() < 4800 {
        return 0.0;
    }
    sipbridge::load::signal::zero_crossing_hz(tail, 48_000.0)
}
