//! The one timer helper the tokio drivers share: every sans-IO core reports its next deadline
//! as an `Option`, and a driver's `select!` waits on it.

use tokio::time::Instant;

/// Sleeps until `deadline`, or forever when there is none (so a `select!` branch never fires).
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
