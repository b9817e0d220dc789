//! Sends paced as Telegram asks ("My bot is hitting limits, how do I avoid this?"): about one
//! message a second in a chat, and at most 20 a minute in a group.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use tokio::time::Instant;

/// The next free send slot of each chat.
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    next: Mutex<HashMap<i64, Instant>>,
}

/// Private chats have positive ids; groups and channels negative ones.
fn interval(chat: i64) -> Duration {
    if chat > 0 { Duration::from_secs(1) } else { Duration::from_secs(3) }
}

impl Pacer {
    /// Waits for `chat`'s next slot and takes it.
    pub(crate) async fn turn(&self, chat: i64) {
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let slot = next.get(&chat).copied().filter(|t| *t > now).unwrap_or(now);
            next.insert(chat, slot + interval(chat));
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}
