//! The Media Streams agent against a real bot framework: Pipecat (from PyPI) with its own
//! FastAPI WebSocket transport and TwilioFrameSerializer (scripts/pipecat-bot runs
//! tests/python/pipecat_bot.py). A call through the gateway must be taken by Pipecat's
//! serializer (its audio and key presses reach the pipeline), hear the bot's 600 Hz tone, and
//! end cleanly when the bot hangs up on the key #. A missing python3 or venv is a failure with
//! instructions, never a skip.

mod common;
mod uac;

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_tcp_port, rtp_range, temp_dir, PASSWORD, USER};
use sipbridge::call::Gateway;
use sipbridge::config;
use sipbridge::load::signal::zero_crossing_hz;
use sipbridge::load::uac::ByeOutcome;
use uac::{place_call, CallPlan};

/// Kills the bot (by PID) however the test ends.
struct Bot(Child);

impl Drop for Bot {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the bot and waits (bounded: the first run installs Pipecat) until it listens.
fn start_bot(port: u16, stats: &std::path::Path) -> Bot {
    let script = format!("{}/scripts/pipecat-bot", env!("CARGO_MANIFEST_DIR"));
    let log = std::fs::File::create(stats.with_extension("log")).unwrap();
    let child = Command::new("bash")
        .arg(&script)
        .arg(port.to_string())
        .arg(stats)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let mut bot = Bot(child);
    let until = Instant::now() + Duration::from_secs(300);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = bot.0.try_wait() {
            let log = std::fs::read_to_string(stats.with_extension("log")).unwrap_or_default();
            assert_ne!(
                status.code(),
                Some(3),
                "scripts/pipecat-bot needs python3 with venv and pip (Debian: apt-get install \
                 python3 python3-venv python3-pip; scripts/test installs them):\n{log}"
            );
            panic!("the Pipecat bot exited ({status}):\n{log}");
        }
        assert!(Instant::now() < until, "the Pipecat bot never listened");
        std::thread::sleep(Duration::from_millis(200));
    }
    bot
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipecat_bot_takes_the_call_plays_its_tone_and_hangs_up_on_hash() {
    let dir = temp_dir("pipecat");
    let stats = dir.join("stats.jsonl");
    let port = free_tcp_port();
    let _bot = start_bot(port, &stats);
    let (lo, hi) = rtp_range();
    let text = format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n[media]\nrtp_ports = \"{lo}-{hi}\"\n\
         [[trunks]]\nname = \"twilio\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         [agents.bot]\nkind = \"stream\"\nurl = \"ws://127.0.0.1:{port}/ws\"\n\
         parameters = {{ campaign = \"pipecat-e2e\" }}\n"
    );
    let cfg = config::parse(&text, "test.toml", &|_| None).unwrap();
    let gw = Gateway::start(&cfg).await.unwrap();
    let call = place_call(CallPlan {
        target: gw.sip_addr,
        username: USER.into(),
        password: PASSWORD.into(),
        hold: Duration::from_secs(15),
        caller_hz: Some(440.0),
        max_wait: Duration::from_secs(30),
        dtmf: vec![
            (Duration::from_millis(1500), '5'),
            (Duration::from_millis(2500), '#'),
        ],
    })
    .await;
    assert_eq!(call.status(), Some(200), "{:?}", call.responses);
    assert_eq!(
        call.bye(),
        Some(ByeOutcome::Remote),
        "the bot hung up: {:?}",
        call.sip
    );
    let reason = call
        .sip
        .as_ref()
        .and_then(|s| s.remote_bye_reason.clone())
        .unwrap();
    assert!(
        reason.contains("cause=16") && reason.contains("the bot closed the stream"),
        "{reason}"
    );

    // The caller heard the bot's tone.
    let loud: Vec<i16> = call
        .rx
        .iter()
        .filter(|r| r.rms() > 1000.0)
        .flat_map(|r| r.pcm.iter().copied())
        .collect();
    assert!(
        loud.len() > 8000,
        "at least a second of the tone: {} samples",
        loud.len()
    );
    let hz = zero_crossing_hz(&loud, 8000.0);
    assert!((hz - 600.0).abs() < 15.0, "heard {hz} Hz");

    // Pipecat's serializer took our messages: the caller's audio and keys reached the pipeline.
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        if let Some(l) = std::fs::read_to_string(&stats)
            .ok()
            .and_then(|s| s.lines().next().map(str::to_string))
        {
            break l;
        }
        assert!(Instant::now() < deadline, "the bot wrote no stats");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let s: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(s["connected"]["event"], "connected");
    assert_eq!(
        s["start"]["start"]["customParameters"]["campaign"],
        "pipecat-e2e"
    );
    assert!(s["audio_frames"].as_u64().unwrap() > 50, "{s}");
    assert_eq!(s["dtmf"], serde_json::json!(["5", "#"]));
    gw.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
