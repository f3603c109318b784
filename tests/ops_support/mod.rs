//! Shared pieces of the operations tests: a small HTTP/1.1 client, metric lookups, configs
//! with an admin HTTP port, and a call placed by the project's own UAC.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// One HTTP/1.1 request (Connection: close) and its whole answer.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .expect("connect timeout")
        .expect("connect to admin HTTP");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw))
        .await
        .expect("HTTP answer timeout")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    let (_, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    // Chunked bodies (axum streams some): join the chunks.
    let body = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Resp {
        status,
        headers: headers.replace("\r\n", "\n"),
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub async fn get(addr: SocketAddr, path: &str) -> Resp {
    http(addr, "GET", path, &[], b"").await
}

/// Every line of a scrape is a HELP, a TYPE (before its samples) or a `series value` sample.
pub fn assert_exposition(text: &str) {
    let mut typed = std::collections::HashSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            typed.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(
            value.parse::<f64>().is_ok() || value == "+Inf",
            "bad value: {line}"
        );
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("sipbridge_"), "unprefixed: {line}");
        let family_typed = typed.contains(name)
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|s| name.strip_suffix(s).is_some_and(|f| typed.contains(f)));
        assert!(family_typed, "sample before its TYPE: {line}");
    }
}

/// Percent-encodes a path segment.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Polls `check` every 50 ms, at most `tries` times; the last value if it never held.
pub async fn poll<T>(tries: u32, mut f: impl AsyncFnMut() -> T, check: impl Fn(&T) -> bool) -> T {
    let mut v = f().await;
    for _ in 0..tries {
        if check(&v) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        v = f().await;
    }
    v
}

/// Places `calls` calls held `secs` each with the project's UAC, from a blocking thread.
pub fn place_calls(
    target: SocketAddr,
    calls: u32,
    secs: f64,
    user: &str,
    password: &str,
) -> tokio::task::JoinHandle<sipbridge::load::Report> {
    let args = sipbridge::load::LoadArgs {
        target: target.to_string(),
        calls,
        rate: 10.0,
        duration: Duration::from_secs_f64(secs),
        username: Some(user.into()),
        password: Some(password.into()),
        progress: false,
        ..Default::default()
    };
    tokio::task::spawn_blocking(move || sipbridge::load::run(args).expect("load harness runs"))
}

/// The gateway binary as a child process, its log lines (JSON) collected as they come.
pub struct Gateway {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pub sip: SocketAddr,
    pub http: SocketAddr,
}

impl Gateway {
    /// Runs `sipbridge --log-format json run --config <config>` with `env` and waits until
    /// SIP and HTTP are listening.
    pub async fn spawn(config: &std::path::Path, env: &[(&str, &str)]) -> Gateway {
        Gateway::spawn_with(&["--log-format", "json", "run", "--config"], config, env).await
    }

    pub async fn spawn_with(
        args: &[&str],
        config: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Gateway {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sipbridge"));
        cmd.args(args)
            .arg(config)
            .env_remove("SIPBRIDGE_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sipbridge");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for l in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    lines.lock().unwrap().push(l);
                }
            });
        }
        let mut g = Gateway {
            child,
            lines,
            sip: SocketAddr::from(([0, 0, 0, 0], 0)),
            http: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        // JSON lines carry the address in "fields"; text lines as `name=value` (colours, if
        // any, stripped).
        let field = |g: &Gateway, name: &str| -> Option<SocketAddr> {
            g.lines().iter().find_map(|l| {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                    return v["fields"][name].as_str()?.parse().ok();
                }
                let plain = strip_ansi(l);
                let rest = plain.split(&format!("{name}=")).nth(1)?;
                rest.split_whitespace().next()?.parse().ok()
            })
        };
        for _ in 0..400 {
            if let (Some(s), Some(h)) = (field(&g, "sip_addr"), field(&g, "http_addr")) {
                g.sip = s;
                g.http = h;
                return g;
            }
            if let Ok(Some(status)) = g.child.try_wait() {
                panic!("gateway exited {status}:\n{}", g.lines().join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway never listened:\n{}", g.lines().join("\n"));
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (bounded) for a log line containing `text`.
    pub async fn wait_log(&self, text: &str) -> bool {
        for _ in 0..400 {
            if self.lines().iter().any(|l| l.contains(text)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// Waits (bounded, 30 s) for the process to exit.
    pub async fn wait_exit(&mut self) -> std::process::ExitStatus {
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway did not exit:\n{}", self.lines().join("\n"));
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file in a fresh per-process temp dir.
pub fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let p = crate::common::temp_dir("ops").join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Sends one INVITE without credentials from a fresh socket and returns the final response's
/// text (provisional ones skipped).
pub async fn raw_invite(target: SocketAddr, tag: &str) -> String {
    raw_request(target, "INVITE", tag).await
}

/// An out-of-dialog request with no body (INVITE, OPTIONS...) and its final answer.
pub async fn raw_request(target: SocketAddr, method: &str, tag: &str) -> String {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = sock.local_addr().unwrap();
    let msg = format!(
        "{method} sip:+447846855904@{target} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {local};branch=z9hG4bK-ops-{tag};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:+15551230000@sip.twilio.com>;tag={tag}\r\n\
         To: <sip:+447846855904@{target}>\r\n\
         Call-ID: ops-{tag}@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Contact: <sip:+15551230000@{local}>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    sock.send_to(msg.as_bytes(), target).await.unwrap();
    let mut buf = vec![0u8; 65536];
    for _ in 0..10 {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("no SIP response")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            return text;
        }
    }
    panic!("no final response");
}

/// A gateway config for a child process: SIP and HTTP on loopback port 0.
pub fn child_config(rtp: (u16, u16), grace_secs: u64, trunk_password_line: &str) -> String {
    format!(
        "shutdown_grace_secs = {grace_secs}\n\
         [sip]\nlisten = \"127.0.0.1:0\"\n\
         [media]\nrtp_ports = \"{}-{}\"\nmedia_timeout_secs = 5\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\
         [[trunks]]\nname = \"twilio\"\nusername = \"ai-voice-agent\"\n{trunk_password_line}\n\
         allowed_addresses = [\"127.0.0.0/8\"]\n",
        rtp.0, rtp.1
    )
}

/// Removes ANSI colour sequences (`ESC [ ... m`).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A child gateway on loopback whose one digest trunk is open to any address, so every source
/// but its own is a stranger to the per-source limits; `limits` is the `[limits]` table's body.
pub async fn open_trunk_gateway(limits: &str) -> Gateway {
    let (lo, hi) = crate::common::rtp_range();
    let (user, password) = (crate::common::USER, crate::common::PASSWORD);
    let config = temp_file(
        "open.toml",
        &format!(
            "[sip]\nlisten = \"127.0.0.1:0\"\n[media]\nrtp_ports = \"{lo}-{hi}\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[limits]\n{limits}\n\
             [[trunks]]\nname = \"dial\"\nusername = \"{user}\"\npassword = \"{password}\"\n"
        ),
    );
    Gateway::spawn(&config, &[]).await
}
