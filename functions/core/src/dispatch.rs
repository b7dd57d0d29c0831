//! Where fired activations go: the service hands each one to a [`Dispatch`] as soon as the store
//! committed it, so that no host routes activations itself. `tocsin serve` dispatches to its
//! in-process notifier's queue; the Lambdas to an SNS outbox that they publish before answering.

use crate::engine::Fired;

/// Takes fired activations for delivery. Must not block: it is called on the request path. It
/// may drop what it cannot take: every activation is in the store's outbox until its
/// notifications are settled, and is delivered from there.
pub trait Dispatch: Send + Sync {
    fn dispatch(&self, fired: Fired);

    /// The outbox may hold new work that was not dispatched (a resolved notification that a
    /// reset or a tick added to a closed activation): deliver it soon. A host whose outbox is
    /// swept on a schedule (the Lambdas) may ignore it.
    fn wake(&self) {}
}

/// Delivers nothing, for hosts that only evaluate (rule tests): activations stay recorded with
/// their notifications pending.
#[derive(Debug, Default, Clone, Copy)]
pub struct Nowhere;

impl Dispatch for Nowhere {
    fn dispatch(&self, _fired: Fired) {}
}
