//! The load harness run as the CLI runs it, beside an in-process gateway, and its JSON report.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::{PASSWORD, USER};
use sipbridge::load::{self, LoadArgs, Report};

pub fn temp_path(name: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "sipbridge-load-{}-{}-{name}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

pub fn args(target: std::net::SocketAddr, calls: u32, rate: f64, secs: u64) -> LoadArgs {
    LoadArgs {
        target: target.to_string(),
        calls,
        rate,
        duration: Duration::from_secs(secs),
        username: Some(USER.into()),
        password: Some(PASSWORD.into()),
        progress: false,
        ..LoadArgs::default()
    }
}

/// Runs the harness as the CLI does (its own current-thread runtime) beside the gateway's.
pub async fn run(args: LoadArgs) -> (Report, Value) {
    let json = temp_path("report.json");
    let args = LoadArgs {
        json: Some(json.clone()),
        ..args
    };
    let report = tokio::task::spawn_blocking(move || load::run(args))
        .await
        .expect("harness thread")
        .expect("harness runs");
    let text = std::fs::read_to_string(&json).expect("JSON report written");
    let _ = std::fs::remove_file(&json);
    (
        report,
        serde_json::from_str(&text).expect("JSON report parses"),
    )
}

pub fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}
