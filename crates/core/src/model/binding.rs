//! Conversation binding approvals (DM-4, BD-1).

use serde::{Deserialize, Serialize};

use super::{
    Channel, Origin,
    exec::sha256_hex,
    validate::{ValidationError, chars_between, max_bytes},
};

/// The plugin install that wants a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginRef {
    /// Plugin id.
    pub id: String,
    /// Display name, ≤ 80 characters.
    pub name: String,
    /// Stable install identifier, ≤ 512 bytes. Grants are keyed by it, never by id alone.
    pub root: String,
}

/// A conversation on a channel account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Conversation {
    /// Platform.
    pub channel: Channel,
    /// Account id; `default` when omitted.
    #[serde(default = "default_account")]
    pub account: String,
    /// Conversation id.
    pub conversation: String,
    /// Parent conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
}

fn default_account() -> String {
    "default".to_owned()
}

impl Conversation {
    /// Trims ids and fills the default account (BD-1).
    pub fn normalized(mut self) -> Self {
        let trim = |s: &mut String| *s = s.trim().to_owned();
        trim(&mut self.account);
        trim(&mut self.conversation);
        if self.account.is_empty() {
            self.account = default_account();
        }
        for s in [&mut self.parent, &mut self.thread].into_iter().flatten() {
            trim(s);
        }
        self
    }

    /// Digest of (channel, account, parent, conversation, thread): the binding key (BD-6).
    pub fn binding_key(&self) -> String {
        let parts = [
            self.channel.as_str(),
            &self.account,
            self.parent.as_deref().unwrap_or(""),
            &self.conversation,
            self.thread.as_deref().unwrap_or(""),
        ];
        sha256_hex(parts.join("\u{1f}").as_bytes())
    }

    /// The conversation as a routing origin: a binding's cards go to the bound conversation.
    pub fn as_origin(&self) -> Origin {
        Origin {
            channel: self.channel,
            account: self.account.clone(),
            conversation: self.conversation.clone(),
            parent: self.parent.clone(),
            thread: self.thread.clone(),
        }
    }
}

/// A binding request as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BindingRequest {
    /// The plugin install.
    pub plugin: PluginRef,
    /// The conversation it wants.
    pub conversation: Conversation,
    /// What the plugin will do there, ≤ 280 characters.
    pub summary: String,
    /// How to detach it again, ≤ 120 characters.
    #[serde(default)]
    pub detach_hint: String,
    /// Platform user who asked, if any (BD-2).
    #[serde(default)]
    pub requested_by: Option<String>,
}

/// A validated binding action as stored.
pub type BindingAction = BindingRequest;

impl BindingRequest {
    /// Validates and normalizes the request.
    pub fn validated(mut self) -> Result<Self, ValidationError> {
        self.conversation = self.conversation.normalized();
        chars_between("plugin.id", &self.plugin.id, 1, 64)?;
        chars_between("plugin.name", &self.plugin.name, 1, 80)?;
        chars_between("plugin.root", &self.plugin.root, 1, 512)?;
        max_bytes("plugin.root", Some(&self.plugin.root), 512)?;
        chars_between("conversation.conversation", &self.conversation.conversation, 1, 256)?;
        chars_between("summary", &self.summary, 1, 280)?;
        chars_between("detach_hint", &self.detach_hint, 0, 120)?;
        Ok(self)
    }
}
