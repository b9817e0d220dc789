//! NF-12: guessing tokens is throttled. Each client address gets a few failed authentications per
//! minute (API bearer tokens and console logins alike); after that each unknown token gets
//! `429 rate_limited` with `Retry-After` until the minute is over. A known token always passes,
//! so a guesser cannot lock out the legitimate clients behind the same address.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Failed authentications allowed per address and window.
const MAX_FAILURES: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses tracked at most; the oldest windows are dropped first when full.
const MAX_TRACKED: usize = 10_000;

/// Failed authentications per client address.
#[derive(Debug, Default)]
pub(crate) struct AuthFailures {
    by_addr: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthFailures {
    /// `Err(seconds)` while `addr` is blocked.
    pub(crate) fn check(&self, addr: IpAddr) -> Result<(), u64> {
        let map = self.by_addr.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match map.get(&addr) {
            Some((start, n)) if *n >= MAX_FAILURES && start.elapsed() < WINDOW => {
                Err((WINDOW - start.elapsed()).as_secs().max(1))
            }
            _ => Ok(()),
        }
    }

    /// Counts one failure of `addr`.
    pub(crate) fn fail(&self, addr: IpAddr) {
        let mut map = self.by_addr.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= MAX_TRACKED {
            map.retain(|_, (start, _)| start.elapsed() < WINDOW);
        }
        let entry = map.entry(addr).or_insert((Instant::now(), 0));
        if entry.0.elapsed() >= WINDOW {
            *entry = (Instant::now(), 0);
        }
        entry.1 += 1;
    }
}
