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

fn encode(value: u128) -> [u8; ID_LEN] {
    std::array::from_fn(|i| {
        let shift = 5 * (ID_LEN - 1 - i);
        ALPHABET[((value >> shift) & 31) as usize]
    })
}

fn is_id_char(c: char) -> bool {
    ALPHABET.contains(&(c as u8)) && c.is_ascii()
}

/// The id's bytes, lower-cased, if `s` is an id in either case.
fn validate(s: &str) -> Result<[u8; ID_LEN], InvalidId> {
    let invalid = || InvalidId(s.to_ascii_lowercase());
    let mut bytes: [u8; ID_LEN] = s.as_bytes().try_into().map_err(|_| invalid())?;
    bytes.make_ascii_lowercase();
    // The first character carries only the top three of the 130 encoded bits.
    if (b'0'..=b'7').contains(&bytes[0]) && bytes.iter().all(|b| ALPHABET.contains(b)) {
        Ok(bytes)
    } else {
        Err(invalid())
    }
}

/// True if `s` could be the start of an id (used to validate typed refs).
pub fn is_id_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= ID_LEN && s.chars().all(is_id_char)
}

// An id is kept inline, not in a `String`: ids are copied into every record, event and audit
// entry of an approval, and a copy is then a 26-byte move instead of a heap allocation. The
// bytes are always validated ASCII, so they are always valid UTF-8, and they order like the text.
macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(value_type = String))]
        #[serde(try_from = "String")]
        pub struct $name([u8; ID_LEN]);

        impl $name {
            /// Renders 128 random bits as an id.
            pub fn from_bits(bits: u128) -> Self {
                Self(encode(bits))
            }

            /// Parses a rendered id, accepting upper case input.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                Ok(Self(validate(s)?))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                // Every constructor writes validated ASCII (see above): the fallback is never taken.
                std::str::from_utf8(&self.0).unwrap_or_default()
            }

            /// The ref: the first eight characters.
            pub fn short_ref(&self) -> &str {
                &self.as_str()[..REF_LEN]
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
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
                id.as_str().to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.as_str())
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
    fn ids_are_plain_strings_on_the_wire_and_order_like_their_text() {
        let id = ApprovalId::from_bits(0x1234_5678_9abc_def0_1234_5678_9abc_def0);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ApprovalId>(&json).unwrap(), id);
        let upper = format!("\"{}\"", id.as_str().to_ascii_uppercase());
        assert_eq!(serde_json::from_str::<ApprovalId>(&upper).unwrap(), id, "upper case is accepted");
        let err = serde_json::from_str::<ApprovalId>("\"00000000000000000000000000é\"").unwrap_err();
        assert!(err.to_string().contains("is not an assent id"), "{err}");
        assert_eq!(String::from(id.clone()), id.as_str());
        assert_eq!(format!("{id:?}"), format!("ApprovalId({id})"));
        assert_eq!(id.short_ref(), &id.as_str()[..REF_LEN]);

        let mut ids: Vec<ApprovalId> = [u128::MAX, 0, 1 << 70, 31, 32].map(ApprovalId::from_bits).to_vec();
        ids.sort();
        let texts: Vec<&str> = ids.iter().map(ApprovalId::as_str).collect();
        let mut sorted = texts.clone();
        sorted.sort_unstable();
        assert_eq!(texts, sorted);
    }

    #[test]
    fn dm_1_sequential_ids_have_distinct_refs() {
        let ids = SequentialIds::default();
        let refs: std::collections::HashSet<String> =
            (0..1000).map(|_| ids.approval_id().short_ref().to_owned()).collect();
        assert_eq!(refs.len(), 1000);
    }
}
