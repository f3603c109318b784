//! The `sipbridge` command: run the gateway, check a configuration file, or load-test a
//! gateway.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use sipbridge::call::Gateway;
use sipbridge::codec::g711::Law;
use sipbridge::config::{self, Config};
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
    Load(LoadCli),
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
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
        let gateway = Gateway::start(&config)
            .await
            .with_context(|| format!("binding SIP on {}", config.sip.listen))?;
        wait_for_signal().await;
        tracing::info!("stopping");
        gateway.stop().await;
        Ok(())
    })
}

/// Runs the load test and prints the summary; true when the run passed.
fn load(a: LoadCli) -> anyhow::Result<bool> {
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

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
