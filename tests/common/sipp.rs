//! SIPp (Debian's sip-tester) as a caller: a scenario from fixtures/sipp run against a target
//! on loopback, bounded in time, and its output explained when it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::free_udp_port;

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/sipp")
        .join(name)
}

pub struct Sipp {
    args: Vec<String>,
}

impl Sipp {
    pub fn new(target: std::net::SocketAddr, scenario: &Path) -> Sipp {
        let args = [
            target.to_string(),
            "-sf".into(),
            scenario.display().to_string(),
            "-s".into(),
            "+447846855904".into(),
            "-i".into(),
            "127.0.0.1".into(),
            "-p".into(),
            free_udp_port().to_string(),
            "-mp".into(),
            free_udp_port().to_string(),
            "-nostdin".into(),
            "-timeout".into(),
            "60s".into(),
            "-timeout_error".into(),
            "-recv_timeout".into(),
            "10s".into(),
        ]
        .into_iter()
        .collect();
        Sipp { args }
    }

    pub fn arg(mut self, k: &str, v: impl ToString) -> Sipp {
        self.args.push(k.into());
        self.args.push(v.to_string());
        self
    }

    pub fn key(self, k: &str, v: impl ToString) -> Sipp {
        self.arg("-key", k).arg_raw(v.to_string())
    }

    pub fn arg_raw(mut self, v: String) -> Sipp {
        self.args.push(v);
        self
    }

    pub async fn run(self) -> Output {
        let args = self.args.clone();
        tokio::task::spawn_blocking(move || {
            Command::new("sipp")
                .args(&args)
                .stdin(Stdio::null())
                .output()
                .expect("sipp not found: the test command installs Debian's sip-tester")
        })
        .await
        .expect("sipp thread")
    }
}

pub fn explain(out: &Output) -> String {
    format!(
        "sipp exit {:?}\nstdout (tail):\n{}\nstderr:\n{}",
        out.status.code(),
        tail(&String::from_utf8_lossy(&out.stdout), 40),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
