//! The sliding window of an alert's criteria: "at least `count` events within `period`".

use serde::{Deserialize, Serialize};

use crate::model::{Span, Timestamp};

/// The times of the most recent events that still count, oldest first. It never holds more
/// than `count` entries: an older event cannot matter once `count` newer ones are in, which
/// bounds the window's size by `alerts.max_criteria_count` whatever the event rate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Window {
    times: Vec<Timestamp>,
}

impl Window {
    /// Adds an event at `at` and returns how many events are now within the window. Events
    /// older than `at - period` fall out (the boundary is inclusive: an event exactly one period
    /// old still counts).
    pub fn push(&mut self, at: Timestamp, count: u32, period: Option<Span>) -> usize {
        self.expire(at, period);
        let keep = count.max(1) as usize;
        if self.times.len() >= keep {
            let excess = self.times.len() + 1 - keep;
            self.times.drain(..excess);
        }
        // Hosts stamp events in order; a clock step backwards must not unsort the window.
        let pos = self.times.partition_point(|t| *t <= at);
        self.times.insert(pos, at);
        self.times.len()
    }

    /// For a sustained criterion: records an event at `at` whose filter did (`holds`) or did
    /// not hold, and returns whether the filter has now held for `span`. The window then holds
    /// two times, when the run of passing events started and the latest of them; a failing
    /// event, or a gap longer than `span` since the latest, starts over.
    pub fn sustain(&mut self, at: Timestamp, holds: bool, span: Span) -> bool {
        if !holds {
            self.times.clear();
            return false;
        }
        let (start, last) = match self.times.as_slice() {
            [] => (at, at),
            [only] => (*only, *only),
            [start, .., last] => (*start, *last),
        };
        let start = if at.0 - last.0 > span.0 { at } else { start };
        self.times.clear();
        self.times.extend([start, last.max(at)]);
        at.0 - start.0 >= span.0
    }

    /// An absence alert's window: the entity was seen at `at`; keeps the latest time only.
    pub fn seen(&mut self, at: Timestamp) {
        if self.last().is_none_or(|last| at > last) {
            self.times.clear();
            self.times.push(at);
        }
    }

    /// The latest time in the window.
    pub fn last(&self) -> Option<Timestamp> {
        self.times.last().copied()
    }

    /// Empties the window (after a firing) and keeps its room: the next run fills the same
    /// allocation instead of growing a new one event by event.
    pub fn clear(&mut self) {
        self.times.clear();
    }

    /// Drops events that fell out of the window by `now`.
    pub fn expire(&mut self, now: Timestamp, period: Option<Span>) {
        if let Some(p) = period {
            let cutoff = now.plus(Span(-p.0));
            let stale = self.times.partition_point(|t| *t < cutoff);
            self.times.drain(..stale);
        }
    }

    /// A window holding `times` (for stores that persist the times in their own encoding).
    pub fn from_times(mut times: Vec<Timestamp>) -> Self {
        times.sort_unstable();
        Window { times }
    }

    /// Events currently held.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// The times held, oldest first.
    pub fn times(&self) -> &[Timestamp] {
        &self.times
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    #[test]
    fn counts_events_within_the_period_inclusive() {
        let mut w = Window::default();
        let p = Some(Span::from_secs(120));
        assert_eq!(w.push(at(0), 2, p), 1);
        assert_eq!(w.push(at(125), 2, p), 1, "125 s apart: the first expired");
        assert_eq!(
            w.push(at(245), 2, p),
            2,
            "exactly one period apart still counts"
        );
    }

    #[test]
    fn keeps_at_most_count_events_and_never_expires_without_a_period() {
        let mut w = Window::default();
        for s in 0..1000 {
            w.push(at(s * 86_400), 3, None);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(
            w.times(),
            &[at(997 * 86_400), at(998 * 86_400), at(999 * 86_400)]
        );
    }

    #[test]
    fn sustain_fires_after_the_span_and_restarts_on_a_failure_or_a_gap() {
        let hour = Span::from_secs(3600);
        let mut w = Window::default();
        for m in 0..60 {
            assert!(!w.sustain(at(m * 60), true, hour), "minute {m}");
        }
        assert!(w.sustain(at(3600), true, hour), "held for the hour");
        let mut dropped = Window::default();
        for m in 0..59 {
            dropped.sustain(at(m * 60), true, hour);
        }
        assert!(!dropped.sustain(at(59 * 60), false, hour));
        assert!(
            !dropped.sustain(at(3600), true, hour),
            "the run started over"
        );
        let mut gap = Window::default();
        gap.sustain(at(0), true, hour);
        assert!(
            !gap.sustain(at(3601), true, hour),
            "a gap longer than the span restarts"
        );
        assert!(gap.sustain(at(7201), true, hour));
    }

    #[test]
    fn stays_sorted_when_the_clock_steps_back() {
        let mut w = Window::default();
        w.push(at(10), 5, None);
        w.push(at(5), 5, None);
        assert_eq!(w.times(), &[at(5), at(10)]);
    }
}
