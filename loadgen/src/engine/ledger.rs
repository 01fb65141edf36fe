//! What the harness sent and what became of it, for the audited users: per (user, source) the
//! events the SUT accepted, refused or left unknown (a timeout, a broken connection, a call cut
//! off by the stop), with what an absolute goal's final value can be; per (user, goal) the claims
//! that succeeded. Recording is one short lock of one of 16 shards.
//!
//! An event is counted as unknown from its send and moved when its answer comes: `OK` →
//! accepted, `INVALID_ARGUMENT`/`RESOURCE_EXHAUSTED` (refused whole, SPEC §5) → not applied,
//! anything else stays unknown (it may or may not have been applied).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

use crate::target::checks::Fate;
use crate::target::operations::Source;

const SHARDS: usize = 16;
/// Distinct unknown values kept per source; beyond, any value counts as possible.
const MAX_UNKNOWN_VALUES: usize = 256;

/// One source's events for one user.
#[derive(Debug, Clone, Default)]
pub struct SourceBook {
    /// Events accepted.
    pub accepted: u64,
    /// Events whose fate is unknown (including those still in flight).
    pub unknown: u64,
    /// The highest value accepted.
    pub max_accepted: Option<i32>,
    /// The highest value of an unknown event.
    pub max_unknown: Option<i32>,
    /// Accepted events that may have been applied last: none was sent after their answer came
    /// (`sent`, `answered`, value).
    pub last: Vec<(Instant, Instant, i32)>,
    latest_sent: Option<Instant>,
    /// Values of unknown events (a multiset), unless `any_unknown_value`.
    pub unknown_values: Vec<i32>,
    /// Too many unknown values were kept: any value is possible.
    pub any_unknown_value: bool,
}

impl SourceBook {
    /// The values an absolute goal on this source may end with (its value before the run aside).
    pub fn possible_last_values(&self) -> Option<Vec<i32>> {
        if self.any_unknown_value {
            return None;
        }
        let mut values: Vec<i32> =
            self.last.iter().map(|(_, _, v)| *v).chain(self.unknown_values.iter().copied()).collect();
        values.sort_unstable();
        values.dedup();
        Some(values)
    }

    fn sent(&mut self, value: Option<i32>) {
        self.unknown += 1;
        if let Some(v) = value {
            self.max_unknown = self.max_unknown.max(Some(v));
            if self.unknown_values.len() < MAX_UNKNOWN_VALUES {
                self.unknown_values.push(v);
            } else {
                self.any_unknown_value = true;
            }
        }
    }

    fn settled(&mut self, value: Option<i32>, fate: Fate, sent: Instant, answered: Instant) {
        if fate == Fate::Unknown {
            return;
        }
        self.unknown = self.unknown.saturating_sub(1);
        if let Some(v) = value
            && let Some(at) = self.unknown_values.iter().position(|u| *u == v)
        {
            self.unknown_values.swap_remove(at);
        }
        if fate == Fate::Refused {
            return;
        }
        self.accepted += 1;
        if let Some(v) = value {
            self.max_accepted = self.max_accepted.max(Some(v));
            let latest = self.latest_sent.map_or(sent, |l| l.max(sent));
            self.latest_sent = Some(latest);
            self.last.push((sent, answered, v));
            // An event answered before another was sent was applied before it.
            self.last.retain(|(_, answered, _)| *answered >= latest);
        }
    }
}

/// Claims of one goal by one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClaimBook {
    /// Answered 200.
    pub succeeded: u64,
    /// No answer that says (a timeout, a broken connection).
    pub unknown: u64,
}

/// The run's books, for the users it audits (every `stride`-th fixture user).
#[derive(Debug)]
pub struct Ledger {
    stride: usize,
    shards: Vec<Mutex<HashMap<(u32, Source), SourceBook>>>,
    claims: Mutex<HashMap<(u32, String), ClaimBook>>,
}

/// An event in flight; [`settle`](Pending::settle) it with its answer. Dropped unsettled (the
/// call was cut off), it stays unknown.
#[must_use]
#[derive(Debug)]
pub struct Pending<'a> {
    entry: Option<(&'a Ledger, u32, Source, Option<i32>, Instant)>,
}

impl Pending<'_> {
    /// Records the call's answer.
    pub fn settle(self, fate: Fate) {
        if let Some((ledger, user, source, value, sent)) = self.entry {
            let answered = Instant::now();
            ledger.with(user, source, |book| book.settled(value, fate, sent, answered));
        }
    }
}

impl Ledger {
    /// Books for `users` fixture users, auditing at most `cap` of them (evenly spread).
    pub fn new(users: usize, cap: usize) -> Self {
        let stride = if cap == 0 { usize::MAX } else { users.div_ceil(cap).max(1) };
        Self {
            stride,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            claims: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `user`'s books are kept.
    pub fn audits(&self, user: usize) -> bool {
        self.stride != usize::MAX && user % self.stride == 0
    }

    /// The audited users among the first `users`.
    pub fn audited(&self, users: usize) -> Vec<usize> {
        if self.stride == usize::MAX { Vec::new() } else { (0..users).step_by(self.stride).collect() }
    }

    fn with<R>(&self, user: u32, source: Source, f: impl FnOnce(&mut SourceBook) -> R) -> R {
        let mut shard = self.shards[user as usize % SHARDS].lock().unwrap_or_else(PoisonError::into_inner);
        f(shard.entry((user, source)).or_default())
    }

    /// An event for `user` on `source` (with its value for stat events) is about to be sent.
    pub fn send(&self, user: usize, source: Source, value: Option<i32>) -> Pending<'_> {
        if !self.audits(user) {
            return Pending { entry: None };
        }
        let user = u32::try_from(user).unwrap_or(u32::MAX);
        self.with(user, source, |book| book.sent(value));
        Pending { entry: Some((self, user, source, value, Instant::now())) }
    }

    /// A claim of `goal` by `user` was answered.
    pub fn claimed(&self, user: usize, goal: &str, fate: Fate) {
        if !self.audits(user) || fate == Fate::Refused {
            return;
        }
        let user = u32::try_from(user).unwrap_or(u32::MAX);
        let mut claims = self.claims.lock().unwrap_or_else(PoisonError::into_inner);
        let book = claims.entry((user, goal.to_owned())).or_default();
        match fate {
            Fate::Accepted => book.succeeded += 1,
            Fate::Unknown => book.unknown += 1,
            Fate::Refused => {}
        }
    }

    /// Every (user, source) book, sorted.
    pub fn events(&self) -> Vec<((u32, Source), SourceBook)> {
        let mut all: Vec<_> = self
            .shards
            .iter()
            .flat_map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).clone().into_iter())
            .collect();
        all.sort_by_key(|(key, _)| *key);
        all
    }

    /// Every (user, goal) claim book.
    pub fn claims(&self) -> HashMap<(u32, String), ClaimBook> {
        self.claims.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_every_strideth_user_is_audited() {
        let ledger = Ledger::new(10_000, 2_500);
        assert_eq!(ledger.audited(10_000).len(), 2_500);
        assert!(ledger.audits(0) && ledger.audits(4) && !ledger.audits(3));
        assert!(Ledger::new(10, 0).audited(10).is_empty(), "a cap of 0 audits nobody");
        assert_eq!(Ledger::new(10, 100).audited(10).len(), 10);
    }

    #[test]
    fn fates_move_events_from_unknown_and_unsettled_ones_stay_unknown() {
        let ledger = Ledger::new(1, 1);
        ledger.send(0, Source::Login, None).settle(Fate::Accepted);
        ledger.send(0, Source::Login, None).settle(Fate::Refused);
        drop(ledger.send(0, Source::Login, None));
        ledger.send(0, Source::Login, None).settle(Fate::Unknown);
        let (_, book) = &ledger.events()[0];
        assert_eq!((book.accepted, book.unknown), (1, 2));
    }

    #[test]
    fn the_possible_last_values_are_those_not_followed_by_a_later_send() {
        let mut book = SourceBook::default();
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        for v in [5, 7, 9] {
            book.sent(Some(v));
        }
        // 5 answered at 10 ms; 7 sent at 20 ms (after it): 5 cannot be last.
        book.settled(Some(5), Fate::Accepted, ms(0), ms(10));
        book.settled(Some(7), Fate::Accepted, ms(20), ms(40));
        // 9 overlapped 7: either may be last.
        book.settled(Some(9), Fate::Accepted, ms(30), ms(35));
        assert_eq!(book.possible_last_values(), Some(vec![7, 9]));
        assert_eq!((book.accepted, book.unknown, book.max_accepted), (3, 0, Some(9)));
        book.sent(Some(2));
        assert_eq!(book.possible_last_values(), Some(vec![2, 7, 9]), "an unknown event may be last");
    }
}
