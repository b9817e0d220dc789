//! Identifiers: 128-bit random ids rendered as 26 lowercase Crockford base32 characters (DM-1).

use std::{
    fmt,
    sync::atomic::{AtomicU64, Ordering},
};

use serde::{Deserialize, Serialize};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Length of a rendered id.
pub const ID_LEN: usize = 26;
/// Length of a ref, the id's first characters shown on cards and typed in `/approve`.
pub const REF_LEN: usize = 8;

/// Error for a string that is not a valid assent id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an assent id: expected 26 characters of lowercase Crockford base32")]
pub struct InvalidId(pub String);

fn encode(value: u128) -> String {
    (0..ID_LEN)
        .map(|i| {
            let shift = 5 * (ID_LEN - 1 - i);
            char::from(ALPHABET[((value >> shift) & 31) as usize])
        })
        .collect()
}

fn is_id_char(c: char) -> bool {
    ALPHABET.contains(&(c as u8)) && c.is_ascii()
}

fn validate(s: &str) -> Result<(), InvalidId> {
    // The first character carries only the top three of the 130 encoded bits.
    let first_ok = s.as_bytes().first().is_some_and(|b| (b'0'..=b'7').contains(b));
    if s.len() == ID_LEN && first_ok && s.chars().all(is_id_char) {
        Ok(())
    } else {
        Err(InvalidId(s.to_owned()))
    }
}

/// True if `s` could be the start of an id (used to validate typed refs).
pub fn is_id_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= ID_LEN && s.chars().all(is_id_char)
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Renders 128 random bits as an id.
            pub fn from_bits(bits: u128) -> Self {
                Self(encode(bits))
            }

            /// Parses a rendered id, accepting upper case input.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                let lower = s.to_ascii_lowercase();
                validate(&lower)?;
                Ok(Self(lower))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The ref: the first eight characters.
            pub fn short_ref(&self) -> &str {
                &self.0[..REF_LEN]
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

define_id!(
    /// Id of an approval.
    ApprovalId
);
define_id!(
    /// Id of a grant.
    GrantId
);
define_id!(
    /// Id of a delivered card in the ledger.
    EntryId
);
define_id!(
    /// Id of a conversation binding.
    BindingId
);

/// Source of random ids. Production uses the OS CSPRNG; tests use [`SequentialIds`].
pub trait IdGen: Send + Sync {
    /// 128 fresh bits.
    fn next_bits(&self) -> u128;
}

/// Convenience constructors on every [`IdGen`].
pub trait IdGenExt: IdGen {
    /// A new approval id.
    fn approval_id(&self) -> ApprovalId {
        ApprovalId::from_bits(self.next_bits())
    }
    /// A new grant id.
    fn grant_id(&self) -> GrantId {
        GrantId::from_bits(self.next_bits())
    }
    /// A new entry id.
    fn entry_id(&self) -> EntryId {
        EntryId::from_bits(self.next_bits())
    }
    /// A new binding id.
    fn binding_id(&self) -> BindingId {
        BindingId::from_bits(self.next_bits())
    }
}

impl<T: IdGen + ?Sized> IdGenExt for T {}

/// Deterministic ids for tests: a counter spread over the whole id so refs differ.
#[derive(Debug, Default)]
pub struct SequentialIds(AtomicU64);

impl IdGen for SequentialIds {
    fn next_bits(&self) -> u128 {
        let n = u128::from(self.0.fetch_add(1, Ordering::Relaxed) + 1);
        // Multiply by an odd constant so consecutive ids have distinct eight-character refs.
        n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835) >> 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_1_ids_are_26_lowercase_crockford_chars() {
        let id = ApprovalId::from_bits(u128::MAX);
        assert_eq!(id.as_str().len(), ID_LEN);
        assert_eq!(id.as_str(), "7zzzzzzzzzzzzzzzzzzzzzzzzz");
        assert_eq!(ApprovalId::from_bits(0).as_str(), "0".repeat(26));
        assert_eq!(ApprovalId::parse("7ZZZZZZZZZZZZZZZZZZZZZZZZZ").unwrap(), id);
        assert!(ApprovalId::parse("8zzzzzzzzzzzzzzzzzzzzzzzzz").is_err(), "131st bit");
        assert!(ApprovalId::parse("0000000000000000000000000u").is_err(), "u is not Crockford");
        assert!(ApprovalId::parse("short").is_err());
    }

    #[test]
    fn dm_1_sequential_ids_have_distinct_refs() {
        let ids = SequentialIds::default();
        let refs: std::collections::HashSet<String> =
            (0..1000).map(|_| ids.approval_id().short_ref().to_owned()).collect();
        assert_eq!(refs.len(), 1000);
    }
}
