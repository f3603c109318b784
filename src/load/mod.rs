//! The load-test harness (`sipbridge load`): a UAC that places calls exactly as Twilio does,
//! streams G.711 both ways, and reports setup time, loss, jitter, round-trip audio latency,
//! whether the audio came back intact, and an E-model MOS.
//!
//! Built to drive thousands of concurrent calls from one core: one task on a current-thread
//! runtime, one SIP socket, one RTP socket per call (each call needs its own SDP port so its
//! echo can be told apart), and a 2 ms tick that sends each call's next frame once per 20 ms
//! and reads every echo that came, timed by the kernel's receive stamp. The per-call SIP logic
//! is the sans-IO [`uac::Uac`]; the per-call RTP logic is the sans-IO [`media::CallMedia`].

mod driver;
pub mod impair;
pub mod media;
pub mod progress;
pub mod report;
pub mod signal;
pub mod uac;

use std::future::Future;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::codec::g711::Law;
use crate::codec::wav::{self, WavError};
pub use report::Report;

/// Everything `sipbridge load` takes.
#[derive(Clone, Debug)]
pub struct LoadArgs {
    /// `HOST:PORT` of the gateway.
    pub target: String,
    /// Calls to place (each once); at `rate` they overlap up to this many.
    pub calls: u32,
    /// New calls per second.
    pub rate: f64,
    /// How long each answered call is held before BYE.
    pub duration: Duration,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The codec offered first (both are offered).
    pub codec: Law,
    /// A WAV file to play (8 kHz mono PCM16 or G.711); the built-in signal otherwise.
    pub audio: Option<PathBuf>,
    /// Where to write the JSON report.
    pub json: Option<PathBuf>,
    /// Loss (percent of the returned packets) at or above which the run fails.
    pub max_loss_pct: f64,
    /// Draw the progress line (on stderr, when it is a terminal).
    pub progress: bool,
    /// The network between caller and gateway, each direction of SIP and of every call's RTP
    /// (see [`impair`]); `None` for a clear link.
    pub impair_sip: Option<impair::ImpairSpec>,
    pub impair_rtp: Option<impair::ImpairSpec>,
    /// Seeds the impairment (and the built-in audio), so a run can be replayed; random when
    /// `None`.
    pub seed: Option<u64>,
    /// The number dialled (Request-URI and To user): it picks the gateway's route.
    pub called: String,
    /// Offer SRTP (SDES) and encrypt the media; not with `impair_rtp`, whose accounting reads
    /// the payloads it drops.
    pub srtp: bool,
}

/// The number `sipbridge load` dials unless told otherwise (Ofcom's drama range).
pub const DEFAULT_CALLED: &str = "+447846855904";

impl Default for LoadArgs {
    fn default() -> Self {
        LoadArgs {
            target: "127.0.0.1:5060".into(),
            calls: 10,
            rate: 5.0,
            duration: Duration::from_secs(10),
            username: None,
            password: None,
            codec: Law::Mu,
            audio: None,
            json: None,
            max_loss_pct: 1.0,
            impair_sip: None,
            impair_rtp: None,
            srtp: false,
            seed: None,
            called: DEFAULT_CALLED.into(),
            progress: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("target {target:?}: {reason}")]
    Target { target: String, reason: String },
    #[error("{0}")]
    Args(String),
    #[error("--audio: {0}")]
    Audio(WavError),
    #[error("{what}: {error}")]
    Io { what: String, error: std::io::Error },
}

// The message already carries the cause; no `#[from]`, which would print it twice in a chain.
impl From<WavError> for LoadError {
    fn from(e: WavError) -> Self {
        LoadError::Audio(e)
    }
}

/// Runs a load test to the end on a current-thread runtime of its own; Ctrl-C ends every call
/// cleanly (BYE, or CANCEL while ringing) with a bounded wait, and still returns the report.
/// Call it from outside any runtime (for instance from `spawn_blocking`).
pub fn run(args: LoadArgs) -> Result<Report, LoadError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| LoadError::Io {
            what: "starting the runtime".into(),
            error,
        })?;
    runtime.block_on(run_until(args, async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handling here: never stop early.
            std::future::pending::<()>().await;
        }
    }))
}

/// As [`run`], inside the caller's runtime, stopping early when `stop` completes. Meant for a
/// current-thread runtime: the harness is one task and never needs another thread.
pub async fn run_until(
    args: LoadArgs,
    stop: impl Future<Output = ()>,
) -> Result<Report, LoadError> {
    let plan = Plan::new(&args)?;
    let report = driver::Driver::start(plan).await?.run(stop).await;
    if let Some(path) = &args.json {
        std::fs::write(path, report.to_json()).map_err(|error| LoadError::Io {
            what: format!("writing {}", path.display()),
            error,
        })?;
    }
    Ok(report)
}

/// Validated arguments plus what was derived from them.
struct Plan {
    args: LoadArgs,
    target: SocketAddr,
    local_ip: IpAddr,
    program: signal::Program,
    seed: u64,
}

impl Plan {
    fn new(args: &LoadArgs) -> Result<Plan, LoadError> {
        if args.calls == 0 {
            return Err(LoadError::Args("--calls must be at least 1".into()));
        }
        if !(args.rate.is_finite() && args.rate > 0.0) {
            return Err(LoadError::Args("--rate must be a positive number".into()));
        }
        if !(args.max_loss_pct.is_finite() && args.max_loss_pct >= 0.0) {
            return Err(LoadError::Args("--max-loss must be a percentage".into()));
        }
        // It goes into the Request-URI unescaped: keep to what a URI user part takes as is.
        let dialable = |c: char| c.is_ascii_alphanumeric() || "+-_.".contains(c);
        if args.called.is_empty() || !args.called.chars().all(dialable) {
            return Err(LoadError::Args(format!(
                "--called {:?}: a number or name of letters, digits and + - _ .",
                args.called
            )));
        }
        if args.srtp && args.impair_rtp.is_some() {
            return Err(LoadError::Args(
                "--srtp and --impair-rtp do not go together".into(),
            ));
        }
        if args.username.is_some() != args.password.is_some() {
            return Err(LoadError::Args(
                "--username and --password go together".into(),
            ));
        }
        let target = args
            .target
            .to_socket_addrs()
            .map_err(|e| LoadError::Target {
                target: args.target.clone(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| LoadError::Target {
                target: args.target.clone(),
                reason: "no address".into(),
            })?;
        let local_ip = local_ip_towards(target).map_err(|error| LoadError::Io {
            what: format!("finding the local address towards {target}"),
            error,
        })?;
        let seed: u64 = args.seed.unwrap_or_else(rand::random);
        let program = match &args.audio {
            Some(path) => signal::Program::from_wav(wav::read_file(path)?),
            None => signal::Program::builtin(seed),
        };
        Ok(Plan {
            args: args.clone(),
            target,
            local_ip,
            program,
            seed,
        })
    }
}

/// The address the kernel would send from to reach `target` (a connected UDP socket sends
/// nothing): what goes into Via, Contact and SDP.
fn local_ip_towards(target: SocketAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = std::net::UdpSocket::bind(any)?;
    s.connect(target)?;
    Ok(s.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(f: impl FnOnce(&mut LoadArgs)) -> Result<Plan, LoadError> {
        let mut a = LoadArgs::default();
        f(&mut a);
        Plan::new(&a)
    }

    #[test]
    fn arguments_are_checked() {
        fn err(f: impl FnOnce(&mut LoadArgs)) -> String {
            plan(f).err().map(|e| e.to_string()).unwrap_or_default()
        }
        assert!(err(|a| a.calls = 0).contains("--calls"));
        assert!(err(|a| a.rate = 0.0).contains("--rate"));
        assert!(err(|a| a.rate = f64::NAN).contains("--rate"));
        assert!(err(|a| a.username = Some("u".into())).contains("together"));
        assert!(err(|a| a.target = "nowhere".into()).contains("nowhere"));
        assert!(err(|a| a.audio = Some("/nonexistent.wav".into())).contains("/nonexistent.wav"));
        let p = plan(|_| {}).unwrap();
        assert_eq!(
            p.target,
            "127.0.0.1:5060".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(p.local_ip, IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn unsupported_audio_file_is_a_clear_error() {
        let path = std::env::temp_dir().join(format!("sipbridge-load-{}.wav", std::process::id()));
        std::fs::write(&path, wav::write_pcm16(44100, &[0; 100])).unwrap();
        let e = plan(|a| a.audio = Some(path.clone()))
            .err()
            .unwrap()
            .to_string();
        let _ = std::fs::remove_file(&path);
        assert!(e.contains("44100 Hz") && e.contains("8 kHz mono"), "{e}");
    }
}
