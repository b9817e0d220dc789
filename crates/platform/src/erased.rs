//! The object-safe form of [`Platform`] the server keeps in its list, and one configured
//! account of it.

use std::{any::Any, ops::Range, path::Path, sync::Arc};

use assent_core::model::AccountKey;
use assent_engine::{EngineHandle, Inbound, registry::ContextRegistry};
use toml::{
    Spanned,
    de::{DeTable, DeValue, ValueDeserializer},
};

use crate::{
    AccountAvailability, AccountSetup, Hook, Platform,
    approvals::{ApproverRule, SHARED_KEYS, SharedKeys},
};

/// A configuration problem in an account table: where (a byte range of the file) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Byte range in the configuration file; `None` points at the account's table.
    pub span: Option<Range<usize>>,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl ConfigIssue {
    pub(crate) fn at(span: Range<usize>, message: String) -> Self {
        Self { span: Some(span), message }
    }

    pub(crate) fn anywhere(message: String) -> Self {
        Self { span: None, message }
    }

    fn from_toml(table: &str, e: &toml::de::Error) -> Self {
        Self { span: e.span(), message: format!("{table}: {}", e.message()) }
    }
}

/// A running account: dropping it stops the account (it unregisters its context, CAP-6).
pub type Running = Box<dyn Any + Send + Sync>;

/// A started account: keep `running`, and mount `hook` at `/hooks/<platform>/<account>`.
pub struct Started {
    /// Dropping it stops the account.
    pub running: Running,
    /// Its inbound HTTP endpoint, if it has one.
    pub hook: Option<Arc<dyn Hook>>,
}

/// What the server tells every platform about itself.
#[derive(Debug, Clone, Copy)]
pub struct ServerContext<'a> {
    /// The data directory.
    pub data_dir: &'a Path,
    /// `server.public_url`.
    pub public_url: Option<&'a str>,
}

/// [`Platform`], erased, as the server's list of compiled platforms holds it.
pub trait DynPlatform: Send + Sync {
    /// Which platform.
    fn channel(&self) -> assent_core::model::Channel;

    /// Parses the table of account `id` (`[channels.<platform>.accounts.<id>]`): the shared
    /// keys, then the platform's own, strictly.
    fn configure(
        self: Arc<Self>,
        id: &str,
        table: Spanned<DeTable<'_>>,
        server: ServerContext<'_>,
    ) -> Result<Box<dyn ConfiguredAccount>, ConfigIssue>;
}

/// One account as configured: what `doctor` shows and probes, and what `serve` starts.
pub trait ConfiguredAccount: Send + Sync {
    /// `telegram/main`.
    fn key(&self) -> AccountKey;
    /// Who the bot is, from the config.
    fn identity(&self) -> String;
    /// Routing settings and setup hints.
    fn availability(&self) -> &AccountAvailability;
    /// The platform's `doctor` probe (blocking).
    fn probe(&self) -> Result<String, String>;
    /// Registers the account's context and lets the engine's bootstrap run it (CAP-7): it
    /// connects in the background, retries with backoff, and runs while this replica holds the
    /// account's lease (ST-7).
    fn start(self: Box<Self>, engine: &EngineHandle) -> Started;
}

impl<P: Platform> DynPlatform for P {
    fn channel(&self) -> assent_core::model::Channel {
        Platform::channel(self)
    }

    fn configure(
        self: Arc<Self>,
        id: &str,
        table: Spanned<DeTable<'_>>,
        server: ServerContext<'_>,
    ) -> Result<Box<dyn ConfiguredAccount>, ConfigIssue> {
        let channel = Platform::channel(&*self);
        let name = format!("channels.{}.accounts.{id}", channel.as_str());
        let span = table.span();
        let (mut shared, mut own) = (DeTable::new(), DeTable::new());
        for (k, v) in table.into_inner() {
            let side = if SHARED_KEYS.contains(&k.get_ref().as_ref()) { &mut shared } else { &mut own };
            side.insert(k, v);
        }
        let shared: SharedKeys = deserialize(shared, span.clone(), &name)?;
        let keys: P::Keys = deserialize(own, span.clone(), &name)?;
        let key = AccountKey::new(channel, id);
        let normalize = |raw: &str| self.normalize_approver(raw);
        let rule = ApproverRule { normalize: &normalize, example: self.approver_example() };
        let routing = shared.routing(key, &name, &rule)?;
        let availability = AccountAvailability::new(routing, name.clone(), self.approver_example());
        let setup =
            AccountSetup { id, table: &name, data_dir: server.data_dir, public_url: server.public_url };
        let account = self.account(keys, &setup).map_err(|m| ConfigIssue::at(span, m))?;
        Ok(Box::new(Configured { platform: self, account, availability }))
    }
}

fn deserialize<T: serde::de::DeserializeOwned>(
    table: DeTable<'_>,
    span: Range<usize>,
    name: &str,
) -> Result<T, ConfigIssue> {
    let value = ValueDeserializer::from(Spanned::new(span, DeValue::Table(table)));
    T::deserialize(value).map_err(|e| ConfigIssue::from_toml(name, &e))
}

struct Configured<P: Platform> {
    platform: Arc<P>,
    account: P::Account,
    availability: AccountAvailability,
}

impl<P: Platform> ConfiguredAccount for Configured<P> {
    fn key(&self) -> AccountKey {
        self.availability.settings().key.clone()
    }

    fn identity(&self) -> String {
        self.platform.identity(&self.account)
    }

    fn availability(&self) -> &AccountAvailability {
        &self.availability
    }

    fn probe(&self) -> Result<String, String> {
        self.platform.probe(&self.account, &self.availability)
    }

    fn start(self: Box<Self>, engine: &EngineHandle) -> Started {
        let key = self.key();
        let hook =
            self.platform.hook(&self.account, &self.availability, Inbound::new(engine.clone(), key.clone()));
        let registry = ContextRegistry::<P::Account>::new();
        let (platform, availability) = (self.platform.clone(), self.availability.clone());
        let inbound = Inbound::new(engine.clone(), key.clone());
        let label = key.clone();
        engine.bootstrap(registry.clone(), key.clone(), move |account: P::Account| {
            let (platform, availability, inbound, label) =
                (platform.clone(), availability.clone(), inbound.clone(), label.clone());
            async move {
                platform
                    .connect(account, availability, inbound)
                    .await
                    .map_err(|e| format!("{label}: {e} (see `assent doctor`)"))
            }
        });
        Started { running: Box::new(registry.register(key, self.account)), hook }
    }
}
