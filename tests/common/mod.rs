//! Shared pieces of the end-to-end tests: a gateway on loopback, free ports, test audio,
//! temp directories and SIPp.
#![allow(dead_code)]

pub mod load;
pub mod pki;
pub mod raw_sip;
pub mod sipp;
pub mod stream_sip;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU16, Ordering};

use sipbridge::call::Gateway;
use sipbridge::codec::g711::{self, Law};
use sipbridge::config;

pub const USER: &str = "ai-voice-agent";
pub const PASSWORD: &str = "correct-horse-battery";

/// A UDP port free right now on 127.0.0.1 (for tools that need a number, like SIPp).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("no free UDP port on loopback")
}

/// A TCP port free right now on 127.0.0.1 (for a server the test starts as a process).
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("no free TCP port on loopback")
}

/// A distinct RTP range per gateway in this process, so parallel tests never share ports.
pub fn rtp_range() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let base = 30000 + (std::process::id() as u16 % 40) * 500 + n * 100;
    (base, base + 98)
}

/// Starts a gateway on 127.0.0.1 with one digest trunk and the echo agent; `extra` is appended
/// to the config (more sections).
pub async fn gateway(extra: &str) -> Gateway {
    gateway_with("media_timeout_secs = 5\n", extra).await
}

/// Like [`gateway`], with `media` lines added to the `[media]` table.
pub async fn gateway_with(media: &str, extra: &str) -> Gateway {
    gateway_env(media, extra, &|_| None).await
}

/// Like [`gateway_with`], with `env` answering the config's `*_env` variables.
pub async fn gateway_env(
    media: &str,
    extra: &str,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Gateway {
    gateway_sip("", media, extra, env).await
}

/// Like [`gateway_env`], with `sip` lines added to the `[sip]` table (TCP and TLS listeners).
pub async fn gateway_sip(
    sip: &str,
    media: &str,
    extra: &str,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Gateway {
    capture_logs();
    let cfg =
        config::parse(&config_text(sip, media, extra), "test.toml", env).expect("test config");
    Gateway::start(&cfg).await.expect("gateway start")
}

/// Sends the gateway's logs (`sipbridge=info`, or `RUST_LOG`) to the test harness's captured
/// output, so a failing test prints them and a passing one does not: without them a failure on
/// CI says what went wrong but not why. The threads a test starts (its runtime's workers, the
/// media reactors) inherit its capture. A test binary that installs its own subscriber first
/// (hume_e2e, which asserts on log lines) keeps it.
pub fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("sipbridge=info"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(false)
            .with_test_writer()
            .try_init();
    });
}

/// The test gateway's config: SIP and HTTP on 127.0.0.1, a fresh RTP range, one digest trunk
/// for 127.0.0.0/8, with `sip` and `media` lines added to their tables and `extra` after.
pub fn config_text(sip: &str, media: &str, extra: &str) -> String {
    let (lo, hi) = rtp_range();
    format!(
        "[sip]\nlisten = \"127.0.0.1:0\"\n{sip}[media]\nrtp_ports = \"{lo}-{hi}\"\n{media}\
         [http]\nlisten = \"127.0.0.1:0\"\n[[trunks]]\nname = \"twilio\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         allowed_addresses = [\"127.0.0.0/8\"]\n{extra}"
    )
}

/// `secs` of a 440 Hz tone at -12 dBFS, G.711-encoded: a raw payload stream for SIPp's rtp_stream.
pub fn tone(law: Law, secs: f64) -> Vec<u8> {
    let n = (8000.0 * secs) as usize;
    let pcm: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
        })
        .collect();
    let mut out = vec![0u8; n];
    g711::encode(law, &pcm, &mut out);
    out
}

/// RMS of a G.711 payload after decoding.
pub fn rms(law: Law, payload: &[u8]) -> f64 {
    let mut pcm = vec![0i16; payload.len()];
    g711::decode(law, payload, &mut pcm);
    let sum: f64 = pcm.iter().map(|&s| (s as f64) * (s as f64)).sum();
    (sum / pcm.len().max(1) as f64).sqrt()
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A copy of the echo scenario with the audio file and payload type filled in (SIPp does not
/// substitute keys inside rtp_stream), written next to `audio`.
pub fn echo_scenario(audio: &std::path::Path, pt: u8) -> std::path::PathBuf {
    let template = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/sipp/uac_echo.xml"
    ))
    .expect("scenario fixture");
    let text = template
        .replace("@AUDIO@", &audio.display().to_string())
        .replace("@PT@", &pt.to_string());
    let path = audio.with_extension("xml");
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// A fresh directory of this test process for `tag`'s files.
pub fn temp_dir(tag: &str) -> std::path::PathBuf {
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sipbridge-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `scripts/NAME ARGS`, one of the scripts that install a Python tool from PyPI into
/// target/ on first use (Hume's SDK check, SIPVicious), bounded in time; (success, stdout +
/// stderr). Their exit code 3 means python3, venv or pip is missing: a failure with
/// instructions, never a skip.
pub fn python_script(name: &str, args: &[&str]) -> (bool, String) {
    let script = format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("timeout")
        .args(["300", "bash", &script])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(
        out.status.code(),
        Some(3),
        "scripts/{name} needs python3 with venv and pip \
         (Debian: apt-get install python3 python3-venv python3-pip; scripts/test installs them):\n{text}"
    );
    (out.status.success(), text)
}

/// A GET on the gateway's admin API at `addr`; the JSON body.
pub async fn admin_get(addr: SocketAddr, path: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("admin API");
    let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tcp.read_to_end(&mut resp),
    )
    .await
    .expect("admin API answers")
    .unwrap();
    let text = String::from_utf8_lossy(&resp);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The value of one series (`name` or `name{labels}` exactly as exposed) in a scrape.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.parse().ok()).flatten()
    })
}
