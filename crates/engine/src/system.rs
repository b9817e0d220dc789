//! Production clock and id source.

use std::time::{SystemTime, UNIX_EPOCH};

use assent_core::{
    clock::{Clock, Timestamp},
    id::IdGen,
};

/// Reads the system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        Timestamp(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}

/// 128 bits from the operating system's CSPRNG (NF-12).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsIds;

impl IdGen for OsIds {
    fn next_bits(&self) -> u128 {
        let mut bytes = [0u8; 16];
        // The OS random source failing is unrecoverable: ids must never be guessable.
        if let Err(e) = getrandom::fill(&mut bytes) {
            panic!("the operating system's random source failed: {e}");
        }
        u128::from_be_bytes(bytes)
    }
}
