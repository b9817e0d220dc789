//! The Slack channel against the fake Slack: the channel contract (CAP-11) in both modes, and
//! the Slack behaviours (CH-SL-*), through slack-morphism's client, as in production.

#![allow(clippy::unwrap_used)] // Tests: a failed step must fail loudly.

mod harness;

use std::sync::Arc;

mod socket_mode {
    use assent_testing::channel_contract_tests;

    use crate::harness::{Mode, SlackHarness};

    channel_contract_tests!(async {
        std::sync::Arc::new(SlackHarness::start(Mode::Socket).await)
            as std::sync::Arc<dyn assent_testing::channel_contract::ChannelHarness>
    });
}

mod http_mode {
    use assent_testing::channel_contract_tests;

    use crate::harness::{Mode, SlackHarness};

    channel_contract_tests!(async {
        std::sync::Arc::new(SlackHarness::start(Mode::Http).await)
            as std::sync::Arc<dyn assent_testing::channel_contract::ChannelHarness>
    });
}

#[allow(dead_code)]
fn unused(_: Arc<()>) {}
