//! [`FakePlatform`]: the fake channel registered as a platform through the same seam a channel
//! crate uses ([`assent_platform::Platform`]), so tests can configure it in an `assent.toml`
//! and run it under `assent serve`. It can pose as any chat platform, so config tests check
//! that platform's approver rules (RT-2).

use std::sync::{Arc, Mutex};

use assent_core::{
    capability::{DynApprovalCapability, IntoDynCapability},
    model::Channel,
};
use assent_platform::{AccountAvailability, AccountSetup, Inbound, Platform};
use serde::Deserialize;

use crate::FakeChannel;

/// The fake chat platform, posing as `channel`. Clones share the accounts it started.
#[derive(Debug, Clone)]
pub struct FakePlatform {
    channel: Channel,
    started: Arc<Mutex<Vec<FakeChannel>>>,
}

impl FakePlatform {
    /// A fake platform that answers to `[channels.<channel>]`.
    pub fn new(channel: Channel) -> Self {
        Self { channel, started: Arc::default() }
    }

    /// The accounts connected so far, newest last: tests press buttons on them.
    pub fn started(&self) -> Vec<FakeChannel> {
        self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// `[channels.<platform>.accounts.<id>]` of the fake: a bot token, as real platforms have.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeKeys {
    token: Option<String>,
    token_env: Option<String>,
    token_file: Option<String>,
}

/// A configured fake account.
#[derive(Debug, Clone)]
pub struct FakeAccount {
    id: String,
    /// Read and kept, never shown: `identity` proves it is not needed to say who the bot is.
    _token: String,
}

impl Platform for FakePlatform {
    type Keys = FakeKeys;
    type Account = FakeAccount;

    fn channel(&self) -> Channel {
        self.channel
    }

    fn approver_example(&self) -> &'static str {
        match self.channel {
            Channel::Discord => "111111111111111111",
            Channel::Slack => "U012ABCDEF",
            Channel::Telegram => "123456789",
            Channel::Matrix => "@kim:example.org",
            Channel::Console => "kim",
        }
    }

    fn account(&self, keys: FakeKeys, setup: &AccountSetup<'_>) -> Result<FakeAccount, String> {
        let token = setup.required_secret(
            "token",
            keys.token.as_deref(),
            keys.token_env.as_deref(),
            keys.token_file.as_deref(),
        )?;
        Ok(FakeAccount { id: setup.id.to_owned(), _token: token })
    }

    fn identity(&self, account: &FakeAccount) -> String {
        format!("fake {} bot {}", self.channel.label(), account.id)
    }

    fn probe(&self, _account: &FakeAccount, availability: &AccountAvailability) -> Result<String, String> {
        Ok(format!("the fake platform answers for {}", availability.settings().key))
    }

    async fn connect(
        &self,
        account: FakeAccount,
        availability: AccountAvailability,
        _inbound: Inbound,
    ) -> Result<Arc<dyn DynApprovalCapability>, String> {
        let routing = availability.settings().clone();
        let fake = FakeChannel::new(self.channel, &account.id, &[]).with_routing(|r| *r = routing);
        self.started.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(fake.clone());
        Ok(fake.erase())
    }
}
