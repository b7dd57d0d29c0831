//! Side effects of alert changes that a host wants beside the store's write: the AWS
//! deployment keeps its SNS topic's email subscriptions in step with the alerts. The service
//! calls each hook after the change is committed, so stores stay stores (no decorator that
//! forwards every method to add one effect).

use async_trait::async_trait;

use crate::compiled::Rule;
use crate::error::Result;

/// Told of every alert change after it is committed.
#[async_trait]
pub trait AlertHook: Send + Sync {
    /// The alert `project/name` is now `rule` (None: it was deleted). An error fails the
    /// request that made the change (which is kept): the client's retry, which stores the same
    /// thing again, lets the hook catch up.
    async fn changed(&self, project: &str, name: &str, rule: Option<&Rule>) -> Result<()>;
}
