//! SDP offers: any text parses or is refused, and what parses is negotiated against our media
//! (an answer or a clean refusal), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipbridge::sdp::{negotiate, LocalMedia, SessionDescription};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(offer) = SessionDescription::parse(text) else {
        return;
    };
    let local = LocalMedia {
        ip: std::net::IpAddr::from([203, 0, 113, 10]),
        port: 10_000,
        session_id: 1,
        session_version: 1,
        ptime_ms: 20,
    };
    if let Ok(n) = negotiate(&offer, &local) {
        SessionDescription::parse(&n.answer).expect("our answer parses");
    }
});
