//! The OpenAI agent: a call talks to one of OpenAI's speech-to-speech models over one
//! WebSocket, the Realtime API (GA) or GPT-Live, in G.711 both ways so the caller's audio is
//! never resampled (reference/ai-legs.md §3-4).
//!
//! - [`protocol`]: the events both APIs take and send;
//! - [`core`]: the sans-IO conversation, which decides everything;
//! - here: the agent and opening the socket.

pub mod core;
pub mod protocol;

use std::sync::Arc;

use self::core::OpenaiCore;
use super::ws::session;
use super::ws::{self, Ws};
use super::{percent_encode, Agent, CallInfo, ConnectFuture, SetupPolicy};
use crate::config::{OpenaiApi, OpenaiSpec};
use crate::timer::now;

/// `kind = "openai"`.
pub struct OpenaiAgent {
    spec: Arc<OpenaiSpec>,
}

impl OpenaiAgent {
    pub fn new(spec: OpenaiSpec) -> OpenaiAgent {
        super::install_crypto_provider();
        OpenaiAgent {
            spec: Arc::new(spec),
        }
    }
}

impl Agent for OpenaiAgent {
    fn connect(&self, call: &CallInfo) -> ConnectFuture {
        let spec = self.spec.clone();
        tracing::info!(model = %spec.model, api = ?spec.api, "opening an OpenAI session");
        let core = OpenaiCore::new(now(), spec.clone(), call.law);
        let open = Box::pin(async move { Ok((open_socket(&spec).await?, ())) });
        session::connect(core, open)
    }

    fn kind(&self) -> &'static str {
        "openai"
    }

    fn setup_policy(&self) -> SetupPolicy {
        SetupPolicy::websocket(self.spec.connect_timeout)
    }
}

/// The endpoint with the key and the configured headers. Realtime names its model in the
/// query; GPT-Live takes none.
async fn open_socket(spec: &OpenaiSpec) -> Result<Box<Ws>, String> {
    let mut url = spec.url.clone();
    if spec.api == OpenaiApi::Realtime {
        url.push_str("?model=");
        percent_encode(&spec.model, &mut url);
    }
    let mut headers = vec![(
        "Authorization".to_string(),
        format!("Bearer {}", spec.api_key),
    )];
    headers.extend(spec.headers.iter().cloned());
    let request = ws::request(&url, &headers)?;
    ws::connect(request, "OpenAI", ws::READ_SMALL).await
}
