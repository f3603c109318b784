//! The Hume EVI agent: the caller talks to Hume's Empathic Voice Interface over its chat
//! WebSocket.

pub mod protocol;
