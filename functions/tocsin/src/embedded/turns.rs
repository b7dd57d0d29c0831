//! Turns at the writer: who applies the waiting operations, commits them and answers them.
//!
//! One holder at a time takes every job waiting, applies each through the engine, commits them
//! as one group (one write) and only then answers them. The holder is usually the caller whose
//! job found the writer free, on its own async worker: a short job (one event, one alert, a read
//! of one thing) then costs no thread hand-off. Two wake-ups per request (the writer thread's,
//! then the worker's) were a quarter of the single-event path's time on two cores.
//!
//! The writer thread takes over what must not hold an async worker: long jobs ([`Lane::Writer`]:
//! a batch, a listing, the timer), background work that came due (encoding a snapshot), what is
//! still waiting after a caller's [`CALLER_TURNS`] turns, and every turn with
//! [`Durability::Fsync`], whose commit waits for the disk. It also writes the last snapshot
//! when the store closes.

use std::sync::{Condvar, Mutex};

use tocsin_core::error::Result;

use super::{Disk, Durability, Writer, lock, stopped, store_err};

/// An operation for the writer: run on its state, it returns what answers it once the
/// commit's outcome is known.
pub(super) type Job = Box<dyn FnOnce(&mut Writer) -> Reply + Send>;
pub(super) type Reply = Box<dyn FnOnce(&Result<()>) + Send>;

/// At most this many operations share one commit.
const MAX_GROUP: usize = 256;

/// Where a job runs its turn at the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lane {
    /// On the caller's thread when the writer is free: a short job (one event, one alert, a
    /// read of one thing) saves two thread wake-ups, which on a loaded machine cost more than
    /// the job.
    Caller,
    /// On the writer thread: long jobs (a batch, a listing, the timer) that would hold an async
    /// worker.
    Writer,
}

/// The jobs waiting for the writer, and who holds it.
#[derive(Default)]
struct Inbox {
    jobs: Vec<Job>,
    /// A job for the writer thread is waiting: a caller's turn hands over rather than run it.
    long: bool,
    /// Someone (a caller or the writer thread) is running turns: new jobs wait for them.
    running: bool,
    /// The writer thread is to take over the running.
    handed_over: bool,
    /// The store is being dropped: the writer thread writes the last snapshot and ends.
    closed: bool,
    /// A commit failed: every later job answers "stopped".
    stopped: bool,
}

/// The writer and the turns at it (see the module's documentation).
pub(super) struct Turns {
    inbox: Mutex<Inbox>,
    /// Wakes the writer thread (hand-over, close).
    wake: Condvar,
    writer: Mutex<Writer>,
    disk: std::sync::Arc<Disk>,
    /// Callers may take turns (durability [`Durability::Os`]: a commit is a write, no sync).
    callers_write: bool,
}

/// A caller runs at most this many turns (its own first) before the writer thread takes over.
const CALLER_TURNS: usize = 4;

impl Turns {
    pub(super) fn new(writer: Writer, disk: std::sync::Arc<Disk>, durability: Durability) -> Self {
        Turns {
            inbox: Mutex::new(Inbox::default()),
            wake: Condvar::new(),
            writer: Mutex::new(writer),
            disk,
            callers_write: durability == Durability::Os,
        }
    }

    /// Queues `job`; runs turns here if it found the writer free and may (see [`Lane`]).
    pub(super) fn submit(&self, job: Job, lane: Lane) -> Result<()> {
        let mut inbox = lock(&self.inbox);
        if inbox.stopped || inbox.closed {
            return Err(stopped());
        }
        inbox.jobs.push(job);
        inbox.long |= lane == Lane::Writer;
        if inbox.running {
            return Ok(());
        }
        inbox.running = true;
        if lane == Lane::Writer || !self.callers_write {
            self.hand_over(&mut inbox);
            return Ok(());
        }
        drop(inbox);
        self.callers_turns();
        Ok(())
    }

    fn hand_over(&self, inbox: &mut Inbox) {
        inbox.handed_over = true;
        self.wake.notify_one();
    }

    /// A caller's turns: while only short jobs wait, up to [`CALLER_TURNS`] of them.
    fn callers_turns(&self) {
        let _holding = Holding(self);
        for _ in 0..CALLER_TURNS {
            let jobs = {
                let mut inbox = lock(&self.inbox);
                if inbox.long {
                    return self.hand_over(&mut inbox);
                }
                if inbox.jobs.is_empty() {
                    return self.release(&mut inbox);
                }
                take_group(&mut inbox.jobs)
            };
            let (committed, background) = {
                let mut w = lock(&self.writer);
                let committed = w.turn(jobs, &self.disk);
                let background = w.background_due(&self.disk).is_some();
                (committed, background)
            };
            let mut inbox = lock(&self.inbox);
            if let Err(e) = committed {
                return self.stop(&mut inbox, &e);
            }
            if background {
                return self.hand_over(&mut inbox);
            }
        }
        let mut inbox = lock(&self.inbox);
        if inbox.jobs.is_empty() {
            self.release(&mut inbox);
        } else {
            self.hand_over(&mut inbox);
        }
    }

    fn release(&self, inbox: &mut Inbox) {
        inbox.running = false;
        if inbox.closed {
            self.wake.notify_one();
        }
    }

    /// After a failed commit: memory is now ahead of the disk. Stop (every later call answers
    /// "stopped", a 503) rather than go on from a state the disk does not have; a restart
    /// replays the log, whose torn tail (the group that failed) is cut off.
    fn stop(&self, inbox: &mut Inbox, why: &dyn std::fmt::Display) {
        tracing::error!(
            error = %why,
            "a store commit failed; the store stopped: restart tocsin once the disk is healthy"
        );
        inbox.stopped = true;
        // Their answers' senders dropped: they answer "stopped".
        inbox.jobs.clear();
        self.release(inbox);
    }

    /// Marks the store closed; the writer thread then ends after the turn in progress.
    pub(super) fn close(&self) {
        let mut inbox = lock(&self.inbox);
        inbox.closed = true;
        self.wake.notify_one();
    }

    /// The writer thread: turns handed over to it (and the background work after each), then,
    /// once the store closes, the last snapshot.
    pub(super) fn writer_thread(&self) {
        let _holding = Holding(self);
        let mut inbox = lock(&self.inbox);
        loop {
            if inbox.handed_over {
                inbox.handed_over = false;
                // At least one turn: a hand-over for background work may bring no job.
                loop {
                    inbox.long = false;
                    let jobs = take_group(&mut inbox.jobs);
                    drop(inbox);
                    let committed = {
                        let mut w = lock(&self.writer);
                        let committed = w.turn(jobs, &self.disk);
                        if committed.is_ok() {
                            w.background_work(&self.disk);
                        }
                        committed
                    };
                    inbox = lock(&self.inbox);
                    if let Err(e) = committed {
                        return self.stop(&mut inbox, &e);
                    }
                    if inbox.jobs.is_empty() {
                        self.release(&mut inbox);
                        break;
                    }
                }
            }
            if inbox.stopped && !inbox.running {
                return;
            }
            if inbox.closed && !inbox.running {
                drop(inbox);
                return lock(&self.writer).final_snapshot(&self.disk);
            }
            inbox = self
                .wake
                .wait(inbox)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

/// Stops the store if a turn panics (a bug), so that later jobs answer "stopped" rather than
/// wait for a holder that is gone.
struct Holding<'a>(&'a Turns);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let turns = self.0;
            turns.stop(&mut lock(&turns.inbox), &"a turn at the writer panicked");
        }
    }
}

/// The jobs of one group commit: the first [`MAX_GROUP`] waiting.
fn take_group(jobs: &mut Vec<Job>) -> Vec<Job> {
    if jobs.len() <= MAX_GROUP {
        std::mem::take(jobs)
    } else {
        jobs.drain(..MAX_GROUP).collect()
    }
}

impl Writer {
    /// One turn: applies `jobs`, commits what they changed as one group, then answers them.
    fn turn(&mut self, jobs: Vec<Job>, disk: &Disk) -> Result<()> {
        let replies: Vec<Reply> = jobs.into_iter().map(|job| job(self)).collect();
        let changes = std::mem::take(&mut self.changes);
        let committed = self
            .log
            .commit()
            .map_err(store_err)
            .and_then(|()| disk.acts.apply(changes));
        for reply in replies {
            reply(&committed);
        }
        committed
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tocsin_core::model::Timestamp;

    use super::Lane;
    use crate::embedded::op::Op;
    use crate::embedded::{Durability, EmbeddedStore, Options};

    fn open(durability: Durability) -> (Arc<EmbeddedStore>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("dir");
        let store = EmbeddedStore::open(dir.path(), Options::with(durability)).expect("open");
        (Arc::new(store), dir)
    }

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    async fn runs_on(store: &EmbeddedStore, lane: Lane) -> String {
        store
            .run(lane, |_| Ok(thread_name()))
            .await
            .expect("answered")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_job_runs_on_the_callers_thread_and_a_long_one_on_the_writer_thread() {
        let (store, _dir) = open(Durability::Os);
        let caller = thread_name();
        assert_ne!(caller, "tocsin-store");
        assert_eq!(runs_on(&store, Lane::Caller).await, caller);
        assert_eq!(runs_on(&store, Lane::Writer).await, "tocsin-store");
        // The writer thread gives the writer back once its turn is over (it may still hold it
        // for a moment when the next job comes): then short jobs are the callers' again.
        let mut on = String::new();
        for _ in 0..100 {
            on = runs_on(&store, Lane::Caller).await;
            if on != "tocsin-store" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_ne!(
            on, "tocsin-store",
            "short jobs run on the callers' threads again"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_fsync_every_turn_is_the_writer_threads() {
        let (store, _dir) = open(Durability::Fsync);
        assert_eq!(runs_on(&store, Lane::Caller).await, "tocsin-store");
        assert_eq!(runs_on(&store, Lane::Writer).await, "tocsin-store");
    }

    /// Jobs from many workers and both lanes: each is applied once, one at a time, and each is
    /// answered (a lost hand-over would leave some waiting for ever).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_jobs_of_both_lanes_are_each_applied_once_one_at_a_time() {
        let (store, _dir) = open(Durability::Os);
        let (tasks, each) = (8, 250);
        let mut handles = Vec::new();
        for t in 0..tasks {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                for i in 0..each {
                    let lane = if (t + i) % 5 == 0 {
                        Lane::Writer
                    } else {
                        Lane::Caller
                    };
                    let now = Timestamp::from_secs(1_000);
                    // Each job logs one record; the count of records it sees is its place.
                    let place = store
                        .run(lane, move |w| {
                            w.apply(Op::PruneIdempotency { now })?;
                            Ok(w.since_snapshot)
                        })
                        .await
                        .expect("answered");
                    seen.push(place);
                }
                seen
            }));
        }
        let mut places = Vec::new();
        for h in handles {
            let seen = tokio::time::timeout(Duration::from_secs(60), h)
                .await
                .expect("every job answered")
                .expect("task");
            places.extend(seen);
        }
        places.sort_unstable();
        let expected: Vec<u64> = (1..=(tasks * each) as u64).collect();
        assert_eq!(places, expected);
    }
}
