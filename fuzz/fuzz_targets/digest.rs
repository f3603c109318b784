//! Digest headers: a challenge as a client reads it, and credentials as the server verifies
//! them, from any text.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use sipbridge::sip::auth::{Challenge, DigestConfig, DigestServer, NonceClock};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Challenge::parse(text);
    let now = Instant::now();
    let clock = NonceClock {
        epoch: now,
        unix_ms_at_epoch: 1_800_000_000_000,
    };
    let mut server = DigestServer::new(DigestConfig::default(), [7; 32], 1, clock);
    let lookup = |user: &str| (user == "ai-voice-agent").then(|| "pw".to_string());
    let _ = server.verify(now, "INVITE", text, lookup);
});
