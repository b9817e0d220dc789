//! Plugin approvals (DM-3).

use serde::{Deserialize, Serialize};

use super::{
    Decision,
    validate::{ValidationError, chars_between, max_bytes},
};

/// How dangerous a plugin action is; drives the card badge and colour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Severity {
    /// Informational.
    Info,
    /// The default.
    #[default]
    Warning,
    /// Destructive or irreversible.
    Critical,
}

/// A plugin request as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginRequest {
    /// `[a-z0-9._-]{1,64}`.
    pub plugin_id: String,
    /// 1..=80 characters.
    pub title: String,
    /// 1..=512 characters.
    pub description: String,
    /// Defaults to warning.
    #[serde(default)]
    pub severity: Severity,
    /// Tool name, ≤ 64 bytes.
    #[serde(default)]
    pub tool_name: Option<String>,
    /// Tool call id, ≤ 128 bytes.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    /// Decisions the plugin can honour; must include allow-once and deny.
    #[serde(default)]
    pub allowed_decisions: Option<Vec<Decision>>,
}

/// A validated plugin action as stored (same fields as the request).
pub type PluginAction = PluginRequest;

impl PluginRequest {
    /// Validates every field.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let id_ok = (1..=64).contains(&self.plugin_id.len())
            && self
                .plugin_id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
        if !id_ok {
            return Err(ValidationError::new("plugin_id", "1 to 64 characters of [a-z0-9._-]"));
        }
        chars_between("title", &self.title, 1, 80)?;
        chars_between("description", &self.description, 1, 512)?;
        max_bytes("tool_name", self.tool_name.as_deref(), 64)?;
        max_bytes("tool_call_id", self.tool_call_id.as_deref(), 128)?;
        if let Some(set) = &self.allowed_decisions
            && !(set.contains(&Decision::AllowOnce) && set.contains(&Decision::Deny))
        {
            return Err(ValidationError::new("allowed_decisions", "must include allow-once and deny"));
        }
        Ok(())
    }
}
