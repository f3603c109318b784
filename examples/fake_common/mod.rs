//! What the fake far ends run as processes share: the listen address from the command line
//! and a one-worker runtime (the fakes share a core with the load harness).

use std::net::SocketAddr;

/// The first argument as a socket address, `default` without one; exits 2 on a bad one.
pub fn listen_addr(program: &str, default: &str) -> SocketAddr {
    let addr = std::env::args().nth(1).unwrap_or_else(|| default.into());
    match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{program}: bad listen address {addr:?}: {e}");
            std::process::exit(2);
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}
