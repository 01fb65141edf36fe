//! The in-memory buffer between `OnMessage` calls and the database: one coalesced update per
//! (user, key), bounded in entries. The key and the update are the layout's: (user, goal) and an
//! [`Update`](super::update::Update) per matching goal for per-goal, (user, source) and one
//! [`StatDelta`](super::update::StatDelta) per event for per-stat.
//!
//! An event's updates enter the buffer all together or not at all, so an event refused with
//! `RESOURCE_EXHAUSTED` (and retried by the platform) is never half-applied. The flusher
//! [`take`](EventBuffer::take)s the whole map at once; entries it could not yet write still count
//! against the bound (through [`set_in_flight`](EventBuffer::set_in_flight)) so a database outage
//! fills the buffer and pushes back rather than growing memory without limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::NaiveDateTime;
use tokio::sync::Notify;

use super::update::Coalesce;

/// A buffered, coalesced change to one (user, key) row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<U> {
    /// The user.
    pub user_id: Arc<str>,
    /// The user's namespace.
    pub namespace: Arc<str>,
    /// The goal's or the source's dense index in the configuration.
    pub key: u32,
    /// The coalesced change.
    pub update: U,
    /// When the latest coalesced event was received (UTC).
    pub last_event_at: NaiveDateTime,
}

type Key = (Arc<str>, u32);

/// Why an event was not buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The buffer stayed full.
    #[error("event buffer full ({limit} entries) and no flush freed space in time")]
    Full {
        /// The configured bound.
        limit: usize,
    },
    /// The service is shutting down: its final flush has begun.
    #[error("the event handler is shutting down")]
    Closed,
}

/// The bounded, coalescing buffer shared by all `OnMessage` calls and the flusher.
#[derive(Debug)]
pub struct EventBuffer<U> {
    entries: Mutex<HashMap<Key, Entry<U>>>,
    in_flight: AtomicUsize,
    /// Set (under the `entries` lock) once the final flush begins: nothing enters after it.
    closed: AtomicBool,
    limit: usize,
    /// Signalled when the buffer would need a flush to accept more (wakes the flusher early).
    pub flush_wanted: Notify,
    /// Signalled after a flush wrote entries (wakes callers waiting for space).
    space_freed: Notify,
}

impl<U: Coalesce> EventBuffer<U> {
    /// A buffer holding at most `limit` entries.
    pub fn new(limit: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            limit: limit.max(1),
            flush_wanted: Notify::new(),
            space_freed: Notify::new(),
        }
    }

    /// Entries waiting to be written: buffered plus taken-but-unwritten.
    pub fn len(&self) -> usize {
        self.lock().len() + self.in_flight.load(Ordering::Acquire)
    }

    /// True when nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses every later event (`Refused::Closed`): once this returns, what the buffer holds is
    /// all it will ever hold, so a final flush can take it. Callers waiting for space are woken.
    pub fn close(&self) {
        let entries = self.lock();
        self.closed.store(true, Ordering::Release);
        drop(entries);
        self.space_freed.notify_waiters();
    }

    /// Buffers one event's updates, waiting up to `wait` for space if the buffer is full.
    pub async fn record(
        &self,
        user_id: &Arc<str>,
        namespace: &Arc<str>,
        updates: Vec<(u32, U)>,
        now: NaiveDateTime,
        wait: Duration,
    ) -> Result<(), Refused> {
        if updates.is_empty() {
            return Ok(());
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut updates = Some(updates);
        loop {
            // Register interest before checking, so a flush between the check and the wait
            // still wakes this call.
            let freed = self.space_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_record(user_id, namespace, updates.take().expect("present"), now) {
                Ok(()) => return Ok(()),
                Err(None) => return Err(Refused::Closed),
                Err(Some(back)) => updates = Some(back),
            }
            self.flush_wanted.notify_one();
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(Refused::Full { limit: self.limit });
            }
        }
    }

    fn try_record(
        &self,
        user_id: &Arc<str>,
        namespace: &Arc<str>,
        updates: Vec<(u32, U)>,
        now: NaiveDateTime,
    ) -> Result<(), Option<Vec<(u32, U)>>> {
        let mut entries = self.lock();
        if self.closed.load(Ordering::Acquire) {
            return Err(None);
        }
        let used = entries.len() + self.in_flight.load(Ordering::Acquire);
        if used + updates.len() > self.limit {
            let new_keys = updates.iter().filter(|(key, _)| !entries.contains_key(&(user_id.clone(), *key))).count();
            if used + new_keys > self.limit {
                return Err(Some(updates));
            }
        }
        for (key, update) in updates {
            match entries.entry((user_id.clone(), key)) {
                std::collections::hash_map::Entry::Occupied(mut slot) => {
                    let entry = slot.get_mut();
                    entry.update.coalesce(update);
                    entry.last_event_at = entry.last_event_at.max(now);
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Entry {
                        user_id: user_id.clone(),
                        namespace: namespace.clone(),
                        key,
                        update,
                        last_event_at: now,
                    });
                }
            }
        }
        Ok(())
    }

    /// Takes every buffered entry, sorted by (user, key) so concurrent writers lock rows in the
    /// same order. The caller must report what it still holds with [`set_in_flight`].
    ///
    /// [`set_in_flight`]: EventBuffer::set_in_flight
    pub fn take(&self) -> Vec<Entry<U>> {
        let taken = {
            let mut entries = self.lock();
            let taken = std::mem::take(&mut *entries);
            self.in_flight.fetch_add(taken.len(), Ordering::AcqRel);
            taken
        };
        let mut taken: Vec<Entry<U>> = taken.into_values().collect();
        taken.sort_unstable_by(|a, b| (&a.user_id, a.key).cmp(&(&b.user_id, b.key)));
        taken
    }

    /// Reports how many taken entries are still unwritten; wakes callers waiting for space.
    pub fn set_in_flight(&self, unwritten: usize) {
        self.in_flight.store(unwritten, Ordering::Release);
        self.space_freed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry<U>>> {
        // A panic while holding the lock cannot leave a half-applied event (inserts are
        // infallible), so the map stays usable.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenges::ChallengeConfig;
    use crate::challenges::{FixtureShape, generate_challenges, parse};
    use crate::events::update::{self, StatValues, Update};

    fn keyed(updates: Vec<(crate::challenges::GoalRef, Update)>) -> Vec<(u32, Update)> {
        updates.into_iter().map(|(goal, update)| (goal.index, update)).collect()
    }

    fn login(config: &ChallengeConfig) -> Vec<(u32, Update)> {
        keyed(update::for_login(config, now()))
    }

    fn now() -> NaiveDateTime {
        chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap().naive_utc()
    }

    #[tokio::test]
    async fn updates_coalesce_per_user_and_goal() {
        let config = parse("f", &generate_challenges(FixtureShape::default()).to_string(), false).unwrap();
        let buffer = EventBuffer::new(1000);
        let (user, ns): (Arc<str>, Arc<str>) = ("u1".into(), "test".into());
        for value in [5.0, 700.0, 3.0] {
            let updates = update::for_stat(&config, "wins", StatValues { latest_value: value, inc: 0.0 }, now());
            buffer.record(&user, &ns, keyed(updates), now(), Duration::ZERO).await.unwrap();
        }
        assert_eq!(buffer.len(), 100, "one entry per wins goal, however many events");
        let taken = buffer.take();
        assert_eq!(buffer.len(), 100, "taken entries still count until written");
        buffer.set_in_flight(0);
        assert!(buffer.is_empty());
        let absolute = taken.iter().find(|e| matches!(e.update, Update::Absolute { .. })).unwrap();
        let reached = 700 >= config.goal_refs()[absolute.key as usize].goal.target_value;
        assert_eq!(absolute.update, Update::Absolute { value: 3, reached, started: true });
        let counter = taken.iter().find(|e| matches!(e.update, Update::Increment { .. })).unwrap();
        assert_eq!(counter.update, Update::Increment { delta: 3 });
    }

    #[tokio::test]
    async fn a_full_buffer_refuses_the_whole_event_after_waiting() {
        let config = parse("f", &generate_challenges(FixtureShape::default()).to_string(), false).unwrap();
        let buffer = EventBuffer::new(150);
        let ns: Arc<str> = "test".into();
        buffer.record(&"a".into(), &ns, login(&config), now(), Duration::ZERO).await.unwrap();
        // Same keys again: coalesces, needs no space.
        buffer.record(&"a".into(), &ns, login(&config), now(), Duration::ZERO).await.unwrap();
        let refused = buffer.record(&"b".into(), &ns, login(&config), now(), Duration::from_millis(1)).await;
        assert_eq!(refused, Err(Refused::Full { limit: 150 }));
        assert_eq!(buffer.len(), 100, "nothing of the refused event was buffered");
    }

    #[tokio::test]
    async fn a_waiting_call_succeeds_once_a_flush_frees_space() {
        let config = Arc::new(parse("f", &generate_challenges(FixtureShape::default()).to_string(), false).unwrap());
        let buffer = Arc::new(EventBuffer::new(150));
        let ns: Arc<str> = "test".into();
        buffer.record(&"a".into(), &ns, login(&config), now(), Duration::ZERO).await.unwrap();
        let waiter = {
            let (buffer, config, ns) = (buffer.clone(), config.clone(), ns.clone());
            tokio::spawn(async move {
                buffer.record(&"b".into(), &ns, login(&config), now(), Duration::from_secs(30)).await
            })
        };
        buffer.flush_wanted.notified().await; // the waiter asked for a flush
        let taken = buffer.take();
        assert_eq!(taken.len(), 100);
        buffer.set_in_flight(0); // "written"
        assert_eq!(waiter.await.unwrap(), Ok(()));
        assert_eq!(buffer.len(), 100);
    }
}
