//! `assent-platform`: how a chat platform plugs into assent.
//!
//! A channel crate implements [`Platform`] once. Through it, the platform owns:
//! - its account table `[channels.<platform>.accounts.<id>]`, parsed strictly into
//!   [`Platform::Keys`] and checked into a ready [`Platform::Account`] (secrets read);
//! - its `doctor` probe, which asks the platform about the account without acting as the bot;
//! - how an account starts: [`Platform::connect`], run by the engine under the account's lease.
//!
//! The shared `approvals` block (and `owners`, `default`) is parsed here, once for every
//! platform, with approvers normalized per platform (RT-2). The server keeps one list of
//! compiled platforms as [`DynPlatform`]s, one `#[cfg(feature = …)]` line each.

mod approvals;
mod availability;
mod erased;
mod hook;
mod setup;

use std::{future::Future, sync::Arc};

use assent_core::{capability::DynApprovalCapability, model::Channel, routing::normalize_approver};
pub use assent_engine::Inbound;
use serde::de::DeserializeOwned;

pub use self::{
    availability::AccountAvailability,
    erased::{ConfigIssue, ConfiguredAccount, DynPlatform, Running, ServerContext, Started},
    hook::{Hook, HookFuture, HookRequest, HookResponse},
    setup::{AccountSetup, secret},
};

/// A chat platform: one per channel crate. See the crate docs.
pub trait Platform: Send + Sync + 'static {
    /// The platform's own keys of an account table: everything but `approvals`, `owners` and
    /// `default`. Deserialized strictly: use `#[serde(deny_unknown_fields)]`.
    type Keys: DeserializeOwned;
    /// An account ready to start (secrets read, paths resolved); registered as the account's
    /// runtime context (CAP-6).
    type Account: Clone + Send + Sync + 'static;

    /// Which platform this is; names `[channels.<name>]` and the cargo feature.
    fn channel(&self) -> Channel;

    /// An approver id as an operator writes it, for hints (`"123456789"`).
    fn approver_example(&self) -> &'static str;

    /// RT-2: one approver from the config, normalized, or why it is refused. The default is
    /// the rule `assent-core` knows for [`Platform::channel`].
    fn normalize_approver(&self, raw: &str) -> Result<String, &'static str> {
        normalize_approver(self.channel(), raw)
    }

    /// Checks the keys of one account. Errors name the key ([`AccountSetup::key`]) and say what
    /// to write instead; secrets never appear in them.
    fn account(&self, keys: Self::Keys, setup: &AccountSetup<'_>) -> Result<Self::Account, String>;

    /// Who the bot is, from the config alone (`@assent:example.org on https://…`).
    fn identity(&self, account: &Self::Account) -> String;

    /// `assent doctor`'s probe (blocking, a few seconds at most): whether the platform answers
    /// and still accepts the account, asked without acting as the bot (no login, no new device,
    /// no message). `Ok` says what was found, `Err` what is wrong and how to fix it.
    fn probe(&self, account: &Self::Account, availability: &AccountAvailability) -> Result<String, String>;

    /// The account's inbound HTTP endpoint (`/hooks/<platform>/<account>`), if it takes
    /// pushed events. Made at start on every replica, whether or not it holds the account.
    fn hook(
        &self,
        _account: &Self::Account,
        _availability: &AccountAvailability,
        _inbound: Inbound,
    ) -> Option<std::sync::Arc<dyn Hook>> {
        None
    }

    /// Connects the account and returns its capability. Called by the engine's bootstrap
    /// (CAP-7), retried with backoff, and run while this replica holds the account's lease.
    fn connect(
        &self,
        account: Self::Account,
        availability: AccountAvailability,
        inbound: Inbound,
    ) -> impl Future<Output = Result<Arc<dyn DynApprovalCapability>, String>> + Send;
}
