//! Black-box tests: the real `assent` binary on a temporary data dir and a free loopback port,
//! driven only through its CLI, HTTP API and hook, like a user would.

// Tests fail loudly on purpose.
#![allow(clippy::unwrap_used)]

mod api;
mod authz;
mod cli;
mod console;
mod discord;
mod harness;
mod hook;
mod matrix;
mod redaction;
mod restart;
mod security;
mod slack;
mod telegram;
mod webdriver;
mod webhook;
