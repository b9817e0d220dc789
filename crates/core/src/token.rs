//! MAC-verified callback tokens (CH-CARD-2): `v1.<k>.<d>.<id>.<mac>`, 45 bytes, so they fit
//! Telegram `callback_data` (64 B), Discord `custom_id` (100) and Slack button values.
//!
//! The MAC binds kind, action, id, channel and account, so a token copied to another bot or
//! edited to another decision is refused.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{
    id::ApprovalId,
    lifecycle::Rejection,
    model::{AccountKey, Decision, Kind},
};

/// The length of every token.
pub const TOKEN_LEN: usize = 45;

/// What a control does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenAction {
    /// A decision.
    Decide(Decision),
    /// Send the full text privately (PO-11).
    FullText,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackToken {
    /// The kind the control was rendered for; must equal the record's (LC-17).
    pub kind: Kind,
    /// The action.
    pub action: TokenAction,
    /// The approval.
    pub id: ApprovalId,
}

/// A 32-byte install key, kept in the data dir with mode 0600.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(‹secret›)")
    }
}

impl TokenKey {
    /// Wraps key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// The current key plus retired keys that still verify (`callback_keys`).
#[derive(Debug, Clone)]
pub struct Keyring {
    current: TokenKey,
    retired: Vec<TokenKey>,
}

fn kind_code(k: Kind) -> char {
    match k {
        Kind::Exec => 'e',
        Kind::Plugin => 'p',
        Kind::Binding => 'b',
    }
}

fn action_code(a: TokenAction) -> char {
    match a {
        TokenAction::Decide(Decision::AllowOnce) => 'o',
        TokenAction::Decide(Decision::AllowAlways) => 'a',
        TokenAction::Decide(Decision::Deny) => 'd',
        TokenAction::FullText => 'f',
    }
}

fn mac(key: &TokenKey, k: char, d: char, id: &str, account: &AccountKey) -> String {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).unwrap_or_else(|_| unreachable!());
    // The MAC'd text is `v1|{k}|{d}|{id}|{channel}|{account}`, fed piece by piece: a token is
    // signed for every button of every card and checked on every press.
    let (mut kb, mut db) = ([0; 4], [0; 4]);
    for piece in [
        "v1|",
        k.encode_utf8(&mut kb),
        "|",
        d.encode_utf8(&mut db),
        "|",
        id,
        "|",
        account.channel.as_str(),
        "|",
        &account.account,
    ] {
        m.update(piece.as_bytes());
    }
    let tag = m.finalize().into_bytes();
    URL_SAFE_NO_PAD.encode(&tag[..8])
}

impl Keyring {
    /// A keyring with one current key and retired keys.
    pub fn new(current: TokenKey, retired: Vec<TokenKey>) -> Self {
        Self { current, retired }
    }

    /// Signs a control for one account.
    pub fn sign(&self, kind: Kind, action: TokenAction, id: &ApprovalId, account: &AccountKey) -> String {
        let (k, d) = (kind_code(kind), action_code(action));
        format!("v1.{k}.{d}.{id}.{}", mac(&self.current, k, d, id.as_str(), account))
    }

    /// Verifies a token received by `account`. Anything wrong is `NotFound`: a forged token
    /// learns nothing.
    pub fn verify(&self, token: &str, account: &AccountKey) -> Result<CallbackToken, Rejection> {
        let parts: Vec<&str> = token.split('.').collect();
        let [v, k, d, id, given] = parts.as_slice() else { return Err(Rejection::NotFound) };
        let kind = match *k {
            "e" => Kind::Exec,
            "p" => Kind::Plugin,
            "b" => Kind::Binding,
            _ => return Err(Rejection::NotFound),
        };
        let action = match *d {
            "o" => TokenAction::Decide(Decision::AllowOnce),
            "a" => TokenAction::Decide(Decision::AllowAlways),
            "d" => TokenAction::Decide(Decision::Deny),
            "f" => TokenAction::FullText,
            _ => return Err(Rejection::NotFound),
        };
        let id = ApprovalId::parse(id).map_err(|_| Rejection::NotFound)?;
        if *v != "v1" || id.as_str() != parts[3] {
            return Err(Rejection::NotFound);
        }
        let (kc, dc) = (kind_code(kind), action_code(action));
        let valid = std::iter::once(&self.current)
            .chain(&self.retired)
            .any(|key| bool::from(mac(key, kc, dc, id.as_str(), account).as_bytes().ct_eq(given.as_bytes())));
        if valid { Ok(CallbackToken { kind, action, id }) } else { Err(Rejection::NotFound) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Channel;

    fn ring() -> Keyring {
        Keyring::new(TokenKey::new([7; 32]), vec![])
    }

    #[test]
    fn ch_card_2_tokens_are_45_bytes_and_verify() {
        let id = ApprovalId::from_bits(42);
        let acct = AccountKey::new(Channel::Telegram, "main");
        for kind in Kind::ALL {
            for action in [
                TokenAction::Decide(Decision::AllowOnce),
                TokenAction::Decide(Decision::AllowAlways),
                TokenAction::Decide(Decision::Deny),
                TokenAction::FullText,
            ] {
                let t = ring().sign(kind, action, &id, &acct);
                assert_eq!(t.len(), TOKEN_LEN, "{t}");
                assert!(t.len() <= 64, "fits Telegram callback_data");
                assert_eq!(ring().verify(&t, &acct).unwrap(), CallbackToken { kind, action, id: id.clone() });
            }
        }
    }

    /// Tokens already sit in delivered cards (a Telegram button's `callback_data`), so a
    /// change in how they are computed would make every card sent before an upgrade dead.
    #[test]
    fn ch_card_2_a_token_is_the_same_bytes_from_release_to_release() {
        let id = ApprovalId::from_bits(42);
        let acct = AccountKey::new(Channel::Slack, "T01-main");
        let t = ring().sign(Kind::Exec, TokenAction::Decide(Decision::AllowAlways), &id, &acct);
        assert_eq!(t, "v1.e.a.0000000000000000000000001a.NzA0lubEVAk");
    }

    #[test]
    fn ch_card_2_tampering_other_accounts_and_unknown_codes_are_not_found() {
        let id = ApprovalId::from_bits(42);
        let acct = AccountKey::new(Channel::Telegram, "main");
        let t = ring().sign(Kind::Exec, TokenAction::Decide(Decision::Deny), &id, &acct);
        let other = AccountKey::new(Channel::Telegram, "other");
        assert_eq!(ring().verify(&t, &other), Err(Rejection::NotFound));
        let upgraded = t.replacen(".d.", ".o.", 1);
        assert_eq!(ring().verify(&upgraded, &acct), Err(Rejection::NotFound));
        let unknown = t.replacen(".d.", ".x.", 1);
        assert_eq!(ring().verify(&unknown, &acct), Err(Rejection::NotFound));
        let wrong_key = Keyring::new(TokenKey::new([8; 32]), vec![]);
        assert_eq!(wrong_key.verify(&t, &acct), Err(Rejection::NotFound));
        assert_eq!(ring().verify("garbage", &acct), Err(Rejection::NotFound));
    }

    #[test]
    fn ch_card_2_retired_keys_still_verify() {
        let id = ApprovalId::from_bits(1);
        let acct = AccountKey::new(Channel::Discord, "main");
        let old = ring().sign(Kind::Plugin, TokenAction::Decide(Decision::AllowOnce), &id, &acct);
        let rotated = Keyring::new(TokenKey::new([9; 32]), vec![TokenKey::new([7; 32])]);
        assert!(rotated.verify(&old, &acct).is_ok());
    }
}
