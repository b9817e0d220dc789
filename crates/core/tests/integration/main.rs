//! Integration tests of assent-core, named after the spec requirements they check.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.
mod cards;
mod grant_properties;
mod lifecycle;
mod policy;
mod redaction;
mod routing;
mod serde_types;

// Shared with the channels' card tests (CAP-2).
pub(crate) use assent_testing::{
    T0,
    samples::{approval, binding_action, bob, exec_action, kim, plugin_action},
};
