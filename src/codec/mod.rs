//! Audio codecs and sample-rate conversion.

pub mod g711;
pub mod resample;
pub mod wav;
