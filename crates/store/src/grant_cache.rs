//! SQLite's active grants, kept in memory so that the policy check of a request reads no row
//! (issue 15: before this, every request read and decoded every active grant of its kind).
//!
//! Only SQLite has one: its lock file makes this process the database's only writer, and every
//! grant write passes through its writer thread (`crate::sqlite_writer`), which applies it here,
//! in commit order, once its batch is durable and before it answers the caller. PostgreSQL
//! replicas write grants the others do not see, so they read the table each time.
//!
//! The cache can only ever be late, never wrong in the unsafe direction: a hit on a grant that
//! was revoked meanwhile is refused by the store itself (`GrantWrite::Use` needs an unrevoked
//! row), and such a refusal makes the cache load afresh. A read that started before a grant
//! write never stores its result over that write (the generation check in [`GrantCache::fill`]).

// Without SQLite, nothing fills the cache: the PostgreSQL store reads the table.
#![cfg_attr(not(feature = "sqlite"), allow(dead_code))]

use std::sync::{Mutex, MutexGuard};

use assent_core::{
    model::{Grant, Kind},
    store::GrantWrite,
};

/// The cached active grants, or nothing until the first read loads them.
#[derive(Debug, Default)]
pub(crate) struct GrantCache {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Every active grant, of every kind; `None`: load from the table.
    active: Option<Vec<Grant>>,
    /// Bumped by every change, so a load that raced one is not kept.
    generation: u64,
}

impl GrantCache {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state is replaced whole or not at all, so a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The active grants of `kind`, or `Err(generation)` to load them and [`fill`](Self::fill).
    pub(crate) fn get(&self, kind: Kind) -> Result<Vec<Grant>, u64> {
        let state = self.state();
        match &state.active {
            Some(all) => Ok(all.iter().filter(|g| g.kind == kind).cloned().collect()),
            None => Err(state.generation),
        }
    }

    /// Keeps `active`, read from the table after [`get`](Self::get) returned `generation`,
    /// unless a change came in between.
    pub(crate) fn fill(&self, generation: u64, active: Vec<Grant>) {
        let mut state = self.state();
        if state.generation == generation {
            state.active = Some(active);
        }
    }

    /// Applies a durable commit's grant writes.
    pub(crate) fn apply(&self, writes: &[GrantWrite]) {
        let mut state = self.state();
        state.generation += 1;
        let Some(active) = &mut state.active else { return };
        for w in writes {
            match w {
                GrantWrite::Insert(g) if g.revoked_at.is_none() => active.push((**g).clone()),
                GrantWrite::Insert(_) => {}
                GrantWrite::Use { id, at } => {
                    if let Some(g) = active.iter_mut().find(|g| &g.id == id) {
                        g.use_count += 1;
                        g.last_used_at = Some(*at);
                    }
                }
                GrantWrite::Revoke { id, .. } => active.retain(|g| &g.id != id),
            }
        }
    }

    /// Drops what is cached: the next read loads the table.
    pub(crate) fn forget(&self) {
        let mut state = self.state();
        state.generation += 1;
        state.active = None;
    }
}

#[cfg(test)]
mod tests {
    use assent_core::{clock::Timestamp, model::Kind, store::GrantWrite};

    use super::GrantCache;

    fn grant(bits: u128) -> assent_core::model::Grant {
        assent_testing::store_contract::grant(bits)
    }

    #[test]
    fn a_load_that_raced_a_change_is_not_kept() {
        let cache = GrantCache::default();
        let generation = cache.get(Kind::Exec).unwrap_err();
        cache.apply(&[GrantWrite::Insert(Box::new(grant(1)))]);
        cache.fill(generation, Vec::new());
        assert!(cache.get(Kind::Exec).is_err(), "the stale load must not hide the new grant");
    }

    #[test]
    fn writes_keep_the_cache_in_step_with_the_table() {
        let cache = GrantCache::default();
        cache.fill(cache.get(Kind::Exec).unwrap_err(), vec![grant(1)]);
        let (id, at) = (grant(1).id, Timestamp(7));
        cache.apply(&[GrantWrite::Insert(Box::new(grant(2))), GrantWrite::Use { id: id.clone(), at }]);
        let active = cache.get(Kind::Exec).unwrap();
        assert_eq!(
            active.iter().map(|g| (g.use_count, g.last_used_at)).collect::<Vec<_>>(),
            [(1, Some(at)), (0, None)]
        );
        cache.apply(&[GrantWrite::Revoke { id, at, by: "console:admin".into() }]);
        assert_eq!(cache.get(Kind::Exec).unwrap(), [grant(2)]);
        assert!(cache.get(Kind::Binding).unwrap().is_empty());
        cache.forget();
        assert!(cache.get(Kind::Exec).is_err());
    }
}
