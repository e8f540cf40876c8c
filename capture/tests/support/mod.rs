//! Test support for the capture.

pub mod engine;
