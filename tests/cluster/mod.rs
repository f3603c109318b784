//! The pieces of the Kamailio cluster test: the shipped deploy/kamailio/kamailio.cfg run as a
//! child process with -A overrides, sipbridge nodes on their own loopback addresses, the
//! project's caller (`sipbridge load`) as a child writing its JSON report, and a few raw SIP
//! exchanges. Every child is killed by its PID (Kamailio by its process group) when dropped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::common::raw_sip::*;
use crate::common::{metric, rtp_range, PASSWORD, USER};
use crate::ops_support::{get, poll, Gateway};

/// How many of `poll`'s 50 ms tries fit in `within`.
fn tries(within: Duration) -> u32 {
    u32::try_from(within.as_millis() / 50).unwrap_or(u32::MAX)
}

/// The environment variable that holds the nodes' shared digest nonce secret.
pub const SECRET_VAR: &str = "SIPBRIDGE_CLUSTER_NONCE_SECRET";
pub const SECRET: &str = "cluster-test-nonce-secret-0123456789abcdef";
/// Seconds between the proxy's OPTIONS probes of each node.
pub const PROBE_SECS: u64 = 1;

/// A child process killed (SIGKILL, by PID) and reaped when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Kamailio

pub struct Kamailio {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    ctl: String,
    log: PathBuf,
}

impl Kamailio {
    /// Runs deploy/kamailio/kamailio.cfg itself, in the foreground, logging to a file, with
    /// `nodes` as dispatcher set 1 and 127.0.0.1 as the only extra trusted source.
    pub fn start(dir: &Path, nodes: &[SocketAddr]) -> Kamailio {
        let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/kamailio/kamailio.cfg");
        let list = dir.join("dispatcher.list");
        let text: String = nodes.iter().map(|n| format!("1 sip:{n}\n")).collect();
        std::fs::write(&list, text).unwrap();
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let port = crate::common::free_udp_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let ctl = format!("unix:{}", run.join("ctl").display());
        let log = dir.join("kamailio.log");
        let defines = [
            format!("LB_LISTEN=udp:{addr}"),
            format!("LB_DISPATCHER_LIST=\"{}\"", list.display()),
            format!("LB_PROBE_INTERVAL={PROBE_SECS}"),
            // The test's callers all use 127.0.0.1; the flood case comes from elsewhere.
            "LB_TRUSTED_NETS=\"127.0.0.1/32\"".to_string(),
            "LB_CHILDREN=2".to_string(),
            // A call stuck after 100 Trying on a killed node ends within the test's bounds.
            "LB_ANSWER_TIMEOUT_MS=10000".to_string(),
            format!("LB_CTL=\"{ctl}\""),
        ];
        let mut cmd = Command::new("kamailio");
        cmd.arg("-f").arg(cfg);
        for d in &defines {
            cmd.arg("-A").arg(d);
        }
        cmd.args(["-DD", "-E", "-m", "32", "-M", "4", "-w"])
            .arg(dir)
            .arg("-P")
            .arg(run.join("kamailio.pid"))
            .arg("-Y")
            .arg(&run)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            // Its own process group: the workers go with it on drop.
            .process_group(0);
        let child = cmd
            .spawn()
            .expect("kamailio not found: the test command installs Debian's kamailio");
        Kamailio {
            child,
            addr,
            dir: dir.to_path_buf(),
            ctl,
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kamcmd(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("kamcmd")
            .arg("-s")
            .arg(&self.ctl)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every statistic (`core:rcv_requests_ack` and so on) and its value.
    pub fn stats(&self) -> HashMap<String, i64> {
        let text = self
            .kamcmd(&["stats.get_statistics", "all"])
            .unwrap_or_else(|| panic!("kamcmd stats failed\n{}", self.log()));
        text.lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(" = ")?;
                Some((k.trim().to_string(), v.trim().parse().ok()?))
            })
            .collect()
    }

    /// The dispatcher's view: each node's `host:port` and its flags ("AP" active and probed,
    /// "IP" inactive and probed, ...). Empty while the control socket is not up.
    pub fn nodes(&self) -> Vec<(String, String)> {
        let Some(text) = self.kamcmd(&["dispatcher.list"]) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut uri = None;
        for line in text.lines().map(str::trim) {
            if let Some(u) = line.strip_prefix("URI: sip:") {
                uri = Some(u.to_string());
            } else if let Some(f) = line.strip_prefix("FLAGS: ") {
                if let Some(u) = uri.take() {
                    out.push((u, f.to_string()));
                }
            }
        }
        out
    }

    pub fn flags(&self, node: SocketAddr) -> Option<String> {
        let node = node.to_string();
        self.nodes()
            .into_iter()
            .find_map(|(u, f)| (u == node).then_some(f))
    }

    /// Waits (bounded) until the dispatcher holds `node` in a state whose flags start with
    /// `state` ("I" inactive, "AP" active and probed).
    pub async fn wait_node(&self, node: SocketAddr, state: &str, within: Duration) -> bool {
        let flags = poll(
            tries(within),
            async || self.flags(node),
            |f| f.as_deref().is_some_and(|f| f.starts_with(state)),
        )
        .await;
        flags.is_some_and(|f| f.starts_with(state))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM to the whole process group (the main process and its workers), SIGKILL to
        // whatever is left after a short wait; both before the main process is reaped, so its
        // PID (the group's id) cannot have been reused.
        let group = format!("-{}", self.child.id());
        let signal = |sig: &str| {
            let _ = Command::new("kill")
                .args([sig, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let stat = format!("/proc/{}/stat", self.child.id());
        let end = Instant::now() + Duration::from_secs(3);
        // Polled without reaping (a zombie's state is Z); the status is collected below.
        while Instant::now() < end
            && std::fs::read_to_string(&stat)
                .is_ok_and(|s| s.split_whitespace().nth(2) != Some("Z"))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal("-KILL");
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Nodes

/// One sipbridge node on its own loopback address; `restart` brings it back on the same
/// SIP, HTTP and RTP ports.
pub struct Node {
    pub name: &'static str,
    pub gw: Option<Gateway>,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    config: PathBuf,
    shared_secret: bool,
}

fn node_config(ip: &str, sip_port: u16, http_port: u16, rtp: (u16, u16), secret: bool) -> String {
    let (lo, hi) = rtp;
    let secret = if secret {
        format!("nonce_secret_env = \"{SECRET_VAR}\"\n")
    } else {
        String::new()
    };
    format!(
        "shutdown_grace_secs = 30\n\
         [sip]\nlisten = \"{ip}:{sip_port}\"\n{secret}\
         [media]\nrtp_ports = \"{lo}-{hi}\"\nmedia_timeout_secs = 5\ninitial_media_timeout_secs = 2\n\
         [http]\nlisten = \"{ip}:{http_port}\"\n\
         [[trunks]]\nname = \"twilio\"\nusername = \"{USER}\"\npassword = \"{PASSWORD}\"\n\
         allowed_addresses = [\"127.0.0.1/32\"]\n"
    )
}

impl Node {
    /// Starts a node on `ip` (ports picked by the system, then pinned in its config file for
    /// restarts), with or without the shared nonce secret.
    pub async fn start(name: &'static str, ip: &str, dir: &Path, shared_secret: bool) -> Node {
        let config = dir.join(format!("{name}.toml"));
        let rtp = rtp_range();
        std::fs::write(&config, node_config(ip, 0, 0, rtp, shared_secret)).unwrap();
        let mut node = Node {
            name,
            gw: None,
            sip: SocketAddr::from(([0, 0, 0, 0], 0)),
            http: SocketAddr::from(([0, 0, 0, 0], 0)),
            config,
            shared_secret,
        };
        node.spawn().await;
        // The same ports from now on.
        std::fs::write(
            &node.config,
            node_config(ip, node.sip.port(), node.http.port(), rtp, shared_secret),
        )
        .unwrap();
        node
    }

    async fn spawn(&mut self) {
        let env: &[(&str, &str)] = if self.shared_secret {
            &[(SECRET_VAR, SECRET)]
        } else {
            &[]
        };
        let gw = Gateway::spawn(&self.config, env).await;
        self.sip = gw.sip;
        self.http = gw.http;
        self.gw = Some(gw);
    }

    pub async fn restart(&mut self) {
        assert!(self.gw.is_none(), "{} is still running", self.name);
        let (sip, http) = (self.sip, self.http);
        self.spawn().await;
        assert_eq!((self.sip, self.http), (sip, http), "{} moved", self.name);
    }

    pub fn gw(&self) -> &Gateway {
        self.gw.as_ref().expect("node running")
    }

    pub async fn metrics(&self) -> String {
        get(self.http, "/metrics").await.body
    }

    /// New calls this node answered with 200.
    pub async fn answered(&self) -> f64 {
        metric(
            &self.metrics().await,
            "sipbridge_invite_responses_total{code=\"200\"}",
        )
        .unwrap_or(0.0)
    }

    pub async fn active_calls(&self) -> f64 {
        metric(&self.metrics().await, "sipbridge_active_calls").unwrap_or(0.0)
    }

    /// Polls /healthz until 200 (bounded).
    pub async fn wait_healthy(&self) {
        let http = self.http;
        let status = poll(
            100,
            async || get(http, "/healthz").await.status,
            |s| *s == 200,
        )
        .await;
        assert_eq!(status, 200, "{} never became healthy", self.name);
    }

    /// Waits (bounded) until the node holds a call.
    pub async fn wait_active(&self, within: Duration) -> bool {
        poll(
            tries(within),
            async || self.active_calls().await,
            |n| *n >= 1.0,
        )
        .await
            >= 1.0
    }

    pub fn log(&self) -> String {
        self.gw
            .as_ref()
            .map(|g| g.lines().join("\n"))
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// The caller: `sipbridge load` through the proxy

pub struct Load {
    proc: Proc,
    json: PathBuf,
    pub started: Instant,
}

impl Load {
    /// Starts `sipbridge load` against `target`; `duration` is each call's hold time.
    pub fn start(target: SocketAddr, dir: &Path, calls: u32, rate: f64, duration: f64) -> Load {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let json = dir.join(format!("load-{}.json", N.fetch_add(1, Ordering::Relaxed)));
        let child = Command::new(env!("CARGO_BIN_EXE_sipbridge"))
            .args(["load", "--target", &target.to_string()])
            .args(["--username", USER, "--password", PASSWORD])
            .args(["--calls", &calls.to_string(), "--rate", &rate.to_string()])
            .args(["--duration", &duration.to_string()])
            .arg("--json")
            .arg(&json)
            .env_remove("SIPBRIDGE_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sipbridge load");
        Load {
            proc: Proc(child),
            json,
            started: Instant::now(),
        }
    }

    /// Waits (bounded) for the run to end and returns its JSON report.
    pub async fn finish(mut self, within: Duration) -> serde_json::Value {
        let end = Instant::now() + within;
        while self.proc.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < end, "sipbridge load did not finish");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = std::fs::read_to_string(&self.json).expect("load wrote no JSON report");
        serde_json::from_str(&text).expect("load report is JSON")
    }
}

/// The summary line a failed assertion prints: counts, outcomes and failures.
pub fn summary(report: &serde_json::Value) -> String {
    let s = &report["summary"];
    format!(
        "attempted {} completed {} failed {} outcomes {} failures {}",
        s["attempted"], s["completed"], s["failed"], s["outcomes"], s["failures"]
    )
}

/// Prints a run's call setup times (INVITE to 200, through the proxy) for `phase`: with
/// `--nocapture`, the figures docs/scaling.md quotes (the failover delay shows in the max).
pub fn print_setup(phase: &str, report: &serde_json::Value) {
    let s = &report["summary"]["setup_ms"];
    let ms = |k: &str| s[k].as_f64().map_or("-".into(), |v| format!("{v:.1}"));
    eprintln!(
        "{phase}: {} calls completed, setup ms p50 {} p95 {} max {}",
        count(report, "completed"),
        ms("p50"),
        ms("p95"),
        ms("max")
    );
}

pub fn count(report: &serde_json::Value, field: &str) -> u64 {
    report["summary"][field].as_u64().unwrap_or(0)
}
