//! Callback tokens (CH-CARD-2) as a platform hands them back: anything that is not a token this
//! keyring signed for this account is refused, and nothing panics.
#![no_main]

use assent_core::{
    id::ApprovalId,
    model::{AccountKey, Channel, Decision, Kind},
    token::{Keyring, TokenAction, TokenKey},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(text) = std::str::from_utf8(input) else { return };
    let keyring = Keyring::new(TokenKey::new([7; 32]), vec![TokenKey::new([9; 32])]);
    let account = AccountKey::new(Channel::Telegram, "main");
    if let Ok(token) = keyring.verify(text, &account) {
        // Only a token signed here verifies: signing what it claims gives the same text back.
        let again = keyring.sign(token.kind, token.action, &token.id, &account);
        let old = Keyring::new(TokenKey::new([9; 32]), Vec::new()).sign(
            token.kind,
            token.action,
            &token.id,
            &account,
        );
        assert!(text == again || text == old, "a token verified that was never signed: {text:?}");
    }
    // A real token with one byte changed by the input never verifies.
    let id = ApprovalId::from_bits(0x0123_4567_89ab_cdef);
    let real = keyring.sign(Kind::Exec, TokenAction::Decide(Decision::AllowOnce), &id, &account);
    if let Some((&pos, &byte)) = input.first().zip(input.get(1)) {
        let mut forged = real.clone().into_bytes();
        let i = usize::from(pos) % forged.len();
        if forged[i] != byte {
            forged[i] = byte;
            if let Ok(forged) = String::from_utf8(forged) {
                assert!(keyring.verify(&forged, &account).is_err(), "a forged token verified: {forged:?}");
            }
        }
    }
});
