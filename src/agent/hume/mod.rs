//! The Hume EVI agent: the caller talks to Hume's Empathic Voice Interface over its chat
//! WebSocket (reference/hume-evi.md).
//!
//! Three layers:
//! - [`protocol`]: the JSON messages, as serde types matching Hume's SDK models;
//! - [`core`] (with [`playout`]): the sans-IO session, which decides everything;
//! - `driver`: one tokio task per call that owns the WebSocket(s) and runs the core.
//!
//! The call polls a [`RemoteSession`](crate::agent::remote::RemoteSession), which keeps the
//! caller's playout queue on the call's side.

pub mod core;
mod driver;
pub mod playout;
pub mod protocol;

use std::sync::Arc;

use super::remote;
use super::{Agent, CallInfo, ConnectFuture, SetupPolicy};
use crate::config::HumeSpec;

/// `kind = "hume"`.
pub struct HumeAgent {
    spec: Arc<HumeSpec>,
}

impl HumeAgent {
    pub fn new(spec: HumeSpec) -> HumeAgent {
        super::install_crypto_provider();
        HumeAgent {
            spec: Arc::new(spec),
        }
    }
}

impl Agent for HumeAgent {
    fn connect(&self, call: &CallInfo) -> ConnectFuture {
        let spec = self.spec.clone();
        remote::connect("EVI", |ends, ready| {
            driver::Driver::new(spec, call, ends, ready).run()
        })
    }

    fn kind(&self) -> &'static str {
        "hume"
    }

    fn media_on_reactor(&self) -> bool {
        false
    }

    fn setup_policy(&self) -> SetupPolicy {
        SetupPolicy::websocket(self.spec.connect_timeout)
    }
}
