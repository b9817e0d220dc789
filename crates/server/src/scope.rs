//! [`Scope`]: what a token may do. Its own module, so the configuration (which names scopes)
//! and authentication (which checks them) both depend on it and not on each other.

use serde::{Deserialize, Serialize};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Create approvals and see one's own.
    Request,
    /// See every approval and decide.
    Approve,
    /// Everything, including cancel of others' approvals, grant revocation and the audit log.
    Admin,
    /// Read `/metrics` from a non-loopback address.
    Metrics,
}
