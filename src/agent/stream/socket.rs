//! How the bot's socket is opened: its URL given, or asked of a `twiml_url`.

use super::twiml::{self, CallFacts};
use crate::agent::ws::{self, Ws};
use crate::config::{StreamSource, StreamSpec};

/// The open socket and the `<Parameter>`s of the TwiML that named it.
type Opened = (Box<Ws>, Vec<(String, String)>);

/// Opens the bot's socket with the configured headers, asking the `twiml_url` for it first
/// when that is how the bot is found.
pub(super) async fn open(spec: &StreamSpec, facts: &CallFacts) -> Result<Opened, String> {
    let (url, parameters) = match &spec.source {
        StreamSource::Url(url) => (url.clone(), Vec::new()),
        StreamSource::Twiml(fetch) => {
            let target = twiml::fetch(fetch, facts, spec.connect_timeout).await?;
            tracing::info!(url = %target.url.split('?').next().unwrap_or(""), "the TwiML named the stream");
            (target.url, target.parameters)
        }
    };
    let request = ws::request(&url, &spec.headers)?;
    let ws = ws::connect(request, "the stream bot", ws::READ_SMALL).await?;
    Ok((ws, parameters))
}
