//! The operations, each sequence written once: [`ingest`] (events in), [`change`] (an alert
//! stored, deleted, reset or acknowledged) and [`tick`] (time passing). They are generic over
//! what a store provides ([`crate::store::units`]): units of state to load, commit or lose to a
//! concurrent writer, key claims, activation ids. A store strings nothing together itself, so
//! every store (memory, embedded, DynamoDB) runs the same steps in the same order and gives
//! the same activations, with the same events recorded on them.
//!
//! # The one order
//!
//! A batch of events is evaluated in rounds. The first round is the batch's events in order of
//! arrival, each against every alert it matches (in the matcher's order); the calculated events
//! that the round's firings emit make the next round, in the order they were emitted; and so on
//! until a round emits nothing. A single event is a batch of one. Activation ids follow the
//! same order (on DynamoDB, ids reserved by concurrent writers may come between).
//!
//! # Conflicts
//!
//! A store whose units can be changed by another writer between load and commit (DynamoDB)
//! reports the part of a round it lost; that part is read again and evaluated again, at most
//! [`MAX_CONFLICTS`] times. What was committed stays committed, and is not evaluated again.
//!
//! Stores that hold their state under one writer (memory, embedded) run the sequences without
//! waiting on anything: [`ready`] runs them to completion on the caller's thread.

pub mod change;
pub mod ingest;
pub mod tick;

use std::future::Future;
use std::task::{Context, Poll, Waker};

use crate::error::{Backend, Error, Result};

/// How many times an operation reads again and retries after losing a commit to a concurrent
/// writer before it gives up with an error.
pub const MAX_CONFLICTS: usize = 64;

/// Activation ids for one evaluation: taken in order from `next`. A store that knows its next
/// id (memory) hands out final ids; one that reserves them from a shared counter (DynamoDB)
/// starts provisional ids at 1, then reserves as many as the evaluation took and evaluates
/// again with those (the engine is deterministic: it fires the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    next: u64,
    taken: u64,
    provisional: bool,
}

impl Ids {
    /// Final ids from `next` on.
    pub fn from(next: u64) -> Self {
        Ids {
            next,
            taken: 0,
            provisional: false,
        }
    }

    /// Provisional ids, to count how many an evaluation takes.
    pub fn provisional() -> Self {
        Ids {
            next: 1,
            taken: 0,
            provisional: true,
        }
    }

    /// The next id.
    pub fn take(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        self.taken += 1;
        id
    }

    /// How many were taken.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// The id the next [`Ids::take`] returns.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Whether the ids taken are provisional: the evaluation must run again with reserved ones.
    pub fn must_reserve(&self) -> bool {
        self.provisional && self.taken > 0
    }
}

/// Runs an operation's future to completion on this thread, for a store that never waits (its
/// units are in memory, under the caller's lock or writer): it is ready at its first poll. A
/// future that is not says so as an error rather than block.
pub fn ready<T>(future: impl Future<Output = T>) -> Result<T> {
    let mut future = std::pin::pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(Error::backend(
            Backend::Memory,
            "internal: an in-memory operation waited on something",
        )),
    }
}

/// The error of an operation that lost [`MAX_CONFLICTS`] commits in a row.
pub(crate) fn gave_up(backend: Backend, what: &str) -> Error {
    Error::backend(
        backend,
        format!("gave up after {MAX_CONFLICTS} conflicting concurrent writes to {what}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisional_ids_ask_for_a_reservation_only_when_taken() {
        let mut ids = Ids::provisional();
        assert!(!ids.must_reserve());
        assert_eq!((ids.take(), ids.take()), (1, 2));
        assert!(ids.must_reserve());
        assert_eq!(ids.taken(), 2);
        let mut fin = Ids::from(40);
        assert_eq!(fin.take(), 40);
        assert!(!fin.must_reserve());
        assert_eq!(fin.next(), 41);
    }

    #[test]
    fn ready_runs_what_never_waits_and_refuses_what_does() {
        assert_eq!(ready(async { 7 }).ok(), Some(7));
        let waits = std::future::pending::<()>();
        assert!(ready(waits).is_err());
    }
}
