//! From a wire config to a rule the engine can run: every check of MLRun's store endpoint, and
//! the parsed values (spans, entity selector) the engine needs on each event.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::model::{
    AlertConfig, AlertName, Criteria, NotificationKind, ResetPolicy, Span, parse_period,
};
use crate::settings::{AlertsSettings, MIN_COOLDOWN};

/// Which entities an alert watches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntitySelector {
    /// `*`: every entity of the kind.
    Any,
    /// One entity id.
    Exact(String),
    /// Entity ids matching a glob (`ep1.*`; `*` any run of characters, `?` one): Tocsin's
    /// extension, for an id that holds a `*` but is not `*` alone.
    Glob(String),
}

impl EntitySelector {
    /// Whether events about `entity` concern the alert.
    pub fn matches(&self, entity: &str) -> bool {
        match self {
            EntitySelector::Any => true,
            EntitySelector::Exact(id) => id == entity,
            EntitySelector::Glob(pattern) => crate::model::glob_match(pattern, entity),
        }
    }
}

/// Chained events (`emits`, `event` notifications) stop after this many alerts, which bounds
/// the work one posted event can cause even if alerts form a cycle.
pub const MAX_CHAIN: usize = 8;

/// Deepest filter accepted.
pub const MAX_FILTER_DEPTH: usize = 16;

/// Secret parameters of an alert's notifications, by notification name. Kept apart from the
/// config so that no answer and no log line ever carries them.
pub type Secrets = BTreeMap<String, Map<String, Value>>;

/// Which part of a config a refusal is about: the rule checker points its diagnostic at the
/// statement that wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Name,
    Project,
    Entities,
    /// `trigger.events[i]`.
    Trigger(usize),
    Count,
    Period,
    PerEntity,
    Sustain,
    Absent,
    /// `criteria.must_report[i]`.
    MustReport(usize),
    ResetPolicy,
    Cooldown,
    Filter,
    Emits,
    /// A notification, by name.
    Notification(String),
    /// A notification's cooldown, by the notification's name.
    NotificationCooldown(String),
}

/// Why a config is refused, as a kind the rule checker gives its own code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Path and body disagree (name, project).
    Mismatch,
    /// A value the API cannot take (an invalid name, an empty id, several ids).
    Malformed,
    /// An event kind about another kind of entity than the alert watches.
    KindMismatch,
    /// `trigger.events` is empty (or a Prometheus trigger).
    NoTrigger,
    /// A count below 1.
    CountOutOfRange,
    /// A count at or above the operator's `alerts.max_criteria_count`.
    OverLimit,
    /// A period, sustain, absence or cooldown that does not parse, or is not long enough.
    BadDuration,
    /// `per_entity` or `must_report` on an alert about one entity.
    PerEntityOnOne,
    /// Criteria that exclude each other (count or period with sustain or absence).
    ConflictingCriteria,
    /// An absence alert that would not reset itself (manual, a cooldown) or emits an event.
    AbsenceResetsItself,
    /// `must_report` names an entity the alert does not watch, or applies to no absence.
    NotWatched,
    /// A cooldown on a manual alert.
    CooldownOnManual,
    /// A filter the engine refuses (too deep, empty, a mismatched comparison).
    BadFilter,
    /// An alert that emits what it triggers on, or emits events about another entity kind.
    FeedsItself,
    /// A notification without its target, twice the same name, or an unknown secret.
    BadNotification,
}

/// A refusal of [`compile`]: where, why, and the message the API answers. It becomes the
/// API's 400, 412 or 422 through [`Error`], and a diagnostic at the statement's place in the
/// rule checker: one validator for both.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub field: Field,
    pub reason: Reason,
    pub message: String,
}

fn invalid(field: Field, reason: Reason, message: impl Into<String>) -> Invalid {
    Invalid {
        field,
        reason,
        message: message.into(),
    }
}

impl From<Invalid> for Error {
    /// MLRun's statuses: 412 past an operator limit, 422 for entity ids, 400 for the rest.
    fn from(e: Invalid) -> Self {
        match (&e.field, e.reason) {
            (_, Reason::OverLimit) => Error::PreconditionFailed(e.message),
            (Field::Entities, Reason::Malformed) => Error::Unprocessable(e.message),
            _ => Error::BadRequest(e.message),
        }
    }
}

/// A validated alert config, with what the engine needs parsed once. Stores persist it whole,
/// so that a rule accepted once keeps loading even if the operator's limits change later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// The config as it will be answered: server-owned fields cleared, `secret_params` masked.
    pub config: AlertConfig,
    pub secrets: Secrets,
    pub entity: EntitySelector,
    /// Events needed within `period` (at least 1).
    pub count: u32,
    /// None: events never expire.
    pub period: Option<Span>,
    pub per_entity: bool,
    /// Fire when the filter has held this long (`criteria.sustain`), instead of counting.
    #[serde(default)]
    pub sustain: Option<Span>,
    /// Fire when an entity has sent no event this long (`criteria.absent`), instead of
    /// counting.
    #[serde(default)]
    pub absence: Option<Span>,
    /// Absence alerts: entities awaited even if never seen (`criteria.must_report`).
    #[serde(default)]
    pub must_report: Vec<String>,
    /// Alert-level cooldown (auto reset only); None or zero means reset at once.
    pub cooldown: Option<Span>,
    /// Per-notification cooldowns, by notification name: after a notification is sent, the
    /// same notification of this alert is suppressed for this long.
    #[serde(default)]
    pub notification_cooldowns: BTreeMap<String, Span>,
}

impl Rule {
    /// The alert's project.
    pub fn project(&self) -> &str {
        &self.config.project
    }

    /// The alert's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether an activation stays open while the sustained condition holds and closes when it
    /// stops (`for 1h` with `reset auto` and no cooldown, for an alert that emits no event):
    /// Prometheus' `for`. Without it such an alert would close as it fires and fire again every
    /// span, so a `resolved` notification would say nothing.
    pub fn holds_while_sustained(&self) -> bool {
        self.sustain.is_some()
            && self.config.reset_policy == ResetPolicy::Auto
            && self.cooldown.is_none()
            && self.config.emits.is_none()
    }

    /// The criteria as an activation records them (defaults filled in).
    pub fn criteria(&self) -> Criteria {
        self.config.criteria.clone().unwrap_or_default()
    }

    /// Whether a change from `self` to `new` must reset the alert's state: MLRun resets when
    /// what decides firing (entities, trigger, criteria, cooldown) changes; summary,
    /// description, severity and notifications may change freely.
    pub fn differs_in_behaviour(&self, new: &Rule) -> bool {
        self.config.entities != new.config.entities
            || self.config.trigger != new.config.trigger
            || (self.count, self.period, self.per_entity, self.sustain)
                != (new.count, new.period, new.per_entity, new.sustain)
            || (self.absence, &self.must_report) != (new.absence, &new.must_report)
            || self.cooldown != new.cooldown
            || self.config.filter != new.config.filter
            || self.config.emits != new.config.emits
    }
}

/// Whether an absence alert's config makes sense: a span longer than zero, instead of counting
/// or sustaining, resetting itself, and entities that must report within what it watches.
fn absence_fits(
    span: Span,
    criteria: &Criteria,
    config: &AlertConfig,
    entity: &EntitySelector,
    window: Option<Span>,
    sustain: Option<Span>,
) -> Result<(), Invalid> {
    if span.0 <= 0 {
        return Err(invalid(
            Field::Absent,
            Reason::BadDuration,
            "criteria.absent must be longer than zero",
        ));
    }
    if criteria.count != 1 || window.is_some() || sustain.is_some() {
        return Err(invalid(
            Field::Absent,
            Reason::ConflictingCriteria,
            "criteria.absent replaces count, period and sustain: leave them out",
        ));
    }
    let resets = "An absence alert resets itself when events come back: use reset_policy auto, without cooldown_period";
    if config.reset_policy == ResetPolicy::Manual {
        return Err(invalid(
            Field::ResetPolicy,
            Reason::AbsenceResetsItself,
            resets,
        ));
    }
    if config.cooldown_period.is_some() {
        return Err(invalid(
            Field::Cooldown,
            Reason::AbsenceResetsItself,
            resets,
        ));
    }
    if config.emits.is_some() {
        return Err(invalid(
            Field::Emits,
            Reason::AbsenceResetsItself,
            "An absence alert cannot emit a calculated event",
        ));
    }
    for (i, id) in criteria.must_report.iter().enumerate() {
        if matches!(entity, EntitySelector::Exact(_)) {
            return Err(invalid(
                Field::MustReport(i),
                Reason::PerEntityOnOne,
                "criteria.must_report applies to alerts on many entities (entities.ids [\"*\"] or a glob)",
            ));
        }
        if id.is_empty() || !entity.matches(id) {
            return Err(invalid(
                Field::MustReport(i),
                Reason::NotWatched,
                format!("criteria.must_report: `{id}` is not an entity this alert watches"),
            ));
        }
    }
    Ok(())
}

/// The masked form of a notification's secret parameters, as answered to clients. Storing a
/// config that carries this exact value keeps the secret already stored.
pub fn secret_reference(project: &str, alert: &str, notification: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "secret".into(),
        Value::from(format!("tocsin:{project}/{alert}/{notification}")),
    );
    m
}

fn period(text: &str, name: &str, field: Field) -> Result<Span, Invalid> {
    parse_period(text).map_err(|e| invalid(field, Reason::BadDuration, format!("{name}: {e}")))
}

/// Checks a config stored at `PUT /projects/{project}/alerts/{name}` and compiles it.
pub fn compile(
    mut config: AlertConfig,
    project: &str,
    name: &str,
    settings: &AlertsSettings,
) -> Result<Rule, Invalid> {
    if config.name.is_empty() {
        config.name = name.to_owned();
    }
    if config.name != name {
        return Err(invalid(
            Field::Name,
            Reason::Mismatch,
            format!(
                "Alert name mismatch: the path names `{name}`, the body `{}`",
                config.name
            ),
        ));
    }
    AlertName::parse(name).map_err(|e| invalid(Field::Name, Reason::Malformed, e.to_string()))?;
    if config.project.is_empty() {
        config.project = project.to_owned();
    }
    if config.project != project {
        return Err(invalid(
            Field::Project,
            Reason::Mismatch,
            format!(
                "Alert project mismatch: the path names `{project}`, the body `{}`",
                config.project
            ),
        ));
    }
    let entities = &mut config.entities;
    if entities.project.is_empty() {
        entities.project = project.to_owned();
    }
    if entities.project != project {
        return Err(invalid(
            Field::Project,
            Reason::Mismatch,
            format!(
                "Invalid alert entity project `{}`: it must be the alert's project `{project}`",
                entities.project
            ),
        ));
    }
    let entity = match entities.ids.as_slice() {
        [id] if id == "*" => EntitySelector::Any,
        [id] if id.contains('*') => EntitySelector::Glob(id.clone()),
        [id] if !id.is_empty() => EntitySelector::Exact(id.clone()),
        [_] => {
            return Err(invalid(
                Field::Entities,
                Reason::Malformed,
                "entities.ids: the entity id must not be empty",
            ));
        }
        ids => {
            return Err(invalid(
                Field::Entities,
                Reason::Malformed,
                format!(
                    "entities.ids must hold exactly one id (or \"*\"), got {}",
                    ids.len()
                ),
            ));
        }
    };

    let trigger = &config.trigger;
    if trigger.prometheus_alert.is_some() && trigger.events.is_empty() {
        return Err(invalid(
            Field::Trigger(0),
            Reason::NoTrigger,
            "Prometheus alert triggers are not supported; trigger on events",
        ));
    }
    if trigger.events.is_empty() {
        return Err(invalid(
            Field::Trigger(0),
            Reason::NoTrigger,
            "The alert's trigger must name at least one event kind",
        ));
    }
    for (i, kind) in trigger.events.iter().enumerate() {
        if let Some(fits) = kind.entity_kind()
            && fits != entities.kind
        {
            return Err(invalid(
                Field::Trigger(i),
                Reason::KindMismatch,
                format!(
                    "Event kind `{kind}` is about {fits} entities, but the alert watches {} entities",
                    entities.kind
                ),
            ));
        }
    }

    let criteria = config.criteria.clone().unwrap_or_default();
    if criteria.count < 1 {
        return Err(invalid(
            Field::Count,
            Reason::CountOutOfRange,
            format!("criteria.count must be at least 1, got {}", criteria.count),
        ));
    }
    if criteria.count >= settings.max_criteria_count {
        return Err(invalid(
            Field::Count,
            Reason::OverLimit,
            format!(
                "Maximum criteria count exceeded: {} (the limit is {})",
                criteria.count, settings.max_criteria_count
            ),
        ));
    }
    let window = criteria
        .period
        .as_deref()
        .map(|p| period(p, "criteria.period", Field::Period))
        .transpose()?;
    let window = window.filter(|s| s.0 > 0);
    if criteria.per_entity && matches!(entity, EntitySelector::Exact(_)) {
        return Err(invalid(
            Field::PerEntity,
            Reason::PerEntityOnOne,
            "criteria.per_entity applies to alerts on many entities (entities.ids [\"*\"] or a glob)",
        ));
    }
    let sustain = criteria
        .sustain
        .as_deref()
        .map(|p| period(p, "criteria.sustain", Field::Sustain))
        .transpose()?;
    if let Some(s) = sustain {
        if s.0 <= 0 {
            return Err(invalid(
                Field::Sustain,
                Reason::BadDuration,
                "criteria.sustain must be longer than zero",
            ));
        }
        if criteria.count != 1 || window.is_some() {
            return Err(invalid(
                Field::Sustain,
                Reason::ConflictingCriteria,
                "criteria.sustain replaces count and period: leave them out (or count 1, no period)",
            ));
        }
    }
    let absence = criteria
        .absent
        .as_deref()
        .map(|p| period(p, "criteria.absent", Field::Absent))
        .transpose()?;
    let mut per_entity = criteria.per_entity;
    if let Some(a) = absence {
        absence_fits(a, &criteria, &config, &entity, window, sustain)?;
        // Each entity is awaited apart.
        per_entity = !matches!(entity, EntitySelector::Exact(_));
    } else if !criteria.must_report.is_empty() {
        return Err(invalid(
            Field::MustReport(0),
            Reason::NotWatched,
            "criteria.must_report applies to absence alerts (criteria.absent) only",
        ));
    }
    if let Some(filter) = &config.filter {
        check_filter(filter).map_err(|m| invalid(Field::Filter, Reason::BadFilter, m))?;
    }
    if let Some(emits) = &config.emits {
        if config.trigger.events.contains(emits) {
            return Err(invalid(
                Field::Emits,
                Reason::FeedsItself,
                format!(
                    "The alert emits `{emits}`, which it also triggers on: it would feed itself"
                ),
            ));
        }
        if let Some(fits) = emits.entity_kind()
            && fits != config.entities.kind
        {
            return Err(invalid(
                Field::Emits,
                Reason::KindMismatch,
                format!(
                    "The alert emits `{emits}` events, which are about {fits} entities, but it watches {} entities",
                    config.entities.kind
                ),
            ));
        }
    }

    let cooldown = config
        .cooldown_period
        .as_deref()
        .map(|p| period(p, "cooldown_period", Field::Cooldown))
        .transpose()?;
    let cooldown = cooldown.filter(|s| s.0 > 0);
    if let Some(c) = cooldown {
        if config.reset_policy == ResetPolicy::Manual {
            return Err(invalid(
                Field::Cooldown,
                Reason::CooldownOnManual,
                "cooldown_period applies to alerts with reset_policy auto only",
            ));
        }
        if c < MIN_COOLDOWN {
            return Err(invalid(
                Field::Cooldown,
                Reason::BadDuration,
                format!(
                    "cooldown_period must be at least {}s, got {}s",
                    MIN_COOLDOWN.as_secs(),
                    c.as_secs()
                ),
            ));
        }
    }

    let mut secrets = Secrets::new();
    let mut notification_cooldowns = BTreeMap::new();
    for n in &mut config.notifications {
        if let Some(p) = n.cooldown_period.as_deref() {
            let span = period(
                p,
                &format!("notification `{}` cooldown_period", n.notification.name),
                Field::NotificationCooldown(n.notification.name.clone()),
            )?;
            if span.0 > 0 {
                notification_cooldowns.insert(n.notification.name.clone(), span);
            }
        }
        let note = &mut n.notification;
        if secrets.contains_key(&note.name) {
            return Err(invalid(
                Field::Notification(note.name.clone()),
                Reason::BadNotification,
                format!(
                    "Notification names must be unique within an alert: `{}` appears more than once",
                    note.name
                ),
            ));
        }
        let secret = note.secret_params.take().unwrap_or_default();
        check_notification_target(
            note.kind,
            &note.name,
            &secret,
            note.params.as_ref(),
            project,
            name,
        )
        .map_err(|m| {
            invalid(
                Field::Notification(note.name.clone()),
                Reason::BadNotification,
                m,
            )
        })?;
        if !secret.is_empty() {
            note.secret_params = Some(secret_reference(project, name, &note.name));
        }
        secrets.insert(note.name.clone(), secret);
    }

    // The MLRun client applies a `template` field it reads back: never keep one.
    config.extra.remove("template");
    config.clear_server_fields();

    Ok(Rule {
        count: u32::try_from(criteria.count).unwrap_or(u32::MAX),
        period: window,
        per_entity,
        sustain,
        absence,
        must_report: criteria.must_report.clone(),
        cooldown,
        notification_cooldowns,
        entity,
        secrets,
        config,
    })
}

/// A filter must be shallow enough to evaluate cheaply, name fields, and compare strings with
/// the string operators; why not.
fn check_filter(filter: &crate::model::Filter) -> Result<(), String> {
    use crate::model::Filter;
    if filter.depth() > MAX_FILTER_DEPTH {
        return Err(format!(
            "filter: nested deeper than {MAX_FILTER_DEPTH} levels"
        ));
    }
    match filter {
        Filter::All { all: fs } | Filter::Any { any: fs } if fs.is_empty() => {
            Err("filter: an empty `all` or `any` list; leave the filter out instead".to_owned())
        }
        Filter::All { all: fs } | Filter::Any { any: fs } => fs.iter().try_for_each(check_filter),
        Filter::Not { not } => check_filter(not),
        Filter::Compare { field, op, value } => {
            if field.is_empty() {
                return Err("filter: a comparison names no field".to_owned());
            }
            if op.is_string_op() && !value.is_string() {
                return Err(format!(
                    "filter: `{field} {}` compares with a string, got {value}",
                    op.as_str()
                ));
            }
            if value.is_array() || value.is_object() {
                return Err(format!(
                    "filter: `{field}` is compared with {value}; compare with a number, string, boolean or null"
                ));
            }
            Ok(())
        }
    }
}

/// Each kind needs somewhere to deliver to, in `secret_params` or `params`, and what its
/// channel checks (see [`crate::channels::Channel::check`]). A masked secret (the config was
/// read back and stored again) counts: the stored secret is kept, and was checked when stored.
fn check_notification_target(
    kind: NotificationKind,
    name: &str,
    secret: &Map<String, Value>,
    params: Option<&Map<String, Value>>,
    project: &str,
    alert: &str,
) -> Result<(), String> {
    if *secret == secret_reference(project, alert, name) {
        return Ok(());
    }
    let mut merged = params.cloned().unwrap_or_default();
    merged.extend(secret.iter().map(|(k, v)| (k.clone(), v.clone())));
    for spec in kind.params().iter().filter(|p| p.required) {
        let present = merged
            .get(spec.wire)
            .is_some_and(|v| !v.is_null() && v != "");
        if !present {
            return Err(format!(
                "{kind} notification `{name}` needs `{}` in secret_params or params",
                spec.wire
            ));
        }
    }
    kind.channel()
        .check(&merged)
        .map_err(|why| format!("{kind} notification `{name}`: {why}"))
}

/// A notification whose `secret_params` is the masked reference to itself keeps the secret
/// already stored for it; a reference to a secret that does not exist is refused.
pub fn keep_referenced_secrets(rule: &mut Rule, old: Option<&Rule>) -> Result<()> {
    let (project, name) = (rule.project().to_owned(), rule.name().to_owned());
    for (notification, secret) in rule.secrets.iter_mut() {
        if *secret != secret_reference(&project, &name, notification) {
            continue;
        }
        let stored = old
            .and_then(|o| o.secrets.get(notification))
            .filter(|s| !s.is_empty());
        match stored {
            Some(s) => *secret = s.clone(),
            None => {
                return Err(Error::bad(format!(
                    "Notification `{notification}` refers to a stored secret, but none is stored for it: send its secret_params"
                )));
            }
        }
    }
    Ok(())
}
