//! The `sipbridge` command: run the gateway, or check a configuration file.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use sipbridge::call::Gateway;
use sipbridge::config::{self, Config};

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

fn print_demo_banner(c: &Config) {
    let Some(creds) = c.trunks.first().and_then(|t| t.credentials.as_ref()) else {
        return;
    };
    println!("sipbridge: no --config given; running the embedded default (echo agent).");
    println!("  SIP (UDP)   {}", c.sip.listen);
    println!(
        "  RTP ports   {}-{}",
        c.media.rtp_ports.0, c.media.rtp_ports.1
    );
    println!("  digest user {}", creds.username);
    println!("  password    {}", creds.password);
    println!("Call it with SIPp, for example:");
    println!(
        "  sipp -sn uac -au {} -ap {} -s echo -m 1 127.0.0.1:{}",
        creds.username,
        creds.password,
        c.sip.listen.port()
    );
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
