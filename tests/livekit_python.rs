//! A second opinion on the mock LiveKit server that the gateway's LiveKit tests trust: the
//! official `livekit` Python package (a real libwebrtc client, from PyPI, in a virtualenv under
//! target/) joins the mock as the gateway would. It publishes a 1000 Hz tone and a sip_dtmf
//! packet and listens to the mock's 440 Hz agent; the mock must hear the tone and the digit,
//! the client the agent, and the client's leave must arrive. A missing python3 or venv is a
//! failure with instructions, never a skip.

mod mock_livekit;

use std::process::Command;
use std::time::Duration;

use mock_livekit::{MockConfig, MockLivekit, API_KEY, API_SECRET};
use sipbridge::load::signal::zero_crossing_hz;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_libwebrtc_client_and_the_mock_hear_each_other() {
    let mock = MockLivekit::start(MockConfig {
        agent_delay: Duration::ZERO,
        record_audio: true,
        ..Default::default()
    })
    .await;
    let url = mock.url.clone();
    // The script bounds the client at 90 s; installing the package on first use comes first.
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/livekit-python-check"
            ))
            .args([&url, API_KEY, API_SECRET])
            .output()
            .expect("run scripts/livekit-python-check")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(3),
        "the check needs python3 with venv and pip \
         (Debian: apt-get install python3 python3-venv python3-pip; scripts/test installs them):\n{stderr}"
    );
    assert!(out.status.success(), "client failed:\n{stdout}\n{stderr}");
    let line = stdout.lines().last().unwrap_or_default();
    let client: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    for key in ["connected", "published", "subscribed"] {
        assert_eq!(client[key], true, "{key}: {client}");
    }
    let heard = client["heard_hz"].as_f64().unwrap_or(0.0);
    assert!(
        (heard - 440.0).abs() <= 20.0,
        "client heard {heard} Hz: {client}"
    );

    // The client has left; its leave and what it sent are on the mock's record.
    mock.wait_for("the client's leave", Duration::from_secs(10), |s| {
        s.sessions.first().is_some_and(|x| x.left.is_some())
    })
    .await;
    let state = mock.state.lock().unwrap();
    let session = &state.sessions[0];
    assert_eq!(
        session.claims.as_ref().map(|c| c.sub.as_str()),
        Some("sip_+15550001111")
    );
    assert!(
        session.audio_packets > 50,
        "{} packets",
        session.audio_packets
    );
    // The last second of what the client sent, at 48 kHz.
    let tail = &session.audio[session.audio.len().saturating_sub(48_000)..];
    let hz = zero_crossing_hz(tail, 48_000.0);
    assert!((hz - 1000.0).abs() <= 20.0, "mock heard {hz} Hz");
    assert_eq!(session.dtmf, vec![(9, "9".to_string())]);
    drop(state);
    mock.stop();
}
