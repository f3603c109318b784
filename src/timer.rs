//! The timer helpers the tokio drivers share: the clock they read for their sans-IO cores, and
//! the wait on a core's next deadline, which every core reports as an `Option`.

use tokio::time::Instant;

/// The cores' clock: tokio's, as a std `Instant`, so a test's paused clock drives them too.
pub fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Sleeps until `deadline`, or forever when there is none (so a `select!` branch never fires).
pub async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
