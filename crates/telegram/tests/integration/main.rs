//! The Telegram channel's integration tests, in one binary: each test binary links the SDK and
//! the engine, so one binary instead of two saves CI disk and a link.

#![allow(clippy::unwrap_used)] // Tests: a failed step must fail loudly.

mod bot_api;
mod harness;
mod replicas;
