//! sipbridge: a SIP B2BUA media gateway between Twilio calls and voice AI agents.
//!
//! The call's path through the tree (see docs/architecture.md):
//! `sip::transport` -> `sip::message` -> `sip::transaction` -> `sip::dialog` -> `routing` ->
//! `call` -> `engine` (the media reactors) -> `media` / `codec` -> `agent`.
//!
//! Protocol logic lives in sans-IO cores that take bytes, events and an `Instant` and return
//! bytes, events and the next deadline; sockets and timers live only in the drivers.

pub mod agent;
pub mod call;
pub mod codec;
pub mod config;
pub mod engine;
pub mod http;
pub mod load;
pub mod media;
pub mod metrics;
pub mod routing;
pub mod sdp;
pub mod sip;
pub mod timer;
