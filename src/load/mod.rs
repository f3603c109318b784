//! The load-test harness: a UAC that calls exactly as Twilio does.

pub mod media;
pub mod report;
pub mod signal;
pub mod uac;
