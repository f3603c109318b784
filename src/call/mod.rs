//! The per-call state machine and the active-call registry.
