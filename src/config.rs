//! Configuration: the TOML schema of DESIGN.md, secrets from `*_env` variables, and validation
//! that names the key and the line of every problem.
//!
//! Parsing goes in two steps: serde reads the file into `raw` structs whose values keep their
//! byte spans (so a semantic problem found later can still point at its line), then `resolve`
//! turns them into the typed [`Config`] the gateway runs with, collecting every problem rather
//! than stopping at the first.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use crate::sip::acl::AddressList;
use crate::sip::auth::ChallengeKind;

/// The configuration the gateway runs with, after validation and secret resolution.
#[derive(Clone, Debug)]
pub struct Config {
    pub shutdown_grace: Duration,
    pub sip: SipSettings,
    pub media: MediaSettings,
    pub http: HttpSettings,
    pub twilio: TwilioSettings,
    pub trunks: Vec<Trunk>,
    pub routes: Vec<Route>,
    pub agents: BTreeMap<String, AgentSpec>,
    pub limits: crate::sip::guard::Limits,
    /// What a TCP or TLS connection may cost (`[limits]` too).
    pub stream_limits: crate::sip::transport::stream::StreamLimits,
}

#[derive(Clone, Debug)]
pub struct SipSettings {
    pub listen: SocketAddr,
    /// Host (and optional port) written into Contact and Via; `None` means "the local address
    /// that routes to the caller", found per call.
    pub public_addr: Option<String>,
    pub realm: String,
    pub max_calls: usize,
    pub challenge: ChallengeKind,
    /// The digest nonce secret every node behind one balancer shares (`nonce_secret_env`), so
    /// a challenge issued by one node verifies on another; `None`: a random one per process.
    pub nonce_secret: Option<NonceSecret>,
    /// TCP and TLS listeners, beside the UDP one.
    pub streams: transport::StreamListeners,
}

/// A shared digest nonce secret; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct NonceSecret(pub String);

impl fmt::Debug for NonceSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NonceSecret(<redacted>)")
    }
}

/// The shortest `sip.nonce_secret_env` value accepted: 32 characters (`openssl rand -hex 32`
/// gives 64), so the HMAC key is never guessable.
pub const MIN_NONCE_SECRET_LEN: usize = 32;

#[derive(Clone, Debug)]
pub struct MediaSettings {
    pub rtp_ports: (u16, u16),
    /// SDP `c=` address; `None` falls back to `sip.public_addr`'s host, then to the local address
    /// that routes to the caller.
    pub public_ip: Option<IpAddr>,
    pub media_timeout: Duration,
    pub initial_media_timeout: Duration,
    /// Accept SDES-SRTP keys (RFC 4568) in SDP that came over signalling other than TLS,
    /// where anyone on the path can read them. Off: such an offer gets 488.
    pub sdes_without_tls: bool,
    /// Media reactor threads (each runs the RTP of its share of the calls).
    pub reactors: usize,
}

#[derive(Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// Bearer token every admin endpoint but `/healthz` and the TwiML webhook requires.
    pub auth_token: Option<String>,
}

impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("listen", &self.listen)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

#[derive(Clone, Default)]
pub struct TwilioSettings {
    /// The account's auth token: the key of `X-Twilio-Signature`.
    pub auth_token: Option<String>,
    /// The base URL Twilio calls (scheme and host, no trailing slash).
    pub public_url: Option<String>,
    /// The Twilio edge named in the `<Sip>` URI the webhook returns.
    pub edge: Option<String>,
    /// `host[:port]` the webhook's `<Sip>` URI dials: the proxy in front of a cluster; `None`
    /// dials this node at `sip.public_addr`.
    pub sip_host: Option<String>,
}

impl fmt::Debug for TwilioSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioSettings")
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("public_url", &self.public_url)
            .field("edge", &self.edge)
            .finish()
    }
}

/// Twilio's edge locations, for `twilio.edge`: the public ones and the Interconnect ones.
pub const TWILIO_EDGES: [&str; 15] = [
    "ashburn",
    "umatilla",
    "dublin",
    "frankfurt",
    "tokyo",
    "singapore",
    "sydney",
    "sao-paulo",
    "ashburn-ix",
    "san-jose-ix",
    "london-ix",
    "frankfurt-ix",
    "singapore-ix",
    "sydney-ix",
    "tokyo-ix",
];

#[derive(Clone, Debug)]
pub struct Route {
    /// Called numbers, normalised; empty means the default route.
    pub numbers: Vec<String>,
    pub agent: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentSpec {
    Echo,
    Hume(HumeSpec),
    Livekit(LivekitSpec),
    Stream(StreamSpec),
    Openai(OpenaiSpec),
}

/// `kind = "hume"`: Hume's EVI speech-to-speech WebSocket.
#[derive(Clone, PartialEq, Eq)]
pub struct HumeSpec {
    /// `ws://` or `wss://` chat endpoint.
    pub url: String,
    /// Read from `api_key_env` at load; sent as `X-Hume-Api-Key`.
    pub api_key: String,
    pub config_id: Option<String>,
    pub config_version: Option<u32>,
    /// Reconnect with `resumed_chat_group_id`, keeping the conversation's context.
    pub resume: bool,
    /// Ask for interim `user_message`s.
    pub verbose_transcription: bool,
    /// Ring while connecting for at most this long, then 503.
    pub connect_timeout: Duration,
    /// The life of one EVI socket; a longer call moves to a resumed socket before it runs out.
    pub session_limit: Duration,
    /// Caller audio per `audio_input` message (20..=100 ms, in 20 ms steps).
    pub audio_batch_ms: u32,
}

impl HumeSpec {
    pub const DEFAULT_URL: &'static str = "wss://api.hume.ai/v0/evi/chat";
    /// EVI drops every socket at 30 minutes.
    pub const MAX_SESSION_SECS: u64 = 1800;
}

impl fmt::Debug for HumeSpec {
    // The API key must never reach a log line, even through `{:?}` of a whole config.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HumeSpec")
            .field("url", &self.url)
            .field("api_key", &"<redacted>")
            .field("config_id", &self.config_id)
            .field("config_version", &self.config_version)
            .field("resume", &self.resume)
            .field("verbose_transcription", &self.verbose_transcription)
            .field("connect_timeout", &self.connect_timeout)
            .field("session_limit", &self.session_limit)
            .field("audio_batch_ms", &self.audio_batch_ms)
            .finish()
    }
}

/// `kind = "livekit"`: each call becomes a room on this LiveKit server, where the named agent is
/// dispatched and the gateway joins as the SIP participant.
#[derive(Clone, PartialEq, Eq)]
pub struct LivekitSpec {
    /// `ws://` or `wss://` base URL of the server (the `/rtc` signalling and the Twirp API).
    pub url: String,
    pub api_key: String,
    pub api_secret: String,
    /// Room names are this prefix plus a short unique id.
    pub room_prefix: String,
    /// The agent dispatched into each room; `None` relies on automatic dispatch.
    pub agent_name: Option<String>,
    /// How long the call rings waiting for the agent's audio before it is rejected with 480.
    pub ringing_timeout: Duration,
}

impl fmt::Debug for LivekitSpec {
    // The API secret must never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LivekitSpec")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("room_prefix", &self.room_prefix)
            .field("agent_name", &self.agent_name)
            .field("ringing_timeout", &self.ringing_timeout)
            .finish()
    }
}

/// `kind = "stream"`: a bot that speaks Twilio's bidirectional Media Streams, one WebSocket per
/// call, with the gateway in Twilio's place.
#[derive(Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Where the bot is.
    pub source: StreamSource,
    /// Headers sent with the WebSocket upgrade (name, value read from `headers_env`).
    pub headers: Vec<(String, String)>,
    /// Static `customParameters`, after the call's own.
    pub parameters: Vec<(String, String)>,
    /// Ring while connecting for at most this long, then 503.
    pub connect_timeout: Duration,
    /// A closed stream ends the call (Twilio would go on to the next TwiML verb; there is none).
    pub hangup_on_close: bool,
    /// Caller audio per socket write (20..=100 ms, in 20 ms steps), one `media` message per
    /// 20 ms as Twilio sends.
    pub audio_batch_ms: u32,
}

/// The bot's WebSocket URL, given or asked for per call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamSource {
    /// `url`: `ws://` or `wss://`.
    Url(String),
    /// `twiml_url`: POSTed to per call; the answer's `<Connect><Stream url>` (or `joinUrl`).
    Twiml(TwimlFetch),
}

/// What `twiml_json` may name, replaced per call by the caller's number, the dialled number,
/// the call's and account's SIDs and the SIP Call-ID, in that order.
pub const TWIML_JSON_PLACEHOLDERS: [&str; 5] = [
    "{from}",
    "{to}",
    "{call_sid}",
    "{account_sid}",
    "{sip_call_id}",
];

/// How the stream URL is asked for.
#[derive(Clone, PartialEq, Eq)]
pub struct TwimlFetch {
    /// `http://` or `https://`.
    pub url: String,
    /// Headers for the request (name, value read from `twiml_headers_env`).
    pub headers: Vec<(String, String)>,
    /// A JSON body template (`twiml_json`); Twilio's voice-webhook form when `None`.
    pub json: Option<String>,
    /// Signs the form with `X-Twilio-Signature` (`twiml_auth_token_env`).
    pub auth_token: Option<String>,
}

impl fmt::Debug for TwimlFetch {
    // Header values and the token are credentials: never in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("TwimlFetch")
            .field("url", &self.url.split('?').next().unwrap_or(""))
            .field("headers", &headers)
            .field("json", &self.json.is_some())
            .field("signed", &self.auth_token.is_some())
            .finish()
    }
}

impl fmt::Debug for StreamSpec {
    // Header values are credentials: never in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("StreamSpec")
            .field("source", &self.source)
            .field("headers", &headers)
            .field("parameters", &self.parameters)
            .field("connect_timeout", &self.connect_timeout)
            .field("hangup_on_close", &self.hangup_on_close)
            .field("audio_batch_ms", &self.audio_batch_ms)
            .finish()
    }
}

/// One problem found in a configuration file, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

/// Every problem found in a configuration; `Display` prints one per line as
/// `file:line:column: key: message`.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{}:{}: ", self.file, p.line, p.column)?;
            if !p.key.is_empty() {
                write!(f, "{}: ", p.key)?;
            }
            write!(f, "{}", p.message)?;
        }
        Ok(())
    }
}

/// Reads and validates a configuration file. `env` looks up the `*_env` secrets (the process
/// environment in production, a map in tests).
pub fn load_file(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        problems: vec![Problem {
            line: 0,
            column: 0,
            key: String::new(),
            message: format!("cannot read: {e}"),
        }],
    })?;
    parse(&text, &file, env)
}

/// Parses and validates configuration text; `file` only labels the errors.
pub fn parse(
    text: &str,
    file: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut ctx = Ctx {
        text,
        base_dir: Path::new(file).parent().unwrap_or(Path::new("")),
        problems: Vec::new(),
    };
    let raw: raw::File = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            return Err(ConfigError {
                file: file.to_string(),
                problems: vec![Problem {
                    line,
                    column,
                    key: String::new(),
                    message: e.message().trim().to_string(),
                }],
            });
        }
    };
    let config = resolve(raw, &mut ctx, env);
    if ctx.problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError {
            file: file.to_string(),
            problems: ctx.problems,
        })
    }
}

/// The embedded default: every call answered by the echo agent, one digest trunk whose password
/// is freshly random (the caller prints it), open to any source address.
pub fn embedded_default() -> Config {
    let password = random_password();
    Config {
        shutdown_grace: Duration::from_secs(30),
        sip: SipSettings {
            listen: SocketAddr::from(([0, 0, 0, 0], 5060)),
            public_addr: None,
            realm: "sipbridge".into(),
            max_calls: 2000,
            challenge: ChallengeKind::Proxy,
            nonce_secret: None,
            streams: transport::StreamListeners {
                tcp: Some(SocketAddr::from(([0, 0, 0, 0], 5060))),
                tls: None,
            },
        },
        media: MediaSettings {
            rtp_ports: (10000, 20000),
            public_ip: None,
            media_timeout: Duration::from_secs(15),
            initial_media_timeout: Duration::from_secs(30),
            reactors: crate::engine::default_reactors(),
            sdes_without_tls: false,
        },
        http: HttpSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            auth_token: None,
        },
        twilio: TwilioSettings::default(),
        trunks: vec![Trunk {
            name: "demo".into(),
            credentials: Some(Credentials {
                username: "demo".into(),
                password,
            }),
            allowed: AddressList::any(),
            numbers: Vec::new(),
            symmetric_rtp: false,
            media_encryption: MediaEncryption::default(),
        }],
        routes: vec![Route {
            numbers: Vec::new(),
            agent: "echo".into(),
        }],
        agents: BTreeMap::from([("echo".to_string(), AgentSpec::Echo)]),
        limits: crate::sip::guard::Limits::default(),
        stream_limits: Default::default(),
    }
}

fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Normalises a phone number for matching: drops visual separators and a `tel:`/`+` prefix so
/// that `+44 7846 855904`, `447846855904` and `tel:+447846855904` compare equal.
pub fn normalize_number(n: &str) -> String {
    let n = n.trim();
    let n = n.strip_prefix("tel:").unwrap_or(n);
    n.chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '+'))
        .collect()
}

struct Ctx<'a> {
    text: &'a str,
    /// The config file's directory: relative paths in it start here.
    base_dir: &'a Path,
    problems: Vec<Problem>,
}

impl Ctx<'_> {
    /// A `host` or `host:port` that makes a SIP URI (`sip:HOST`), or a problem naming `key`.
    fn sip_host_port(&mut self, v: &Spanned<String>, key: &str) -> Option<String> {
        let s = v.get_ref().trim();
        let as_uri = crate::sip::uri::Uri::parse(&format!("sip:{s}"));
        if s.is_empty()
            || s.contains(char::is_whitespace)
            || s.contains(['<', '>', ';', '@'])
            || as_uri.is_err()
        {
            self.problem(v.span(), key, "expected a host or host:port");
            return None;
        }
        Some(s.to_string())
    }

    /// A socket address value, or a problem naming `key` with an example.
    fn listen(
        &mut self,
        v: &Option<Spanned<String>>,
        key: &str,
        example: &str,
    ) -> Option<SocketAddr> {
        let v = v.as_ref()?;
        let parsed = v.get_ref().parse::<SocketAddr>().ok();
        if parsed.is_none() {
            self.problem(
                v.span(),
                key,
                format!("expected ip:port, e.g. \"{example}\""),
            );
        }
        parsed
    }

    /// A number of seconds that must be at least 1.
    fn positive_secs(&mut self, v: &Option<Spanned<u64>>, key: &str) -> Option<Duration> {
        let v = v.as_ref()?;
        if *v.get_ref() == 0 {
            self.problem(v.span(), key, "must be at least 1");
            return None;
        }
        Some(Duration::from_secs(*v.get_ref()))
    }

    fn problem(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.problems.push(Problem {
            line,
            column,
            key: key.to_string(),
            message: message.into(),
        });
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = offset
        - before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1)
        + 1;
    (line, column)
}

mod raw;

fn resolve(raw: raw::File, ctx: &mut Ctx<'_>, env: &dyn Fn(&str) -> Option<String>) -> Config {
    let mut config = embedded_default();
    config.trunks.clear();
    config.routes.clear();
    config.agents.clear();

    if let Some(v) = raw.shutdown_grace_secs {
        config.shutdown_grace = Duration::from_secs(*v.get_ref());
    }

    // [sip]
    if let Some(a) = ctx.listen(&raw.sip.listen, "sip.listen", "0.0.0.0:5060") {
        config.sip.listen = a;
    }
    if let Some(v) = &raw.sip.public_addr {
        config.sip.public_addr = ctx.sip_host_port(v, "sip.public_addr");
    }
    if let Some(v) = &raw.sip.realm {
        let s = v.get_ref();
        if s.is_empty() || s.contains(['"', '\\']) {
            ctx.problem(
                v.span(),
                "sip.realm",
                "must be non-empty and without quotes or backslashes",
            );
        } else {
            config.sip.realm = s.clone();
        }
    }
    if let Some(v) = &raw.sip.max_calls {
        match usize::try_from(*v.get_ref()) {
            Ok(n) if n > 0 => config.sip.max_calls = n,
            _ => ctx.problem(v.span(), "sip.max_calls", "must be a positive integer"),
        }
    }
    if let Some(v) = &raw.sip.auth_challenge {
        match v.get_ref().as_str() {
            "proxy" | "407" => config.sip.challenge = ChallengeKind::Proxy,
            "www" | "401" => config.sip.challenge = ChallengeKind::Www,
            _ => ctx.problem(
                v.span(),
                "sip.auth_challenge",
                "expected \"proxy\" (407) or \"www\" (401)",
            ),
        }
    }

    if let Some(v) = &raw.sip.nonce_secret_env {
        let key = "sip.nonce_secret_env";
        match secret_from_env(ctx, env, v, key) {
            Some(s) if s.trim().len() >= MIN_NONCE_SECRET_LEN => {
                config.sip.nonce_secret = Some(NonceSecret(s.trim().to_string()));
            }
            Some(_) => ctx.problem(
                v.span(),
                key,
                format!(
                    "environment variable {} holds fewer than {MIN_NONCE_SECRET_LEN} \
                     characters; use e.g. `openssl rand -hex 32`",
                    v.get_ref()
                ),
            ),
            None => {}
        }
    }

    config.sip.streams = transport::resolve(ctx, &raw.sip, config.sip.listen);

    // [media]
    if let Some(v) = &raw.media.rtp_ports {
        match parse_port_range(v.get_ref()) {
            Ok(r) => config.media.rtp_ports = r,
            Err(m) => ctx.problem(v.span(), "media.rtp_ports", m),
        }
    }
    if let Some(v) = &raw.media.public_ip {
        match v.get_ref().parse::<IpAddr>() {
            Ok(ip) if !ip.is_unspecified() => config.media.public_ip = Some(ip),
            _ => ctx.problem(
                v.span(),
                "media.public_ip",
                "expected a specific IP address",
            ),
        }
    }
    let key = "media.media_timeout_secs";
    if let Some(t) = ctx.positive_secs(&raw.media.media_timeout_secs, key) {
        config.media.media_timeout = t;
    }
    config.media.sdes_without_tls = raw.media.sdes_without_tls;
    let key = "media.initial_media_timeout_secs";
    if let Some(t) = ctx.positive_secs(&raw.media.initial_media_timeout_secs, key) {
        config.media.initial_media_timeout = t;
    }
    if let Some(v) = &raw.media.reactors {
        match *v.get_ref() {
            n @ 1..=256 => config.media.reactors = n as usize,
            _ => ctx.problem(
                v.span(),
                "media.reactors",
                "must be between 1 and 256 (leave it out for one per core but one)",
            ),
        }
    }

    // [http]
    if let Some(a) = ctx.listen(&raw.http.listen, "http.listen", "127.0.0.1:3000") {
        config.http.listen = a;
    }
    if let Some(v) = &raw.http.auth_token_env {
        config.http.auth_token = secret_from_env(ctx, env, v, "http.auth_token_env");
    }

    // [twilio]
    if let Some(v) = &raw.twilio.auth_token_env {
        config.twilio.auth_token = secret_from_env(ctx, env, v, "twilio.auth_token_env");
    }
    if let Some(v) = &raw.twilio.public_url {
        let url = v.get_ref().trim().trim_end_matches('/');
        let host = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"));
        match host {
            // A path is kept: behind a proxy that strips a prefix, Twilio's URL has it.
            Some(h) if !h.is_empty() && !h.starts_with('/') && !h.contains(['?', '#', ' ']) => {
                config.twilio.public_url = Some(url.to_string());
            }
            _ => ctx.problem(
                v.span(),
                "twilio.public_url",
                "expected the URL Twilio calls without /twilio/voice, e.g. \
                 \"https://gw.example.com\" (no query)",
            ),
        }
    }
    if let Some(v) = &raw.twilio.sip_host {
        config.twilio.sip_host = ctx.sip_host_port(v, "twilio.sip_host");
    }
    if let Some(v) = &raw.twilio.edge {
        let edge = v.get_ref().trim();
        if TWILIO_EDGES.contains(&edge) {
            config.twilio.edge = Some(edge.to_string());
        } else {
            ctx.problem(
                v.span(),
                "twilio.edge",
                format!("unknown edge; expected one of: {}", TWILIO_EDGES.join(", ")),
            );
        }
    }

    config.limits = limits::resolve(ctx, &raw.limits);
    config.stream_limits = limits::resolve_streams(ctx, &raw.limits);

    // [agents] before routes, so routes can be checked against them.
    for (name, agent) in &raw.agents {
        if let Some(spec) = agents::resolve(ctx, env, name.get_ref(), agent) {
            config.agents.insert(name.get_ref().clone(), spec);
        }
    }

    // [[trunks]]
    for (i, t) in raw.trunks.iter().enumerate() {
        if let Some(trunk) = resolve_trunk(ctx, env, i, t) {
            config.trunks.push(trunk);
        }
    }

    // [[routes]]
    for (i, r) in raw.routes.iter().enumerate() {
        let agent = r.get_ref().agent.get_ref();
        if !config.agents.contains_key(agent) && !raw.agents.keys().any(|k| k.get_ref() == agent) {
            ctx.problem(
                r.get_ref().agent.span(),
                &format!("routes[{i}].agent"),
                format!("no agent named \"{agent}\" in [agents]"),
            );
        }
        config.routes.push(Route {
            numbers: numbers(ctx, &r.get_ref().numbers, &format!("routes[{i}].numbers")),
            agent: agent.clone(),
        });
    }

    // A config without routes or agents still answers calls: with the echo agent.
    if raw.routes.is_empty() {
        if raw.agents.is_empty() {
            config.agents.insert("echo".into(), AgentSpec::Echo);
            config.routes.push(Route {
                numbers: Vec::new(),
                agent: "echo".into(),
            });
        } else if raw.agents.len() == 1 {
            if let Some(name) = raw.agents.keys().next() {
                config.routes.push(Route {
                    numbers: Vec::new(),
                    agent: name.get_ref().clone(),
                });
            }
        }
    }
    config
}

fn numbers(ctx: &mut Ctx<'_>, list: &[Spanned<String>], key: &str) -> Vec<String> {
    let mut out = Vec::new();
    for n in list {
        let norm = normalize_number(n.get_ref());
        if norm.is_empty() {
            ctx.problem(n.span(), key, "empty number");
        } else {
            out.push(norm);
        }
    }
    out
}

fn secret_from_env(
    ctx: &mut Ctx<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    var: &Spanned<String>,
    key: &str,
) -> Option<String> {
    match env(var.get_ref()) {
        Some(v) if !v.is_empty() => Some(v),
        _ => {
            ctx.problem(
                var.span(),
                key,
                format!("environment variable {} is not set", var.get_ref()),
            );
            None
        }
    }
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| "expected \"LOW-HIGH\", e.g. \"10000-20000\"".to_string())?;
    let lo: u16 = a
        .trim()
        .parse()
        .map_err(|_| format!("bad port \"{}\"", a.trim()))?;
    let hi: u16 = b
        .trim()
        .parse()
        .map_err(|_| format!("bad port \"{}\"", b.trim()))?;
    if lo < 1024 || hi < lo {
        return Err("range must be within 1024-65535 and LOW <= HIGH".into());
    }
    if (hi - lo) < 1 {
        return Err("range must hold at least one even/odd port pair".into());
    }
    Ok((lo, hi))
}

mod agents;
mod trunks;
use trunks::resolve_trunk;
pub use trunks::{Credentials, MediaEncryption, Trunk};
mod openai;
pub use openai::{OpenaiApi, OpenaiSpec, Tool, TurnDetection};
mod limits;
#[cfg(test)]
mod tests;
pub mod transport;
