//! Notification delivery, off the ingest path and never lost.
//!
//! When an alert fires, its activation records a delivery per notification (pending, or
//! suppressed by the notification's cooldown) in the same commit as the activation, and the
//! store keeps pending activations in an outbox. The service hands each fired activation to its
//! dispatcher, here a [`NotifierQueue`], and the API answers at once; the [`Notifier`] delivers
//! every pending notification with
//! retries (exponential backoff with jitter; `Retry-After` honoured), and records each outcome
//! on the activation, from which MLRun's per-kind summary is derived. At start the outbox is
//! delivered again: at least once, with a delivery key (`Idempotency-Key: {activation}:{name}`)
//! that receivers can dedup on. One failing notification never stops the others.

mod email;
mod preview;
mod retry;
mod send;
mod test_message;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tocsin_core::channels::Reading;
use tocsin_core::compiled::Rule;
use tocsin_core::engine::Fired;
use tocsin_core::model::{Activation, Delivery, DeliveryStatus, NotificationKind, Timestamp};
use tocsin_core::{Dispatch, Service};

use tokio::sync::{Notify, Semaphore, mpsc};

pub use email::{Mailer, MailerError, SmtpSettings, SmtpTls};
pub use preview::preview;
pub use retry::DeliverySettings;
use retry::{Failure, backoff};
pub use send::cause;
pub use test_message::{TestOutcome, TestVerdict};
pub use tocsin_core::channels::Phase;

/// How many outbox activations one drain loads at a time.
const DRAIN_BATCH: usize = 256;

/// Delivers notifications from background tasks, with bounded memory: a bounded queue in
/// front, a bounded number of activations in delivery, and the durable outbox behind both.
pub struct Notifier {
    courier: Arc<Courier>,
}

/// The front of the notifier: the service's dispatcher in `tocsin serve`. It never blocks; an
/// activation that does not fit is left to the outbox, which the notifier drains next.
pub struct NotifierQueue {
    tx: mpsc::Sender<Fired>,
    backlog: Arc<Backlog>,
}

/// The other end of a [`NotifierQueue`], for [`Notifier::start`].
pub struct Inbox {
    rx: mpsc::Receiver<Fired>,
    backlog: Arc<Backlog>,
}

/// That the outbox holds work the queue could not take, and how to wake the worker for it.
struct Backlog {
    /// Set when an activation did not fit in the queue (and at start).
    pending: AtomicBool,
    wake: Notify,
}

impl Backlog {
    fn note(&self) {
        self.pending.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// A notifier's queue, holding up to `settings.queue_capacity` activations.
pub fn queue(settings: &DeliverySettings) -> (Arc<NotifierQueue>, Inbox) {
    let (tx, rx) = mpsc::channel::<Fired>(settings.queue_capacity.max(1));
    let backlog = Arc::new(Backlog {
        pending: AtomicBool::new(true),
        wake: Notify::new(),
    });
    (
        Arc::new(NotifierQueue {
            tx,
            backlog: backlog.clone(),
        }),
        Inbox { rx, backlog },
    )
}

impl Dispatch for NotifierQueue {
    /// The worker drains the outbox next.
    fn wake(&self) {
        self.backlog.note();
    }

    /// A firing with nothing to deliver (no notifications, or all held back) is not queued:
    /// the worker would wake and spawn a task per firing for nothing.
    fn dispatch(&self, fired: Fired) {
        crate::telemetry::activated(&fired.activation);
        if !fired.activation.is_pending() {
            return;
        }
        match self.tx.try_send(fired) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.backlog.note(),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!(
                    "the notifier has stopped; the activation stays in the outbox until restart"
                );
            }
        }
    }
}

/// What every delivery task shares.
struct Courier {
    client: reqwest::Client,
    /// Posts chained events (`event` notifications), whose firings it dispatches, and reaches
    /// the store.
    service: Service,
    /// Outbox work the queue could not take (a standalone notifier has none).
    backlog: Option<Arc<Backlog>>,
    /// Activations being delivered or lately delivered: a drain of the outbox skips them.
    tracker: Mutex<Tracker>,
    /// Bounds the activations in delivery at once.
    slots: Arc<Semaphore>,
    settings: DeliverySettings,
    in_flight: Semaphore,
    /// Per channel and target (a Slack webhook), the earliest time of its next message.
    turns: Mutex<HashMap<(NotificationKind, String), Instant>>,
    jitter: Mutex<retry::Jitter>,
    mailer: Option<Mailer>,
}

/// How many finished activations the tracker remembers: more than a drain batch and the queue
/// together, so that a copy loaded or queued before its twin finished is still recognised.
const REMEMBERED: usize = 8192;

/// Which activations are being delivered, and which finished lately. An activation can reach
/// the worker twice, through the queue and through a drain of the outbox; whichever comes
/// second must find it here and not deliver it again.
/// An activation's deliveries come in rounds: its firing, its acknowledgement (to channels
/// that take one) and (`send_resolved`) its closing. Each round is tracked apart, so that the
/// resolved round of an activation whose firing was delivered a moment ago is not taken for a
/// copy of it.
type Round = (u64, Phase);

/// The round an activation is in: its latest phase with a pending delivery (resolved, then
/// acknowledged, then fired).
fn round_of(a: &Activation) -> Round {
    let pending = |phase: Phase| {
        a.deliveries
            .iter()
            .any(|d| d.is_pending() && Phase::of(d) == phase)
    };
    let phase = [Phase::Resolved, Phase::Acknowledged]
        .into_iter()
        .find(|p| pending(*p))
        .unwrap_or(Phase::Fired);
    (a.id, phase)
}

#[derive(Default)]
struct Tracker {
    active: HashSet<Round>,
    done: HashSet<Round>,
    done_order: std::collections::VecDeque<Round>,
}

impl Tracker {
    fn known(&self, id: Round) -> bool {
        self.active.contains(&id) || self.done.contains(&id)
    }

    /// Marks `id` as being delivered; false if it is, or lately was.
    fn start(&mut self, id: Round) -> bool {
        !self.known(id) && self.active.insert(id)
    }

    fn finish(&mut self, id: Round) {
        self.active.remove(&id);
        if self.done.insert(id) {
            self.done_order.push_back(id);
        }
        while self.done_order.len() > REMEMBERED {
            if let Some(old) = self.done_order.pop_front() {
                self.done.remove(&old);
            }
        }
    }
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("notifications.ca_file `{path}`: {why}")]
    Ca { path: String, why: String },
    #[error(transparent)]
    Smtp(#[from] MailerError),
}

impl Notifier {
    /// Starts delivering what `inbox` receives (the other end of the queue the service
    /// dispatches to) on the current tokio runtime, beginning with the store's outbox
    /// (activations whose notifications were pending when the server last stopped).
    pub async fn start(
        service: Service,
        inbox: Inbox,
        settings: DeliverySettings,
        smtp: &SmtpSettings,
    ) -> Result<Self, NotifierError> {
        let Inbox { rx, backlog } = inbox;
        let notifier = Self::build(service, Some(backlog), settings, smtp)?;
        tokio::spawn(notifier.courier.clone().run(rx));
        Ok(notifier)
    }

    /// A notifier without a queue or a background worker, for a host that delivers one
    /// activation at a time and waits (the notifier Lambda, which is frozen between
    /// invocations). What chained events fire goes to the service's own dispatcher.
    pub fn standalone(
        service: Service,
        settings: DeliverySettings,
        smtp: &SmtpSettings,
    ) -> Result<Self, NotifierError> {
        Self::build(service, None, settings, smtp)
    }

    /// Delivers the pending notifications of a stored activation, of the rounds `phases` (in
    /// that order), with the alert's current config (or records them failed if the alert was
    /// deleted), with retries; records each outcome and returns when all are settled.
    pub async fn deliver_stored(&self, activation: Activation, phases: &[Phase]) {
        self.courier
            .clone()
            .recover(Arc::new(activation), phases.to_vec())
            .await;
    }

    fn build(
        service: Service,
        backlog: Option<Arc<Backlog>>,
        settings: DeliverySettings,
        smtp: &SmtpSettings,
    ) -> Result<Self, NotifierError> {
        let mailer = Mailer::new(smtp, Duration::from_millis(settings.request_timeout_ms))?;
        let mut client = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.request_timeout_ms))
            .connect_timeout(Duration::from_millis(settings.request_timeout_ms.min(3000)))
            .user_agent(concat!("tocsin/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &settings.ca_file {
            let ca = |why: String| NotifierError::Ca {
                path: path.clone(),
                why,
            };
            let pem = std::fs::read(path).map_err(|e| ca(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca("no certificate in it".into()));
            }
            client = client.tls_certs_merge(certs);
        }
        let client = client.build()?;
        let courier = Arc::new(Courier {
            client,
            service,
            backlog,
            tracker: Mutex::new(Tracker::default()),
            slots: Arc::new(Semaphore::new(settings.max_activations_in_delivery.max(1))),
            in_flight: Semaphore::new(settings.max_in_flight.max(1)),
            settings,
            turns: Mutex::new(HashMap::new()),
            jitter: Mutex::new(retry::Jitter::new()),
            mailer,
        });
        Ok(Notifier { courier })
    }
}

impl Courier {
    /// Where the alert of activation `a` can be seen, when the operator gave the server's
    /// public URL.
    fn alert_url(&self, a: &Activation) -> Option<String> {
        alert_url(self.settings.public_url.as_deref()?, &a.project, &a.name)
    }

    /// The worker: takes queued activations, and drains the outbox whenever the queue is empty
    /// and a backlog was noted; each activation needs a slot before its delivery starts.
    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Fired>) {
        let Some(backlog) = self.backlog.clone() else {
            return;
        };
        loop {
            let next = if backlog.pending.load(Ordering::Acquire) {
                match rx.try_recv() {
                    Ok(fired) => Some(fired),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.drain().await;
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => return,
                }
            } else {
                tokio::select! {
                    fired = rx.recv() => match fired {
                        Some(f) => Some(f),
                        None => return,
                    },
                    () = backlog.wake.notified() => None,
                }
            };
            if let Some(fired) = next {
                self.start_delivery(fired.activation, Some(fired.rule))
                    .await;
            }
        }
    }

    /// Loads a batch of the outbox and starts delivering what is not already being delivered.
    async fn drain(self: &Arc<Self>) {
        // Ask past the ones already in delivery, so that a full batch of fresh work is found
        // whenever there is one.
        let busy = self.tracker.lock().map_or(0, |t| t.active.len());
        let pending = match self
            .service
            .store()
            .pending_deliveries(DRAIN_BATCH + busy)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the outbox; retrying in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
                return;
            }
        };
        let fresh: Vec<Activation> = match self.tracker.lock() {
            Ok(t) => pending
                .into_iter()
                .filter(|a| !t.known(round_of(a)))
                .collect(),
            Err(_) => Vec::new(),
        };
        if fresh.is_empty() {
            // Everything pending is being delivered (or nothing is): the backlog is cleared
            // until the queue overflows again.
            if let Some(backlog) = &self.backlog {
                backlog.pending.store(false, Ordering::Release);
            }
            return;
        }
        tracing::info!(
            count = fresh.len(),
            "delivering activations from the outbox"
        );
        for activation in fresh {
            self.start_delivery(Arc::new(activation), None).await;
        }
    }

    /// Waits for a slot, then delivers in the background. Without a rule (from the outbox), the
    /// alert's current config is used.
    async fn start_delivery(
        self: &Arc<Self>,
        activation: Arc<Activation>,
        rule: Option<Arc<Rule>>,
    ) {
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return;
        };
        // An activation can be both queued and drained from the outbox: deliver it once.
        if !self
            .tracker
            .lock()
            .is_ok_and(|mut t| t.start(round_of(&activation)))
        {
            return;
        }
        let courier = self.clone();
        tokio::spawn(async move {
            let id = round_of(&activation);
            // Deliveries of another round wait for this one: the outbox is drained again after.
            let others = activation
                .deliveries
                .iter()
                .any(|d| d.is_pending() && Phase::of(d) != id.1);
            match rule {
                Some(rule) => {
                    courier
                        .clone()
                        .deliver_activation(activation, rule, vec![id.1])
                        .await;
                }
                None => courier.clone().recover(activation, vec![id.1]).await,
            }
            if let Ok(mut t) = courier.tracker.lock() {
                t.finish(id);
            }
            if others && let Some(backlog) = &courier.backlog {
                backlog.note();
            }
            drop(slot);
        });
    }

    /// An activation from the outbox: delivered with the alert's current config.
    async fn recover(self: Arc<Self>, activation: Arc<Activation>, phases: Vec<Phase>) {
        let rule = match self
            .service
            .store()
            .get_alert(&activation.project, &activation.name)
            .await
        {
            Ok(Some(record)) => record.rule,
            Ok(None) => {
                for d in activation.deliveries.iter().filter(|d| d.is_pending()) {
                    let failed = finished(
                        d,
                        DeliveryStatus::Failed,
                        d.attempts,
                        Some("the alert was deleted before delivery".into()),
                    );
                    self.record(&activation, failed).await;
                }
                return;
            }
            Err(e) => {
                tracing::error!(activation = activation.id, error = %e, "cannot load the alert of an outbox activation");
                return;
            }
        };
        self.deliver_activation(activation, rule, phases).await;
    }

    /// Delivers the pending notifications of each round in `phases` (see [`round_of`]), one
    /// round after the other, each notification of a round on its own.
    async fn deliver_activation(
        self: Arc<Self>,
        activation: Arc<Activation>,
        rule: Arc<Rule>,
        phases: Vec<Phase>,
    ) {
        for phase in phases {
            let mut tasks = tokio::task::JoinSet::new();
            for d in activation
                .deliveries
                .iter()
                .filter(|d| d.is_pending() && Phase::of(d) == phase)
            {
                let (courier, activation, rule, d) =
                    (self.clone(), activation.clone(), rule.clone(), d.clone());
                tasks.spawn(async move {
                    let outcome = courier.deliver_one(&activation, &rule, &d).await;
                    courier.settled(&activation, &outcome).await;
                    courier.record(&activation, outcome).await;
                });
            }
            while tasks.join_next().await.is_some() {}
        }
    }

    /// A firing's message sent or given up: the notification's cooldown runs from a sent one
    /// (the engine's `Runtime::delivered`).
    async fn settled(&self, a: &Activation, d: &Delivery) {
        if d.resolved || d.acknowledged {
            return;
        }
        let sent = match d.status {
            DeliveryStatus::Sent => d.at,
            DeliveryStatus::Failed => None,
            _ => return,
        };
        let store = self.service.store();
        if let Err(e) = store
            .delivered(&a.project, &a.name, a.id, &d.notification, sent)
            .await
        {
            tracing::error!(activation = a.id, error = %e, "cannot note a delivery for its cooldown");
        }
    }

    async fn record(&self, activation: &Activation, delivery: Delivery) {
        crate::telemetry::delivered(activation, &delivery);
        let activation = activation.id;
        if delivery.status == DeliveryStatus::Failed {
            tracing::warn!(activation, notification = %delivery.notification, error = ?delivery.error, "notification failed");
        }
        if let Err(e) = self
            .service
            .store()
            .record_delivery(activation, delivery)
            .await
        {
            tracing::error!(activation, error = %e, "cannot record a delivery; it stays in the outbox");
        }
    }

    /// One notification, with retries until it is delivered, refused for good, or the give-up
    /// time passes.
    async fn deliver_one(&self, activation: &Activation, rule: &Rule, d: &Delivery) -> Delivery {
        let d = &Delivery {
            status: DeliveryStatus::Pending,
            ..d.clone()
        };
        let Some(note) = rule
            .config
            .notifications
            .iter()
            .map(|n| &n.notification)
            .find(|n| n.name == d.notification)
        else {
            return finished(
                d,
                DeliveryStatus::Failed,
                d.attempts,
                Some("the notification was removed from the alert before delivery".into()),
            );
        };
        let secret = rule.secrets.get(&note.name);
        let started = Instant::now();
        let give_up = Duration::from_secs(self.settings.give_up_after_secs);
        let mut attempts = d.attempts;
        loop {
            attempts += 1;
            let result = {
                let _permit = self.in_flight.acquire().await;
                self.attempt(note, secret, activation, d, false)
                    .await
                    .map(|attempted| attempted.reading)
            };
            let (reason, after) = match result {
                Ok(Reading::Sent) => return finished(d, DeliveryStatus::Sent, attempts, None),
                Ok(Reading::Refused(reason)) | Err(Failure::Permanent(reason)) => {
                    return finished(d, DeliveryStatus::Failed, attempts, Some(reason));
                }
                Ok(Reading::Retry { cause, after }) => (cause, after),
                Err(Failure::Retry { reason, after }) => (reason, after),
            };
            let random = self.jitter.lock().map(|mut j| j.next()).unwrap_or(0);
            let wait = after
                .unwrap_or_else(|| backoff(&self.settings, attempts, random))
                .min(Duration::from_millis(self.settings.max_backoff_ms));
            if started.elapsed() + wait > give_up {
                let reason = format!(
                    "gave up after {attempts} attempts in {}s: {reason}",
                    started.elapsed().as_secs()
                );
                return finished(d, DeliveryStatus::Failed, attempts, Some(reason));
            }
            tracing::debug!(notification = %note.name, attempts, ?wait, %reason, "delivery will be retried");
            // Meanwhile it reads `retrying`, with its attempts and why the last one failed.
            let retrying = Delivery {
                status: DeliveryStatus::Retrying,
                attempts,
                error: Some(reason),
                at: Some(Timestamp::now().plus(tocsin_core::model::Span(
                    i64::try_from(wait.as_micros()).unwrap_or(i64::MAX),
                ))),
                ..d.clone()
            };
            self.record(activation, retrying).await;
            tokio::time::sleep(wait).await;
        }
    }
}

/// The Alerts page on the server at `base`, opened on alert `project/name`.
pub fn alert_url(base: &str, project: &str, name: &str) -> Option<String> {
    let base = base.trim_end_matches('/');
    if base.is_empty() {
        return None;
    }
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    Some(format!(
        "{base}/alerts?project={}&alert={}",
        encode(project),
        encode(name)
    ))
}

fn finished(
    d: &Delivery,
    status: DeliveryStatus,
    attempts: u32,
    error: Option<String>,
) -> Delivery {
    Delivery {
        status,
        attempts,
        error,
        at: Some(Timestamp::now()),
        ..d.clone()
    }
}
