//! The arrival schedule of an open-model stream: a dedicated thread releases arrivals at their
//! intended times (within the operating system's sleep precision, typically well under 100 µs;
//! an async timer would add up to a millisecond) by moving one counter forward, and free users
//! take them by moving another (a compare-and-swap, no queue, no lock, no wake-up per arrival).
//!
//! A user that finishes a request takes the next released arrival directly. Users with nothing
//! to do wait, as *warm* users (ready to send at once: their connection is open) or *cold* ones.
//! The dispatcher wakes a warm one per batch it releases, the one that went idle last (its memory
//! warm too), and a user that takes an arrival and sees more waiting wakes the next warm one
//! before it starts its own: at high rates arrivals change hands without any wake-up, at low
//! rates with one. A cold user is woken only when an arrival has waited a dispatcher tick with no
//! warm user free (the dispatcher looks every [`BACKLOG_CHECK`] while arrivals wait): a stream
//! uses as many users, and connections, as its concurrency needs, whatever the size of its pool,
//! and first connections cannot snowball at the start.
//!
//! Arrivals are numbered; what an arrival does is the stream's business (a function of its
//! number), and so is counting it: the dispatcher reports each released batch to its
//! [`Dispatch`] owner.
//!
//! An arrival already later than the stream's `max_lateness` when a user looks found no free
//! user in time: the user claims every such stale arrival in one step and reports them as
//! dropped, so fresh arrivals never wait behind them, and the backlog costs nothing while every
//! user is busy.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::definition::executor::RateCurve;

/// What the dispatcher tells its owner.
pub trait Dispatch: Send + 'static {
    /// Arrivals `range` came due (the owner counts them as scheduled). Returns whether every
    /// user of the stream was busy as they did.
    fn due(&mut self, range: Range<u64>) -> bool;
}

/// One arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    /// Its number in the schedule (from 0).
    pub index: u64,
    /// Its intended start.
    pub at: Instant,
    /// Whether every user of the stream was busy as it came due.
    pub pool_full: bool,
}

/// What a user found when it looked for work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// An arrival to serve now (this user's alone).
    Arrival(Arrival),
    /// Arrivals later than `max_lateness`, claimed by this user to be reported dropped.
    Stale(Range<u64>),
    /// Nothing released and not taken.
    Nothing,
}

/// Arrivals whose pool flag is remembered (a ring: an arrival older than this by the time it is
/// dropped reads a later arrival's flag).
const FLAGS: u64 = 1 << 16;

#[derive(Debug)]
struct Shared {
    start: Instant,
    curve: RateCurve,
    total: u64,
    released: AtomicU64,
    taken: AtomicU64,
    over: AtomicBool,
    stop: AtomicBool,
    pool_full: Box<[AtomicU64]>,
    warm: Notify,
    cold: Notify,
    warm_waiting: AtomicUsize,
}

impl Shared {
    fn at(&self, index: u64) -> Instant {
        self.start + self.curve.time_of(index).unwrap_or_default()
    }

    fn arrival(&self, index: u64) -> Arrival {
        let (word, bit) = ((index % FLAGS) / 64, index % 64);
        let pool_full = self.pool_full[word as usize].load(Ordering::Relaxed) & (1 << bit) != 0;
        Arrival { index, at: self.at(index), pool_full }
    }

    fn flag(&self, range: Range<u64>, full: bool) {
        for index in range {
            let (word, bit) = ((index % FLAGS) / 64, index % 64);
            let word = &self.pool_full[word as usize];
            if full {
                word.fetch_or(1 << bit, Ordering::Relaxed);
            } else {
                word.fetch_and(!(1 << bit), Ordering::Relaxed);
            }
        }
    }

    /// Wakes the warm user that waited last, if any waits.
    fn wake_warm(&self) {
        if self.warm_waiting.load(Ordering::Acquire) > 0 {
            self.warm.notify_last();
        }
    }

    /// The first arrival of `range` due at or after `since` (binary search: due times rise).
    fn first_due_since(&self, range: Range<u64>, since: Instant) -> u64 {
        let (mut low, mut high) = (range.start, range.end);
        while low < high {
            let middle = low + (high - low) / 2;
            if self.at(middle) < since { low = middle + 1 } else { high = middle }
        }
        low
    }
}

/// The shared arrival schedule of one open-model stream.
#[derive(Debug)]
pub struct ArrivalSchedule {
    shared: Arc<Shared>,
    dispatcher: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl ArrivalSchedule {
    /// Starts releasing arrivals along `curve` from `start`, telling `owner` of each batch.
    pub fn start<D: Dispatch>(start: Instant, curve: RateCurve, owner: D) -> Self {
        let total = curve.total_arrivals();
        let shared = Arc::new(Shared {
            start,
            curve,
            total,
            released: AtomicU64::new(0),
            taken: AtomicU64::new(0),
            over: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            pool_full: (0..FLAGS / 64).map(|_| AtomicU64::new(0)).collect(),
            warm: Notify::new(),
            cold: Notify::new(),
            warm_waiting: AtomicUsize::new(0),
        });
        let thread_shared = shared.clone();
        let dispatcher = std::thread::Builder::new()
            .name("gauntlet-arrivals".into())
            .spawn(move || Dispatcher { shared: &thread_shared, owner }.run())
            .expect("spawning the arrival dispatcher");
        Self { shared, dispatcher: std::sync::Mutex::new(Some(dispatcher)) }
    }

    /// Takes the oldest released arrival if it is at most `max_lateness` late, else claims
    /// every released arrival later than that.
    pub fn take(&self, max_lateness: Duration) -> Take {
        let s = &self.shared;
        loop {
            let taken = s.taken.load(Ordering::Acquire);
            let released = s.released.load(Ordering::Acquire);
            if taken >= released {
                return Take::Nothing;
            }
            let now = Instant::now();
            let fresh = match now.checked_sub(max_lateness) {
                Some(since) if s.at(taken) < since => s.first_due_since(taken..released, since),
                _ => taken,
            };
            let claim = if fresh > taken { fresh } else { taken + 1 };
            if s.taken.compare_exchange_weak(taken, claim, Ordering::AcqRel, Ordering::Acquire).is_err() {
                continue;
            }
            if fresh > taken {
                return Take::Stale(taken..fresh);
            }
            if claim < released {
                // More waiting: hand the next one to another warm user.
                s.wake_warm();
            }
            return Take::Arrival(s.arrival(taken));
        }
    }

    /// Waits until an arrival may be waiting, or the schedule is over; `warm` when this user is
    /// ready to send at once (its connection is open). A warm user returns at once if arrivals
    /// wait; a cold one only when woken (when an arrival waited a tick and no warm user was
    /// free), so cold users do not race warm ones for arrivals, at the start least of all. May
    /// return with nothing to take (another user was faster): look again.
    pub async fn wait(&self, warm: bool) {
        let s = &self.shared;
        let woken = if warm { s.warm.notified() } else { s.cold.notified() };
        tokio::pin!(woken);
        woken.as_mut().enable();
        let _counted = warm.then(|| Counted::new(&s.warm_waiting));
        let waiting = s.taken.load(Ordering::Acquire) < s.released.load(Ordering::Acquire);
        if (warm && waiting) || s.over.load(Ordering::Acquire) {
            return;
        }
        woken.await;
    }

    /// Arrival `index`.
    pub fn arrival(&self, index: u64) -> Arrival {
        self.shared.arrival(index)
    }

    /// True once the schedule is over (every arrival released, or stopped) and every released
    /// arrival has been taken.
    pub fn finished(&self) -> bool {
        let s = &self.shared;
        s.over.load(Ordering::Acquire) && s.taken.load(Ordering::Acquire) >= s.released.load(Ordering::Acquire)
    }

    /// Stops releasing arrivals and waits for the dispatcher to end (at most one 100-ms sleep
    /// slice), so every arrival it reported as due is released; wakes every waiting user.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let dispatcher = self.dispatcher.lock().ok().and_then(|mut d| d.take());
        if let Some(thread) = dispatcher {
            let _ = thread.join();
        }
    }

    /// Claims every released arrival not yet taken (after [`stop`](Self::stop): they were never
    /// served).
    pub fn drain(&self) -> Range<u64> {
        let released = self.shared.released.load(Ordering::Acquire);
        let taken = self.shared.taken.fetch_max(released, Ordering::AcqRel);
        taken.min(released)..released
    }
}

/// Counts its holder in a count until dropped (a warm user waiting here; a busy user in the
/// engine).
#[derive(Debug)]
pub struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    /// Adds one to `count` until the guard is dropped.
    pub fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for ArrivalSchedule {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

struct Dispatcher<'a, D: Dispatch> {
    shared: &'a Shared,
    owner: D,
}

impl<D: Dispatch> Dispatcher<'_, D> {
    fn run(mut self) {
        // Linux lets a sleeping thread wake up to 50 µs late by default (its timer slack), which
        // would be counted in every latency; 1 µs for this thread (no privilege needed for one's
        // own; elsewhere there is no such file and nothing to do).
        let _ = std::fs::write("/proc/thread-self/timerslack_ns", "1000");
        let s = self.shared;
        let start = s.start.into_std();
        let mut index = 0;
        // When the last arrival released was due.
        let mut last_due = start;
        while !s.stop.load(Ordering::Relaxed) {
            // Arrivals released a tick ago or more and still waiting, with no warm user free: a
            // cold one is needed.
            let waiting = s.taken.load(Ordering::Acquire) < index;
            if waiting && s.warm_waiting.load(Ordering::Acquire) == 0 {
                s.cold.notify_last();
            }
            let due = match s.curve.time_of(index).filter(|_| index < s.total) {
                Some(offset) => start + offset,
                None if waiting => {
                    std::thread::sleep(BACKLOG_CHECK);
                    continue;
                }
                None => break,
            };
            let now = std::time::Instant::now();
            if now < due {
                // Sleep until the arrival is due, but wake at most every DISPATCH_SLACK (at high
                // rates a wake-up per arrival costs more CPU than the precision is worth, so they
                // are released in batches), in slices of at most 100 ms to keep a stop prompt,
                // and of BACKLOG_CHECK while arrivals wait.
                let wake = due.max(last_due + DISPATCH_SLACK);
                let longest = if waiting { BACKLOG_CHECK } else { Duration::from_millis(100) };
                std::thread::sleep((wake - now).min(longest));
                continue;
            }
            // Release everything due by now (never anything early), in one step.
            let mut end = index + 1;
            last_due = due;
            while end < s.total {
                match s.curve.time_of(end).map(|o| start + o) {
                    Some(at) if at <= now => last_due = at,
                    _ => break,
                }
                end += 1;
            }
            let full = self.owner.due(index..end);
            s.flag(index..end, full);
            s.released.store(end, Ordering::Release);
            s.wake_warm();
            index = end;
        }
        s.over.store(true, Ordering::Release);
        s.warm.notify_waiters();
        s.cold.notify_waiters();
    }
}

/// The shortest time between the due times of two releases: at rates above one arrival per this,
/// arrivals are released in batches, each at most this late (plus the operating system's wake-up
/// delay, a few µs with the dispatcher's timer slack), and the counted latency includes that.
/// Below it each arrival is released at its time.
pub const DISPATCH_SLACK: Duration = Duration::from_micros(200);

/// How often the dispatcher looks whether released arrivals still wait with no warm user free.
pub const BACKLOG_CHECK: Duration = Duration::from_micros(200);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::executor::Stage;

    fn curve(rate: f64, secs: u64) -> RateCurve {
        RateCurve::new(rate, &[Stage { target: rate, duration: Duration::from_secs(secs) }])
    }

    #[derive(Default)]
    struct Counting {
        due: Arc<std::sync::Mutex<Vec<u64>>>,
    }

    impl Dispatch for Counting {
        fn due(&mut self, range: Range<u64>) -> bool {
            self.due.lock().unwrap().extend(range);
            false
        }
    }

    #[tokio::test]
    async fn the_schedule_releases_each_arrival_once_at_its_time_then_finishes() {
        let start = Instant::now() + Duration::from_millis(20);
        let owner = Counting::default();
        let due = owner.due.clone();
        let schedule = ArrivalSchedule::start(start, curve(100.0, 1), owner);
        let mut seen = Vec::new();
        while !schedule.finished() {
            match schedule.take(Duration::from_secs(10)) {
                Take::Arrival(arrival) => {
                    assert!(Instant::now() >= arrival.at, "released no earlier than its time");
                    seen.push((arrival.index, arrival.at - start));
                }
                Take::Stale(range) => panic!("nothing is stale here: {range:?}"),
                Take::Nothing => schedule.wait(true).await,
            }
        }
        let expected: Vec<(u64, Duration)> = (0..100).map(|i| (i, Duration::from_millis(10 * i))).collect();
        assert_eq!(seen, expected);
        assert_eq!(*due.lock().unwrap(), (0..100).collect::<Vec<u64>>(), "the owner heard of each as it came due");
    }

    #[tokio::test]
    async fn stale_arrivals_are_claimed_in_one_step_and_fresh_ones_served() {
        // 1,000/s started 2 s ago: 2,000 arrivals are due at once, all but the last ~100 ms stale.
        let start = Instant::now() - Duration::from_secs(2);
        let schedule = ArrivalSchedule::start(start, curve(1000.0, 3), Counting::default());
        while schedule.shared.released.load(Ordering::Acquire) < 2000 {
            schedule.wait(true).await;
        }
        let Take::Stale(stale) = schedule.take(Duration::from_millis(100)) else { panic!("stale first") };
        assert_eq!(stale.start, 0);
        assert!((1850..=1910).contains(&stale.end), "{stale:?}");
        let Take::Arrival(next) = schedule.take(Duration::from_millis(100)) else { panic!("then a fresh one") };
        assert_eq!(next.index, stale.end, "nothing lost between");
        schedule.stop();
        let rest = schedule.drain();
        assert_eq!(rest.start, stale.end + 1);
        assert!(schedule.finished());
        assert_eq!(schedule.take(Duration::from_secs(1)), Take::Nothing);
    }

    #[tokio::test]
    async fn many_users_take_every_arrival_exactly_once() {
        let start = Instant::now() + Duration::from_millis(20);
        let schedule = Arc::new(ArrivalSchedule::start(start, curve(20_000.0, 1), Counting::default()));
        let users: Vec<_> = (0..8)
            .map(|user| {
                let schedule = schedule.clone();
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    while !schedule.finished() {
                        match schedule.take(Duration::from_secs(10)) {
                            Take::Arrival(a) => mine.push(a.index),
                            Take::Stale(range) => panic!("nothing is stale here: {range:?}"),
                            // Warm and cold users alike are woken.
                            Take::Nothing => schedule.wait(user % 2 == 0).await,
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut all = Vec::new();
        for user in users {
            all.extend(user.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..20_000).collect::<Vec<u64>>());
    }
}
