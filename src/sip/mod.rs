//! SIP signalling: message codec, transactions, dialogs, authentication and the UDP transport.

pub mod acl;
pub mod auth;
pub mod dialog;
pub mod guard;
pub mod message;
pub mod transaction;
pub mod transport;
pub mod uri;

#[cfg(test)]
pub mod testing;
