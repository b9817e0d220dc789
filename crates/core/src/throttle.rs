//! Guess throttling for typed refs (IX-7), pure over timestamps.
//!
//! More than 10 failed lookups per (account, actor) in 10 minutes throttle that actor for 10
//! minutes; more than 100 per account throttle every typed lookup on it.

use std::{
    collections::{HashMap, VecDeque},
    time::Duration,
};

use crate::{clock::Timestamp, lifecycle::Rejection, model::AccountKey};

const WINDOW: Duration = Duration::from_secs(600);
const PENALTY: Duration = Duration::from_secs(600);
const PER_ACTOR: usize = 10;
const PER_ACCOUNT: usize = 100;

#[derive(Debug, Default)]
struct Window {
    failures: VecDeque<Timestamp>,
    blocked_until: Option<Timestamp>,
}

impl Window {
    fn prune(&mut self, now: Timestamp) {
        while self.failures.front().is_some_and(|t| t.until(now) >= WINDOW) {
            self.failures.pop_front();
        }
    }

    fn check(&self, now: Timestamp) -> Result<(), Rejection> {
        match self.blocked_until {
            Some(until) if now < until => Err(Rejection::Throttled { retry_after: now.until(until) }),
            _ => Ok(()),
        }
    }

    fn fail(&mut self, now: Timestamp, limit: usize) {
        self.prune(now);
        self.failures.push_back(now);
        if self.failures.len() > limit {
            self.blocked_until = Some(now + PENALTY);
        }
    }
}

/// Failed-lookup counters for typed `/approve` refs.
#[derive(Debug, Default)]
pub struct GuessThrottle {
    actors: HashMap<(AccountKey, String), Window>,
    accounts: HashMap<AccountKey, Window>,
}

impl GuessThrottle {
    /// Refuses while the actor or the whole account is throttled.
    pub fn check(&self, account: &AccountKey, actor: &str, now: Timestamp) -> Result<(), Rejection> {
        if let Some(w) = self.accounts.get(account) {
            w.check(now)?;
        }
        match self.actors.get(&(account.clone(), actor.to_owned())) {
            Some(w) => w.check(now),
            None => Ok(()),
        }
    }

    /// Records a failed lookup.
    pub fn record_failure(&mut self, account: &AccountKey, actor: &str, now: Timestamp) {
        self.actors.entry((account.clone(), actor.to_owned())).or_default().fail(now, PER_ACTOR);
        self.accounts.entry(account.clone()).or_default().fail(now, PER_ACCOUNT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Channel;

    #[test]
    fn ix_7_eleventh_failure_throttles_the_actor_for_ten_minutes() {
        let acct = AccountKey::new(Channel::Telegram, "main");
        let mut t = GuessThrottle::default();
        let start = Timestamp(1_000_000);
        for i in 0..10 {
            t.record_failure(&acct, "telegram:1", start + Duration::from_secs(i));
            assert!(t.check(&acct, "telegram:1", start + Duration::from_secs(i)).is_ok());
        }
        let at = start + Duration::from_secs(10);
        t.record_failure(&acct, "telegram:1", at);
        assert_eq!(t.check(&acct, "telegram:1", at), Err(Rejection::Throttled { retry_after: PENALTY }));
        assert!(t.check(&acct, "telegram:2", at).is_ok(), "other actors are not affected");
        assert!(t.check(&acct, "telegram:1", at + PENALTY).is_ok());
    }

    #[test]
    fn ix_7_failures_outside_the_window_do_not_count() {
        let acct = AccountKey::new(Channel::Telegram, "main");
        let mut t = GuessThrottle::default();
        for i in 0..30 {
            let at = Timestamp(0) + Duration::from_secs(i * 61);
            t.record_failure(&acct, "telegram:1", at);
            assert!(t.check(&acct, "telegram:1", at).is_ok(), "at failure {i}");
        }
    }

    #[test]
    fn ix_7_a_hundred_and_one_failures_throttle_the_whole_account() {
        let acct = AccountKey::new(Channel::Telegram, "main");
        let mut t = GuessThrottle::default();
        for i in 0..101 {
            t.record_failure(&acct, &format!("telegram:{i}"), Timestamp(i64::from(i) * 1000));
        }
        assert!(matches!(
            t.check(&acct, "telegram:new", Timestamp(101_000)),
            Err(Rejection::Throttled { .. })
        ));
    }
}
