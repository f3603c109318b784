//! Audio codecs and sample-rate conversion.

pub mod g711;
pub mod opus;
pub mod resample;
pub mod wav;
