//! The server's integration tests, in one binary: each test binary links every channel SDK, so
//! one binary instead of three saves CI a few hundred MiB of disk and two links.

#![allow(clippy::unwrap_used)] // Tests: a failed step must fail loudly.

mod config;
mod openapi;
mod platform_seam;
