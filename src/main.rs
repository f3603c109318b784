//! The `sipbridge` command: run the gateway, check a configuration file, or load-test a
//! gateway.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, Signal, SignalKind};

use sipbridge::call::{Gateway, Monitor};
use sipbridge::codec::g711::Law;
use sipbridge::config::{self, Config};
use sipbridge::load::impair::ImpairSpec;
use sipbridge::load::LoadArgs;

#[derive(Parser)]
#[command(
    name = "sipbridge",
    version,
    about = "SIP gateway between Twilio calls and voice AI agents"
)]
struct Cli {
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (with no config: the embedded default, every call answered by the echo agent).
    Run {
        /// Configuration file (TOML).
        #[arg(long, env = "SIPBRIDGE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file: exit 0, or print each problem with its line and exit 1.
    CheckConfig { file: PathBuf },
    /// Place calls as Twilio does and report setup time, loss, jitter, audio round trip and
    /// MOS; exit 0 only when every call completed and loss stayed under --max-loss.
    Load(Box<LoadCli>),
}

#[derive(clap::Args)]
struct LoadCli {
    /// The gateway's SIP address.
    #[arg(long, value_name = "HOST:PORT")]
    target: String,
    /// Calls to place; at --rate with --duration they overlap up to this many.
    #[arg(long, value_name = "N", default_value_t = 10)]
    calls: u32,
    /// New calls per second.
    #[arg(long, value_name = "CPS", default_value_t = 5.0)]
    rate: f64,
    /// Seconds each answered call is held before BYE; 0 measures call setup only (BYE right
    /// after the ACK, no media required).
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    duration: f64,
    /// Digest username (with --password).
    #[arg(long, value_name = "U", requires = "password")]
    username: Option<String>,
    /// Digest password (with --username).
    #[arg(long, value_name = "P", requires = "username")]
    password: Option<String>,
    /// The codec offered first (both are offered, as Twilio does).
    #[arg(long, value_enum, default_value_t = CodecArg::Pcmu)]
    codec: CodecArg,
    /// Audio to play: an 8 kHz mono WAV (16-bit PCM, A-law or mu-law); default a built-in
    /// speech-like signal.
    #[arg(long, value_name = "FILE.wav")]
    audio: Option<PathBuf>,
    /// Write every figure (summary and per-call records) as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Fail the run when the returned RTP loss reaches this percentage.
    #[arg(long = "max-loss", value_name = "PCT", default_value_t = 1.0)]
    max_loss: f64,
    /// Impair the SIP link, each direction: e.g. "loss=10%" (keys: loss, burst, delay,
    /// jitter, reorder, reorder_by, dup).
    #[arg(long, value_name = "SPEC", value_parser = parse_impair)]
    impair_sip: Option<ImpairSpec>,
    /// Impair every call's RTP, each direction: e.g. "loss=5%,jitter=40ms,reorder=2%,dup=1%".
    #[arg(long, value_name = "SPEC", value_parser = parse_impair)]
    impair_rtp: Option<ImpairSpec>,
    /// Seed for the impairment and the built-in audio, to replay a run exactly.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// The number every call dials (the Request-URI and To user), which picks the gateway's
    /// route and so its agent.
    #[arg(long, value_name = "NUMBER", default_value = sipbridge::load::DEFAULT_CALLED)]
    called: String,
    /// Offer SRTP (RTP/SAVP with an SDES key, as Twilio's Secure Trunking does) and encrypt
    /// every call's media. The signalling stays UDP: the gateway needs
    /// media.sdes_without_tls = true to take the key.
    #[arg(long, conflicts_with = "impair_rtp")]
    srtp: bool,
}

fn parse_impair(s: &str) -> Result<ImpairSpec, String> {
    ImpairSpec::parse(s).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, ValueEnum)]
enum CodecArg {
    Pcmu,
    Pcma,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::CheckConfig { file } => match config::load_file(&file, &env_var) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Load(args) => match load(args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("sipbridge load: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Run { config } => match run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("sipbridge: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn init_logging(format: LogFormat) {
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    // The WebRTC stack's ICE agent warns twice on every LiveKit call that it has no candidate
    // pair yet (it pings before a remote candidate is known): two false alarms per call. Quiet
    // it unless RUST_LOG names it.
    let spec = if spec.contains("rtc_ice") {
        spec
    } else {
        format!("{spec},rtc_ice::agent=error")
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|e| {
        eprintln!("RUST_LOG={spec:?}: {e}; logging at info");
        tracing_subscriber::EnvFilter::new("info,rtc_ice::agent=error")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = match &path {
        Some(p) => config::load_file(p, &env_var).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => {
            let c = config::embedded_default();
            print_demo_banner(&c);
            c
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        // Before anything binds: a SIGTERM from now on drains instead of killing.
        let mut signals = Signals::new().context("installing signal handlers")?;
        let gateway = Gateway::start(&config).await.with_context(|| {
            format!(
                "starting on SIP {} / HTTP {}",
                config.sip.listen, config.http.listen
            )
        })?;
        notify(&[NotifyState::Ready]);
        let monitor = gateway.monitor();
        tokio::spawn(status_line(monitor.clone()));
        if let Some(every) = sd_notify::watchdog_enabled() {
            tokio::spawn(watchdog(monitor, every));
        }
        loop {
            match signals.next().await {
                Sig::Stop => break,
                Sig::Reload => reload(&gateway, path.as_deref()),
            }
        }
        let draining = format!("draining: {} active calls", gateway.status().active);
        notify(&[NotifyState::Stopping, NotifyState::Status(&draining)]);
        let grace = gateway.shared().live().config.shutdown_grace;
        let hurry = async {
            // A second SIGTERM (or Ctrl-C) ends the grace at once.
            while let Sig::Reload = signals.next().await {
                tracing::info!("SIGHUP ignored while shutting down");
            }
        };
        let cut = gateway.shutdown(grace, hurry).await;
        tracing::info!(calls_cut = cut, "stopped");
        Ok(())
    })
}

enum Sig {
    Stop,
    Reload,
}

struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    async fn next(&mut self) -> Sig {
        tokio::select! {
            _ = self.term.recv() => {
                tracing::info!("SIGTERM: shutting down");
                Sig::Stop
            }
            _ = self.int.recv() => {
                tracing::info!("interrupted: shutting down");
                Sig::Stop
            }
            _ = self.hup.recv() => Sig::Reload,
        }
    }
}

/// SIGHUP: re-reads the configuration file and puts what can change without a restart in
/// force for new calls; a file with problems is refused whole and the running one stays.
fn reload(gateway: &Gateway, path: Option<&Path>) {
    let Some(path) = path else {
        tracing::info!("SIGHUP: running the embedded default, there is no file to reload");
        return;
    };
    notify_reloading();
    match config::load_file(path, &env_var) {
        Ok(new) => {
            let outcome = gateway.reload(new);
            for key in &outcome.needs_restart {
                tracing::warn!(
                    key,
                    "changed in the file but only takes effect on a restart; the running value stays"
                );
            }
            tracing::info!(
                file = %path.display(),
                "configuration reloaded: trunks, routes, agents and [twilio] apply to new calls"
            );
        }
        Err(e) => {
            for problem in e.to_string().lines() {
                tracing::error!("{problem}");
            }
            tracing::error!(
                file = %path.display(),
                "configuration reload refused; the running configuration stays in force"
            );
            gateway.shared().metrics.config_reload(false);
        }
    }
    notify(&[NotifyState::Ready]);
}

/// Tells systemd (Type=notify) about a state change; nothing without NOTIFY_SOCKET.
fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

fn notify_reloading() {
    // systemd 253+ wants the reload stamped with the monotonic clock.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[NotifyState::Reloading, now]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// STATUS= with the active calls, every few seconds, for `systemctl status`.
async fn status_line(monitor: Monitor) {
    let mut last = None;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let now = (monitor.status().active, monitor.is_draining());
        if last != Some(now) {
            last = Some(now);
            let text = match now {
                (n, false) => format!("{n} active calls"),
                (n, true) => format!("draining: {n} active calls"),
            };
            notify(&[NotifyState::Status(&text)]);
        }
    }
}

/// WATCHDOG=1 at half systemd's interval, and only while the SIP loop answers: a stuck loop
/// stops the pings and systemd restarts the service.
async fn watchdog(monitor: Monitor, every: Duration) {
    let half = every / 2;
    loop {
        tokio::time::sleep(half).await;
        if monitor.ping(half / 2).await {
            notify(&[NotifyState::Watchdog]);
        } else {
            tracing::warn!("the SIP loop did not answer the watchdog in time");
        }
    }
}

/// Runs the load test and prints the summary; true when the run passed.
fn load(a: Box<LoadCli>) -> anyhow::Result<bool> {
    let a = *a;
    if !(a.duration.is_finite() && a.duration >= 0.0) {
        anyhow::bail!("--duration must be a number of seconds");
    }
    let args = LoadArgs {
        target: a.target,
        calls: a.calls,
        rate: a.rate,
        duration: Duration::from_secs_f64(a.duration),
        username: a.username,
        password: a.password,
        codec: match a.codec {
            CodecArg::Pcmu => Law::Mu,
            CodecArg::Pcma => Law::A,
        },
        audio: a.audio,
        json: a.json,
        max_loss_pct: a.max_loss,
        progress: true,
        impair_sip: a.impair_sip,
        impair_rtp: a.impair_rtp,
        seed: a.seed,
        called: a.called,
        srtp: a.srtp,
    };
    let report = sipbridge::load::run(args)?;
    print!("{}", report.table());
    Ok(report.passed())
}

fn print_demo_banner(c: &Config) {
    use std::io::Write;
    let Some(creds) = c.trunks.first().and_then(|t| t.credentials.as_ref()) else {
        return;
    };
    let text = format!(
        "sipbridge: no --config given; running the embedded default (echo agent).\n\
         \x20 SIP (UDP)   {listen}\n\
         \x20 RTP ports   {lo}-{hi}\n\
         \x20 digest user {user}\n\
         \x20 password    {password}\n\
         Try it (one 5 s call that checks the echo):\n\
         \x20 {exe} load --target 127.0.0.1:{port} --username {user} --password {password} \
         --calls 1 --duration 5\n",
        // The path of this binary, so the line works from `cargo run` too.
        exe = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "sipbridge".into()),
        listen = c.sip.listen,
        lo = c.media.rtp_ports.0,
        hi = c.media.rtp_ports.1,
        user = creds.username,
        password = creds.password,
        port = c.sip.listen.port(),
    );
    // A closed stdout (a pipe nobody reads) must not stop the gateway.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}
