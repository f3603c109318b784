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

use tokio::sync::oneshot;
use tracing::Instrument;

use super::remote::RemoteSession;
use super::{Agent, AgentError, AgentSession, CallInfo, ConnectFuture, SetupPolicy};
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
        let (session, ends) = RemoteSession::new("EVI");
        let (ready_tx, ready_rx) = oneshot::channel();
        let driver = driver::Driver::new(self.spec.clone(), call, ends, ready_tx);
        // Inside the call's span, so the driver's lines carry the Call-ID.
        tokio::spawn(driver.run().instrument(tracing::Span::current()));
        Box::pin(async move {
            match ready_rx.await {
                Ok(Ok(())) => Ok(Box::new(session) as Box<dyn AgentSession>),
                Ok(Err(reason)) => Err(AgentError::Unreachable(reason)),
                Err(_) => Err(AgentError::Unreachable("the EVI driver stopped".into())),
            }
        })
    }

    fn kind(&self) -> &'static str {
        "hume"
    }

    fn setup_policy(&self) -> SetupPolicy {
        SetupPolicy {
            // Ring at once: the caller hears progress while the socket opens.
            ring_after: std::time::Duration::ZERO,
            ring_every: None,
            timeout: self.spec.connect_timeout,
            // 5xx both ways, so Twilio fails over to the next route.
            timeout_status: 503,
            error_status: 503,
        }
    }
}
