//! Agents: the far end of a call (echo, Hume EVI, LiveKit).
