//! The command line as a user meets it: check-config's answers and exit codes, and the README's
//! first command (`sipbridge run` with no config) answering a real call.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sipbridge"))
}

fn write_temp(name: &str, text: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("sipbridge-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_config_accepts_a_good_file() {
    let p = write_temp("good.toml", "[sip]\nlisten = \"127.0.0.1:5070\"\n");
    let out = bin().arg("check-config").arg(&p).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    let _ = std::fs::remove_file(p);
}

#[test]
fn check_config_names_every_bad_key_with_its_line() {
    let p = write_temp(
        "bad.toml",
        "[sip]\nlisten = \"not an address\"\n[media]\nrtp_ports = \"9-8\"\n",
    );
    let out = bin().arg("check-config").arg(&p).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2:10: sip.listen:"), "{err}");
    assert!(err.contains(":4:13: media.rtp_ports:"), "{err}");
    let _ = std::fs::remove_file(p);
}

#[test]
fn check_config_reports_a_missing_secret_and_unknown_keys() {
    let p = write_temp(
        "secret.toml",
        "[[trunks]]\nusername = \"u\"\npassword_env = \"SIPBRIDGE_TEST_UNSET_VAR\"\nbogus = 1\n",
    );
    let out = bin()
        .arg("check-config")
        .arg(&p)
        .env_remove("SIPBRIDGE_TEST_UNSET_VAR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus"), "{err}");
    let _ = std::fs::remove_file(p);
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The README's first command, as a newcomer runs it: no config, the demo password printed,
/// and a call from SIPp with those credentials answered by the echo agent.
#[test]
fn run_with_the_embedded_default_answers_a_sipp_call() {
    let mut child = Running(
        bin()
            .arg("run")
            .env_remove("SIPBRIDGE_CONFIG")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut user = None;
    let mut password = None;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref().take(20) {
        let line = line.unwrap();
        if let Some(u) = line.trim().strip_prefix("digest user") {
            user = Some(u.trim().to_string());
        }
        if let Some(p) = line.trim().strip_prefix("password") {
            password = Some(p.trim().to_string());
        }
        if line.contains("Try it") {
            break;
        }
    }
    // Keep reading stdout so the child never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let (user, password) = (
        user.expect("user printed"),
        password.expect("password printed"),
    );
    assert!(password.len() >= 16);

    // Ready once it logs that SIP is listening; the rest of the log is drained so the child
    // never blocks on a full pipe.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let stderr = child.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("SIP listening") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("gateway never said it was listening");

    let audio = std::env::temp_dir().join(format!("sipbridge-cli-{}-tone.raw", std::process::id()));
    std::fs::write(&audio, common::tone(sipbridge::codec::g711::Law::Mu, 1.0)).unwrap();
    let sink = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink_port = sink.local_addr().unwrap().port().to_string();
    let out = Command::new("sipp")
        .arg("127.0.0.1:5060")
        .arg("-sf")
        .arg(common::echo_scenario(&audio, 0))
        .args([
            "-s",
            "+447846855904",
            "-i",
            "127.0.0.1",
            "-m",
            "1",
            "-d",
            "1000",
        ])
        .args(["-p", &common::free_udp_port().to_string()])
        .args(["-mp", &common::free_udp_port().to_string()])
        .args(["-au", &user, "-ap", &password, "-nostdin"])
        .args(["-timeout", "30s", "-timeout_error", "-recv_timeout", "5s"])
        .args(["-key", "rtp_port", &sink_port, "-key", "codecs", "0 101"])
        .stdin(Stdio::null())
        .output()
        .expect("sipp not found: the test command installs Debian's sip-tester");
    let _ = std::fs::remove_file(&audio);
    assert!(
        out.status.success(),
        "no successful call to the embedded default:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    sink.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        sink.recv_from(&mut buf).is_ok(),
        "no echoed RTP reached the caller"
    );
}
