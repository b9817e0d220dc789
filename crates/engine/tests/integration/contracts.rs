//! ST-1 and CAP-11 for the reference implementations.

use std::sync::Arc;

use assent_core::memory::MemoryStore;
use assent_testing::{channel_contract::FakeHarness, channel_contract_tests, store_contract_tests};

mod memory_store {
    use super::*;
    store_contract_tests!(async { Arc::new(MemoryStore::new()) });
}

mod fake_channel {
    use super::*;
    channel_contract_tests!(async { FakeHarness::shared() });
}
