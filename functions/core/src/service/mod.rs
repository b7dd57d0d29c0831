//! The operations of the alerts API, independent of HTTP: validation, operator settings and
//! store calls. The HTTP router (in `tocsin serve` and the API Lambda) and `tocsin test` call
//! these, so that every host behaves the same.

mod hooks;
mod silences;

use std::sync::Arc;

use crate::compiled::{Rule, compile};
use crate::dispatch::Dispatch;
use crate::engine::{EventOutcome, PutAlert};
use crate::error::{Error, Result};
use crate::model::{
    AcceptedEvent, Activation, AlertConfig, AlertTemplate, Event, EventKind, Timestamp,
};
use crate::settings::{AlertsMode, AlertsSettings};
use crate::store::{ActivationQuery, AlertRecord, Store};
use crate::templates;

pub use hooks::AlertHook;
pub use silences::SilenceFilter;

/// Idempotency keys longer than this are refused (they are stored per event).
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// The alerts service over a store, handing what fires to a dispatcher.
#[derive(Clone)]
pub struct Service {
    store: Arc<dyn Store>,
    settings: AlertsSettings,
    dispatch: Arc<dyn Dispatch>,
    hooks: Vec<Arc<dyn AlertHook>>,
}

impl Service {
    /// A service on `store` with the operator's `settings`; activations that fire go to
    /// `dispatch` once committed.
    pub fn new(
        store: Arc<dyn Store>,
        settings: AlertsSettings,
        dispatch: Arc<dyn Dispatch>,
    ) -> Self {
        Service {
            store,
            settings,
            dispatch,
            hooks: Vec::new(),
        }
    }

    /// The service, telling `hook` of every alert change.
    pub fn with_hook(mut self, hook: Arc<dyn AlertHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Tells the hooks that `project/name` is now `rule` (None: deleted).
    async fn changed(&self, project: &str, name: &str, rule: Option<&Rule>) -> Result<()> {
        for hook in &self.hooks {
            hook.changed(project, name, rule).await?;
        }
        Ok(())
    }

    /// The store, for hosts that need more than the API (the notifier, retention).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// `PUT /projects/{project}/alerts/{name}`: creates or updates an alert.
    pub async fn store_alert(
        &self,
        project: &str,
        name: &str,
        config: AlertConfig,
        force_reset: bool,
        now: Timestamp,
    ) -> Result<AlertConfig> {
        let rule = compile(config, project, name, &self.settings)?;
        let put = PutAlert {
            rule,
            force_reset,
            max_allowed: self.settings.max_allowed,
            now,
        };
        let stored = self.store.put_alert(put).await?.alert;
        self.changed(project, name, Some(&stored.rule)).await?;
        Ok(stored.view(now))
    }

    /// `PUT` from an MLRun client, which cannot see Tocsin-only notifications nor their
    /// `send_resolved` (it is answered without them): the stored alert's Tocsin-only
    /// notifications that the body does not name are kept, and so is `send_resolved` on those it
    /// names, so that reading and storing an alert back through MLRun's SDK loses nothing.
    pub async fn store_alert_from_mlrun(
        &self,
        project: &str,
        name: &str,
        mut config: AlertConfig,
        force_reset: bool,
        now: Timestamp,
    ) -> Result<AlertConfig> {
        if let Some(stored) = self.store.get_alert(project, name).await? {
            for n in &mut config.notifications {
                n.send_resolved |= stored
                    .rule
                    .config
                    .notifications
                    .iter()
                    .any(|s| s.send_resolved && s.notification.name == n.notification.name);
            }
            let hidden = stored.rule.config.notifications.iter().filter(|n| {
                !n.notification.kind.is_mlrun_kind()
                    && !config
                        .notifications
                        .iter()
                        .any(|m| m.notification.name == n.notification.name)
            });
            config
                .notifications
                .extend(hidden.cloned().collect::<Vec<_>>());
        }
        self.store_alert(project, name, config, force_reset, now)
            .await
    }

    /// `GET /projects/{project}/alerts/{name}`.
    pub async fn get_alert(
        &self,
        project: &str,
        name: &str,
        now: Timestamp,
    ) -> Result<AlertConfig> {
        match self.store.get_alert(project, name).await? {
            Some(r) => Ok(r.view(now)),
            None => Err(not_found_alert(project, name)),
        }
    }

    /// `GET /projects/{project}/alerts`; project `*` lists every project. Returns the records
    /// (cheap handles) so that a host renders each view as it writes it, never holding every
    /// rendered config of a large listing at once.
    pub async fn list_alerts(
        &self,
        project: &str,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<AlertRecord>> {
        let project = (project != "*").then_some(project);
        self.store.list_alerts(project, offset, limit).await
    }

    /// What a listing's "not modified" is checked against: see
    /// [`crate::store::AlertStore::alerts_version`]. Read it before the listing it describes.
    pub async fn alerts_version(&self) -> Result<String> {
        self.store.alerts_version().await
    }

    /// `DELETE /projects/{project}/alerts/{name}`: succeeds also when there is no such alert.
    pub async fn delete_alert(&self, project: &str, name: &str) -> Result<()> {
        self.store.delete_alert(project, name).await?;
        self.changed(project, name, None).await
    }

    /// `POST /projects/{project}/alerts/{name}/reset`, by `by` (the principal, or MLRun's
    /// client, which says no one). A resolved notification it adds is in the outbox: the
    /// dispatcher is woken to deliver it.
    pub async fn reset_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<()> {
        if self.store.reset_alert(project, name, by, now).await? {
            self.dispatch.wake();
            Ok(())
        } else {
            Err(not_found_alert(project, name))
        }
    }

    /// `POST /projects/{project}/alerts/{name}/acknowledge` (Tocsin's extension).
    pub async fn acknowledge_alert(
        &self,
        project: &str,
        name: &str,
        by: &str,
        now: Timestamp,
    ) -> Result<AlertConfig> {
        let by = by.trim();
        if by.is_empty() || by.chars().count() > 128 {
            return Err(Error::bad(
                "Say who acknowledges: `by` must be 1 to 128 characters",
            ));
        }
        if !self.store.acknowledge_alert(project, name, by, now).await? {
            return Err(not_found_alert(project, name));
        }
        // Channels that take acknowledgements were told through the outbox.
        self.dispatch.wake();
        self.get_alert(project, name, now).await
    }

    /// Checks an event posted to `POST /projects/{project}/events/{kind}` and stamps it.
    pub fn accept_event(
        &self,
        project: &str,
        kind: &str,
        event: Event,
        idempotency_key: Option<String>,
        now: Timestamp,
    ) -> Result<AcceptedEvent> {
        let kind: EventKind = kind
            .parse()
            .map_err(|e: crate::model::UnknownValue| Error::bad(e.to_string()))?;
        if let Some(body_kind) = event.kind
            && body_kind != kind
        {
            return Err(Error::bad(format!(
                "Event kind mismatch: the path names `{kind}`, the body `{body_kind}`"
            )));
        }
        let entity = event.entity;
        let entity_kind = entity.kind;
        if entity.project != project {
            return Err(Error::bad(format!(
                "Invalid event: the entity's project `{}` is not the path's project `{project}`",
                entity.project
            )));
        }
        if let Some(fits) = kind.entity_kind()
            && fits != entity.kind
        {
            return Err(Error::bad(format!(
                "Invalid event: `{kind}` events are about {fits} entities, not {}",
                entity.kind
            )));
        }
        let entity_id = match <[String; 1]>::try_from(entity.ids) {
            Ok([id]) if !id.is_empty() && id != "*" => id,
            Ok(_) => {
                return Err(Error::bad(
                    "Invalid event: the entity id must be a concrete id, not empty or `*`",
                ));
            }
            Err(ids) => {
                return Err(Error::bad(format!(
                    "Invalid event: entity.ids must hold exactly one id, got {}",
                    ids.len()
                )));
            }
        };
        let idempotency_key = idempotency_key.or(event.id);
        if let Some(k) = &idempotency_key
            && (k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY)
        {
            return Err(Error::bad(format!(
                "Invalid idempotency key: it must be 1 to {MAX_IDEMPOTENCY_KEY} bytes long"
            )));
        }
        Ok(AcceptedEvent {
            project: project.to_owned(),
            kind,
            entity_kind,
            entity_id,
            value_dict: event.value_dict,
            at: now,
            idempotency_key,
            chain: Vec::new(),
            message: None,
        })
    }

    /// Evaluates an accepted event and dispatches the activations it fired. With
    /// `alerts.mode = disabled` it is accepted and ignored.
    pub async fn ingest(&self, event: &AcceptedEvent) -> Result<EventOutcome> {
        if self.settings.mode == AlertsMode::Disabled {
            return Ok(EventOutcome::default());
        }
        let outcome = self
            .store
            .apply_event(event, self.settings.idempotency_ttl())
            .await?;
        self.hand_on(&outcome);
        refuse_unknown(event, outcome)
    }

    /// `POST /projects/{project}/alerts/{name}/explain`: why `event` would count for the alert
    /// as it stands now, or not, clause by clause, and what one more like it would do. Reads
    /// the alert, the window the event counts in and the project's silences; changes nothing.
    pub async fn explain(
        &self,
        project: &str,
        name: &str,
        event: &AcceptedEvent,
    ) -> Result<crate::engine::explain::Explanation> {
        let Some((record, window)) = self
            .store
            .alert_window(project, name, &event.entity_id)
            .await?
        else {
            return Err(not_found_alert(project, name));
        };
        let silences = self.store.silences(Some(project)).await?;
        Ok(crate::engine::explain::explain(
            &record.rule,
            &record.runtime,
            window,
            &silences,
            event,
        ))
    }

    /// `POST /projects/{project}/alerts/{name}/explain` for an event as clients post them,
    /// checked as they are and stamped `at`; its kind may be left out (the alert's first).
    pub async fn explain_event(
        &self,
        project: &str,
        name: &str,
        event: Event,
        at: Timestamp,
    ) -> Result<crate::engine::explain::Explanation> {
        let kind = match &event.kind {
            Some(k) => k.clone(),
            None => self
                .store
                .get_alert(project, name)
                .await?
                .ok_or_else(|| not_found_alert(project, name))?
                .rule
                .config
                .trigger
                .events
                .first()
                .cloned()
                .ok_or_else(|| Error::bad("the alert triggers on no event kind"))?,
        };
        let accepted = self.accept_event(project, kind.as_str(), event, None, at)?;
        self.explain(project, name, &accepted).await
    }

    /// `POST /projects/{project}/alerts/{name}/explain` for recorded events: the `last` events
    /// about `entity` since `since` that the alert triggers on, each explained in turn. The
    /// state is rebuilt from the recorded events since `since` through the alert's config as
    /// it is now, starting inactive: resets, acknowledgements and config changes are not
    /// events, and are not in it. A shared window replays every entity's events.
    pub async fn explain_recorded(
        &self,
        project: &str,
        name: &str,
        entity: &str,
        last: usize,
        since: Timestamp,
    ) -> Result<Vec<crate::engine::explain::Explanation>> {
        let record = self
            .store
            .get_alert(project, name)
            .await?
            .ok_or_else(|| not_found_alert(project, name))?;
        let silences = self.store.silences(Some(project)).await?;
        let rule = record.rule;
        let mut query = crate::store::EventQuery {
            project: project.to_owned(),
            since: Some(since),
            kinds: rule.config.trigger.events.clone(),
            entity: rule.per_entity.then(|| entity.to_owned()),
            limit: crate::store::MAX_EVENTS_PER_READ,
            ..Default::default()
        };
        // One pass: the state goes through every event, and the explanations of the last
        // `last` events about the entity are kept as they come.
        let mut replay = crate::engine::explain::Replay::new(rule, since);
        let mut kept = std::collections::VecDeque::with_capacity(last);
        loop {
            let page = self.store.recorded_events(&query).await?;
            let Some(end) = page.last().map(|r| r.cursor.clone()) else {
                break;
            };
            for r in &page {
                if r.event.entity_id == entity && last > 0 {
                    if kept.len() == last {
                        kept.pop_front();
                    }
                    kept.push_back(replay.explain(&r.event, &silences));
                }
                replay.advance(&r.event, &silences);
            }
            query.after = Some(end);
        }
        Ok(kept.into())
    }

    /// `POST /projects/{project}/backtest`: what `alerts` (candidate configs) would have done
    /// over the events recorded from `since` to `until`, with the project's silences and
    /// `silences` besides, beside what the stored alerts did (their activations of the period).
    pub async fn backtest(
        &self,
        project: &str,
        alerts: Vec<AlertConfig>,
        silences: Vec<crate::model::Silence>,
        since: Timestamp,
        until: Timestamp,
    ) -> Result<crate::backtest::Report> {
        let mut all_silences = self.store.silences(Some(project)).await?;
        all_silences.extend(silences);
        let mut replay =
            crate::backtest::Backtest::new(project, alerts, all_silences, &self.settings, since)?;
        let mut query = crate::store::EventQuery {
            project: project.to_owned(),
            since: Some(since),
            until: Some(until),
            limit: crate::store::MAX_EVENTS_PER_READ,
            ..Default::default()
        };
        loop {
            let page = self.store.recorded_events(&query).await?;
            let Some(end) = page.last().map(|r| r.cursor.clone()) else {
                break;
            };
            for r in &page {
                replay.feed(&r.event);
            }
            query.after = Some(end);
        }
        let stored = self
            .store
            .activations(&ActivationQuery {
                project: Some(project.to_owned()),
                since: Some(since),
                until: Some(until),
                limit: usize::MAX,
                ..Default::default()
            })
            .await?;
        Ok(replay.finish(until, &stored))
    }

    /// `GET /projects/{project}/events`: the recorded events a query selects, in order of
    /// arrival (see [`crate::store::EventQuery`]).
    pub async fn recorded_events(
        &self,
        query: &crate::store::EventQuery,
    ) -> Result<Vec<crate::store::Recorded>> {
        self.store.recorded_events(query).await
    }

    /// Hands the activations an outcome fired to the dispatcher, and wakes it for the
    /// resolved notifications of the activations it closed.
    fn hand_on(&self, outcome: &EventOutcome) {
        for fired in &outcome.fired {
            self.dispatch.dispatch(fired.clone());
        }
        if outcome.resolved {
            self.dispatch.wake();
        }
    }

    /// Time passes: what came due by `now` with no event (see
    /// [`crate::store::EventStore::tick`]), and the resolved notifications it adds go out.
    pub async fn tick(&self, now: Timestamp) -> Result<crate::engine::Ticked> {
        let ticked = self.store.tick(now).await?;
        for fired in &ticked.fired {
            self.dispatch.dispatch(fired.clone());
        }
        if ticked.resolved {
            self.dispatch.wake();
        }
        Ok(ticked)
    }

    /// Evaluates accepted events as one batch (see [`crate::store::EventStore::apply_events`]),
    /// one outcome each, and dispatches what fired; an unknown custom kind is that event's 400.
    pub async fn ingest_batch(&self, events: &[AcceptedEvent]) -> Vec<Result<EventOutcome>> {
        if self.settings.mode == AlertsMode::Disabled {
            return events.iter().map(|_| Ok(EventOutcome::default())).collect();
        }
        let outcomes = self
            .store
            .apply_events(events, self.settings.idempotency_ttl())
            .await;
        for outcome in outcomes.iter().flatten() {
            self.hand_on(outcome);
        }
        events
            .iter()
            .zip(outcomes)
            .map(|(event, outcome)| outcome.and_then(|o| refuse_unknown(event, o)))
            .collect()
    }

    /// What an activation of alert `name` would look like if `event` fired it now, and which of
    /// its notifications would be sent or suppressed; nothing is stored or sent. The rule is
    /// returned too, for the host to render each notification's message.
    pub async fn preview(
        &self,
        project: &str,
        name: &str,
        event: Option<Event>,
        now: Timestamp,
    ) -> Result<(Activation, Arc<Rule>)> {
        let record = self
            .store
            .get_alert(project, name)
            .await?
            .ok_or_else(|| not_found_alert(project, name))?;
        let rule = record.rule.clone();
        let c = &rule.config;
        let kind = c
            .trigger
            .events
            .first()
            .cloned()
            .ok_or_else(|| Error::bad("the alert triggers on no event kind"))?;
        let (entity_id, value_dict) = match event {
            Some(e) => (e.entity.ids.into_iter().next(), e.value_dict),
            None => (None, Default::default()),
        };
        let entity_id = entity_id
            .or_else(|| c.entities.ids.first().cloned())
            .unwrap_or_default();
        let event = AcceptedEvent {
            project: project.to_owned(),
            kind,
            entity_kind: c.entities.kind,
            entity_id,
            value_dict,
            at: now,
            idempotency_key: None,
            chain: Vec::new(),
            message: None,
        };
        let mut runtime = record.runtime.clone();
        let deliveries = runtime.plan_deliveries(&rule, &event, &[]);
        let activation = crate::engine::build_activation(
            0,
            &rule,
            &event,
            rule.count as usize,
            false,
            deliveries,
        );
        Ok((activation, rule))
    }

    /// `GET /alert-templates`, in the stable order.
    pub fn templates(&self) -> &'static [AlertTemplate] {
        templates::all()
    }

    /// `GET /alert-templates/{name}`.
    pub fn template(&self, name: &str) -> Result<&'static AlertTemplate> {
        templates::get(name)
            .ok_or_else(|| Error::NotFound(format!("Alert template `{name}` not found")))
    }

    /// `DELETE /alert-templates/{name}`: every shipped template is a system template.
    pub fn delete_template(&self, name: &str) -> Result<()> {
        self.template(name)?;
        Err(Error::bad(format!(
            "Alert template `{name}` is a system template and cannot be deleted"
        )))
    }

    /// `GET /projects/{project}/alert-activations` and `.../alerts/{name}/activations`.
    pub async fn activations(&self, query: &ActivationQuery) -> Result<Vec<Activation>> {
        self.store.activations(query).await
    }

    /// `GET /projects/{project}/alert-activations/{id}`.
    pub async fn activation(&self, project: &str, id: u64) -> Result<Activation> {
        self.store.activation(project, id).await?.ok_or_else(|| {
            Error::NotFound(format!(
                "Alert activation {id} not found in project `{project}`"
            ))
        })
    }
}

/// An event of a custom kind that no alert triggers on is refused (400), not counted nowhere.
fn refuse_unknown(event: &AcceptedEvent, outcome: EventOutcome) -> Result<EventOutcome> {
    if outcome.unknown_kind {
        return Err(Error::bad(format!(
            "invalid event kind `{}`: not a built-in kind, and no alert of project `{}` triggers on it",
            event.kind, event.project
        )));
    }
    Ok(outcome)
}

fn not_found_alert(project: &str, name: &str) -> Error {
    Error::NotFound(format!("Alert `{name}` not found in project `{project}`"))
}
