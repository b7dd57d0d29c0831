//! One alert or calculated event: its merged statements lowered to the alert config the service
//! stores, then validated by the server's own [`compile`]: one validator for `tocsin check` and
//! `PUT .../alerts/{name}`. What only the language knows (kinds declared in the file,
//! templates, names, placeholders, "did you mean") is checked here while lowering; a refusal of
//! `compile` becomes a diagnostic at the statement that wrote the refused field.

use tocsin_core::compiled::{Field, Invalid, Reason, compile};

use super::*;

/// Where each part of an alert's config was written, for the diagnostic of a refusal.
#[derive(Default)]
pub(super) struct Places {
    name: Span,
    on: Vec<Span>,
    entity: Option<Span>,
    criteria: Option<Span>,
    count: Option<Span>,
    expecting: Vec<Span>,
    reset: Option<Span>,
    cooldown: Option<Span>,
    filter: Option<Span>,
    notifications: Vec<(String, Span)>,
}

impl Places {
    /// The span of the statement that wrote `field` (the alert's name when none did).
    fn of(&self, field: &Field, emits: Option<&EventKind>, on: &[EventKind]) -> Span {
        let named = |n: &str| {
            self.notifications
                .iter()
                .find(|(name, _)| name == n)
                .map(|(_, s)| s.clone())
        };
        let found = match field {
            Field::Trigger(i) => self.on.get(*i).cloned(),
            Field::Entities => self.entity.clone(),
            Field::Count => self.count.clone().or_else(|| self.criteria.clone()),
            Field::Period | Field::PerEntity | Field::Sustain | Field::Absent => {
                self.criteria.clone()
            }
            Field::MustReport(i) => self
                .expecting
                .get(*i)
                .cloned()
                .or_else(|| self.criteria.clone()),
            Field::ResetPolicy => self.reset.clone(),
            Field::Cooldown => self.cooldown.clone(),
            Field::Filter => self.filter.clone(),
            // A calculated event fed by itself: the kind it triggers on; an absence that would
            // emit: its criteria.
            Field::Emits => emits
                .and_then(|e| on.iter().position(|k| k == e))
                .and_then(|i| self.on.get(i).cloned())
                .or_else(|| self.criteria.clone()),
            Field::Notification(n) | Field::NotificationCooldown(n) => named(n),
            Field::Name | Field::Project => None,
        };
        found.unwrap_or_else(|| self.name.clone())
    }
}

/// A counting window's span, with where it was written.
type Window = Option<(tocsin_core::model::Span, Spanned<String>)>;

/// A refusal of the server as a diagnostic of the language: its code, its message (in the
/// language's words where they say it better than the wire's), the label and the hint.
fn explain(
    refusal: &Invalid,
    config: &AlertConfig,
    max_count: i64,
) -> (Code, String, String, String) {
    let words = |m: &str, l: &str, h: &str| (m.to_owned(), l.to_owned(), h.to_owned());
    let server = refusal.message.clone();
    let (code, (message, label, help)) = match (refusal.reason, &refusal.field) {
        (Reason::Mismatch | Reason::Malformed, _) => (
            Code::InvalidName,
            (
                server,
                "the server refuses this".into(),
                "see the naming rules in the README".into(),
            ),
        ),
        (Reason::KindMismatch, _) => (
            Code::KindMismatch,
            (
                server,
                "about another kind of entity".into(),
                "trigger on events about the entities the alert watches".into(),
            ),
        ),
        (Reason::NoTrigger, _) => (
            Code::MissingStatement,
            (
                server,
                "no event to trigger on".into(),
                "add `on failed` (or another event kind)".into(),
            ),
        ),
        (Reason::CountOutOfRange | Reason::OverLimit, _) => {
            let count = config.criteria.as_ref().map_or(1, |c| c.count);
            (
                Code::InvalidCount,
                (
                    format!("invalid count `{count}`"),
                    format!("expected 1 to {}", max_count - 1),
                    "the service refuses counts at or above `alerts.max_criteria_count`".into(),
                ),
            )
        }
        (Reason::BadDuration, _) => (
            Code::InvalidDuration,
            (
                server,
                "not a duration the server takes".into(),
                "write a duration such as `90s`, `15m` or `1h30m`".into(),
            ),
        ),
        (Reason::PerEntityOnOne, Field::MustReport(_)) => (
            Code::PerEntityOnOne,
            words(
                "`expecting` on an alert about one entity",
                "that entity is awaited anyway",
                "remove `expecting`, or watch many entities (`entity job \"*\"`)",
            ),
        ),
        (Reason::PerEntityOnOne, _) => (
            Code::PerEntityOnOne,
            words(
                "`per entity` on an alert about one entity",
                "there is only one entity to count",
                "remove `per entity`, or watch many entities with `entity KIND \"*\"` or a glob",
            ),
        ),
        (Reason::ConflictingCriteria, _) => (
            Code::CountAndSustain,
            (
                server,
                "criteria that exclude each other".into(),
                "an alert counts, waits for a condition to hold, or awaits events: one of them"
                    .into(),
            ),
        ),
        (Reason::AbsenceResetsItself, Field::ResetPolicy) => (
            Code::AbsenceResetsItself,
            words(
                "`reset manual` on an absence alert",
                "an absence closes by itself when events come back",
                "remove `reset manual`",
            ),
        ),
        (Reason::AbsenceResetsItself, Field::Cooldown) => (
            Code::AbsenceResetsItself,
            words(
                "`cooldown` on an absence alert",
                "an absence closes by itself when events come back",
                "remove the cooldown",
            ),
        ),
        (Reason::AbsenceResetsItself, _) => (
            Code::AbsenceResetsItself,
            words(
                "a calculated event cannot await an absence",
                "an absence emits no event",
                "write an alert with `when absent for ...` instead",
            ),
        ),
        (Reason::NotWatched, Field::MustReport(i)) => {
            let id = config
                .criteria
                .as_ref()
                .and_then(|c| c.must_report.get(*i))
                .cloned()
                .unwrap_or_default();
            (
                Code::NotWatched,
                (
                    format!("`expecting` names `{id}`, which the alert does not watch"),
                    "outside the alert's entity".into(),
                    "name entities the alert's `entity` statement matches".into(),
                ),
            )
        }
        (Reason::NotWatched, _) => (
            Code::NotWatched,
            (
                server,
                "not an entity this alert watches".into(),
                "name entities the alert's `entity` statement matches".into(),
            ),
        ),
        (Reason::CooldownOnManual, _) => (
            Code::CooldownOnManual,
            words(
                "`cooldown` on an alert with `reset manual`",
                "a manual alert stays active until reset; it has no cooldown",
                "remove the cooldown, or use `reset auto`",
            ),
        ),
        (Reason::BadFilter, _) => (
            Code::MismatchedComparison,
            (
                server,
                "the server refuses this filter".into(),
                "compare fields with numbers, strings, booleans or null".into(),
            ),
        ),
        (Reason::FeedsItself, _) => (
            Code::SelfFeedingEvent,
            (
                format!("event `{}` is calculated from itself", config.name),
                "it would feed itself".into(),
                "calculate the event from other kinds".into(),
            ),
        ),
        (Reason::BadNotification, _) => (
            Code::MissingTarget,
            (
                server,
                "the server cannot deliver this".into(),
                "give the notification where to deliver".into(),
            ),
        ),
    };
    (code, message, label, help)
}

impl<'f> Checker<'f> {
    pub(super) fn calculated(
        &mut self,
        name: &Spanned<String>,
        from: &[Spanned<String>],
        statements: &[Spanned<Statement>],
        span: Span,
    ) -> Option<CompiledAlert> {
        let kinds: Vec<EventKind> = from.iter().filter_map(|k| self.event_kind(k)).collect();
        // Of the language: the declaration names itself (the server would also refuse the
        // config, but this says it whatever else is wrong with the event).
        if let Some(k) = from.iter().find(|k| k.node == name.node) {
            self.diags.push(
                Diagnostic::error(
                    Code::SelfFeedingEvent,
                    k.span.clone(),
                    format!("event `{}` is calculated from itself", name.node),
                )
                .label("it would feed itself"),
            );
        }
        let mut merged: Vec<Merged<'_>> = statements
            .iter()
            .filter(|s| fits_calculated_event(&s.node))
            .map(Cow::Borrowed)
            .collect();
        let on_span = from.first().map_or(span.clone(), |f| {
            f.span.start..from.last().map_or(f.span.end, |l| l.span.end)
        });
        merged.push(Cow::Owned(Spanned::new(
            Statement::On(from.to_vec()),
            on_span,
        )));
        if kinds.len() != from.len() {
            return None;
        }
        let emits = self
            .custom
            .contains_key(&name.node)
            .then(|| name.node.parse::<EventKind>().ok())
            .flatten();
        self.alert(name, &merged, Some(emits), span)
    }

    /// Lowers one alert from its merged statements, then asks the server's `compile`.
    pub(super) fn alert(
        &mut self,
        name: &Spanned<String>,
        statements: &[Merged<'_>],
        // Some for a calculated event: the kind it emits (None if its name was refused).
        emits: Option<Option<EventKind>>,
        span: Span,
    ) -> Option<CompiledAlert> {
        let errors_before = self.error_count();
        let get = |kw: &str| {
            statements
                .iter()
                .map(|s| &**s)
                .find(|s| slot(&s.node) == kw)
        };
        let calculated = emits.is_some();
        let mut places = Places {
            name: name.span.clone(),
            ..Places::default()
        };
        let events = self.trigger(name, get("on"), &mut places);
        let (entity_kind, entity_id) = self.entity(name, get("entity"), &events, &mut places);
        let severity = self.severity(name, get("severity"), calculated);
        let summary = match get("summary") {
            Some(Spanned {
                node: Statement::Summary(s),
                ..
            }) => {
                self.placeholders(s, false);
                Some(s.node.clone())
            }
            _ => calculated.then(|| format!("{{{{entity}}}}: {}", name.node)),
        };
        let description = match get("description") {
            Some(Spanned {
                node: Statement::Description(s),
                ..
            }) => s.node.clone(),
            _ => String::new(),
        };
        let many = entity_id.contains('*');
        let (criteria, window) = self.criteria(get("criteria"), many, &mut places);
        let filter = match get("where") {
            Some(Spanned {
                node: Statement::Where(e),
                span,
            }) => {
                places.filter = Some(span.clone());
                Some(self.filter(e))
            }
            _ => None,
        };
        let (reset, cooldown) =
            self.reset_and_cooldown(get("reset"), get("cooldown"), &window, &mut places);
        let (notifications, unresolved) =
            self.notifications(name, statements, &criteria, reset, &cooldown, &mut places);
        // A name the declarations refused was reported there.
        if self.error_count() > errors_before || !AlertName::is_valid(&name.node) {
            return None;
        }
        let (Some(severity), Some(entity_kind), Some(reset)) = (severity, entity_kind, reset)
        else {
            return None;
        };
        let config = AlertConfig {
            project: self.project.clone(),
            name: name.node.clone(),
            description,
            summary,
            severity,
            criteria,
            trigger: Trigger {
                events,
                prometheus_alert: None,
            },
            entities: Entities {
                kind: entity_kind,
                project: self.project.clone(),
                ids: vec![entity_id],
            },
            notifications,
            reset_policy: reset,
            cooldown_period: cooldown,
            filter: filter.map(Box::new),
            emits: emits.flatten(),
            id: None,
            state: Default::default(),
            acknowledged: None,
            silenced: None,
            last_activation_time: None,
            count: 0,
            created: None,
            updated: None,
            extra: Map::new(),
        };
        self.server_verdict(&config, &places)?;
        Some(CompiledAlert {
            config,
            span,
            unresolved_secrets: unresolved,
        })
    }

    /// What the server says of `config`: None (and a diagnostic) when it would refuse it.
    fn server_verdict(&mut self, config: &AlertConfig, places: &Places) -> Option<()> {
        let refusal: Invalid =
            match compile(config.clone(), &self.project, &config.name, &self.settings) {
                Ok(_) => return Some(()),
                Err(refusal) => refusal,
            };
        let (code, message, label, help) =
            explain(&refusal, config, self.settings.max_criteria_count);
        let span = places.of(
            &refusal.field,
            config.emits.as_ref(),
            &config.trigger.events,
        );
        self.diags.push(
            Diagnostic::error(code, span, message)
                .label(label)
                .help(help),
        );
        None
    }

    /// `on`: the event kinds, each known (built in, or declared in the file).
    fn trigger(
        &mut self,
        name: &Spanned<String>,
        on: Option<&Spanned<Statement>>,
        places: &mut Places,
    ) -> Vec<EventKind> {
        let Some(Spanned {
            node: Statement::On(kinds),
            ..
        }) = on
        else {
            self.diags.push(
                Diagnostic::error(
                    Code::MissingStatement,
                    name.span.clone(),
                    format!("alert `{}` says no event to trigger on", name.node),
                )
                .label("no `on` statement")
                .help("add `on failed` (or another event kind), or extend a template that has one"),
            );
            return Vec::new();
        };
        let mut events = Vec::new();
        for k in kinds {
            if let Some(kind) = self.event_kind(k) {
                events.push(kind);
                places.on.push(k.span.clone());
            }
        }
        events
    }

    /// `entity`: its kind (or the one its events are about) and id; each event kind fits it.
    fn entity(
        &mut self,
        name: &Spanned<String>,
        entity: Option<&Spanned<Statement>>,
        events: &[EventKind],
        places: &mut Places,
    ) -> (Option<EntityKind>, String) {
        let about = |c: &Checker<'_>, k: &EventKind| match k {
            EventKind::Custom(c_) => c.custom.get(c_.as_str()).copied().flatten(),
            b => b.entity_kind(),
        };
        let (kind, id) = match entity {
            Some(Spanned {
                node: Statement::Entity { kind, id },
                span,
            }) => {
                places.entity = Some(span.clone());
                let k = self.entity_kind(kind);
                let id_value = id.as_ref().map_or("*".to_owned(), |i| i.node.clone());
                if id_value.is_empty() {
                    self.diags.push(
                        Diagnostic::error(
                            Code::InvalidEntityId,
                            id.as_ref().map_or(span.clone(), |i| i.span.clone()),
                            "the entity id is empty",
                        )
                        .label("empty")
                        .help("give an id, a glob such as \"ep1.*\", or \"*\" for every entity"),
                    );
                }
                (k, id_value)
            }
            _ => {
                let inferred = events.iter().find_map(|k| about(self, k));
                if inferred.is_none() && !events.is_empty() {
                    self.diags.push(
                        Diagnostic::error(
                            Code::MissingStatement,
                            name.span.clone(),
                            format!("`{}` needs an `entity` statement", name.node),
                        )
                        .label("the entity kind cannot be inferred from its events")
                        .help("add `entity job \"*\"` (or another entity kind and id)"),
                    );
                }
                (inferred, "*".to_owned())
            }
        };
        if let Some(ek) = kind {
            // Custom kinds are known to the file only: the server cannot say this of them.
            for (k, sp) in events.iter().zip(places.on.clone()) {
                if let Some(f) = about(self, k)
                    && f != ek
                {
                    self.diags.push(
                        Diagnostic::error(Code::KindMismatch, sp, format!("`{k}` events are about {f} entities, but the alert watches {ek} entities"))
                            .label(format!("about {f} entities"))
                            .help(format!("use `entity {f} ...`, or an event kind about {ek} entities")),
                    );
                }
            }
        }
        (kind, id)
    }

    /// `severity`: low for a calculated event without one; required of an alert.
    fn severity(
        &mut self,
        name: &Spanned<String>,
        severity: Option<&Spanned<Statement>>,
        calculated: bool,
    ) -> Option<Severity> {
        match severity {
            Some(Spanned {
                node: Statement::Severity(w),
                ..
            }) => self.word::<Severity>(w, "severity", Severity::ALL.iter().map(|s| s.as_str())),
            _ if calculated => Some(Severity::Low),
            _ => {
                self.diags.push(
                    Diagnostic::error(
                        Code::MissingStatement,
                        name.span.clone(),
                        format!("alert `{}` has no severity", name.node),
                    )
                    .label("no `severity` statement")
                    .help("add `severity low`, `severity medium` or `severity high`"),
                );
                None
            }
        }
    }

    /// `when count`, `for` or `when absent`: the criteria, and the counting window with where
    /// it was written (for the cooldown's warning).
    fn criteria(
        &mut self,
        criteria: Option<&Spanned<Statement>>,
        many: bool,
        places: &mut Places,
    ) -> (Option<Criteria>, Window) {
        let Some(Spanned { node, span }) = criteria else {
            return (None, None);
        };
        places.criteria = Some(span.clone());
        match node {
            Statement::When {
                count,
                within,
                per_entity,
            } => {
                places.count = Some(count.span.clone());
                let n = count.node.parse::<i64>().ok();
                if n.is_none() {
                    self.diags.push(
                        Diagnostic::error(
                            Code::InvalidCount,
                            count.span.clone(),
                            format!("invalid count `{}`", count.node),
                        )
                        .label("not a whole number")
                        .help("write a count such as `when count >= 3 within 10m`"),
                    );
                }
                if let Some(w) = within {
                    self.zero_is_none(w, "window");
                }
                let period = within.as_ref().and_then(|w| self.duration(w));
                let window = period
                    .as_ref()
                    .and_then(|p| parse_period(p).ok())
                    .zip(within.clone());
                let max = self.settings.max_criteria_count;
                let counts_many = n.is_some_and(|n| n > 1 && n < max);
                self.shared_window(*per_entity, many, span, counts_many);
                let c = Criteria {
                    count: n.unwrap_or(1),
                    period,
                    per_entity: *per_entity,
                    ..Default::default()
                };
                (Some(c), window)
            }
            Statement::For {
                duration,
                per_entity,
            } => {
                let c = Criteria {
                    count: 1,
                    // `for` on many entities holds per entity, said or not.
                    per_entity: many || *per_entity,
                    sustain: self.duration(duration),
                    ..Default::default()
                };
                (Some(c), None)
            }
            Statement::Absent {
                duration,
                expecting,
            } => {
                places.expecting = expecting.iter().map(|e| e.span.clone()).collect();
                let c = Criteria {
                    absent: self.duration(duration),
                    must_report: expecting.iter().map(|e| e.node.clone()).collect(),
                    ..Default::default()
                };
                (Some(c), None)
            }
            _ => (None, None),
        }
    }

    /// `reset` (auto unless said) and `cooldown`, with the warning of a cooldown shorter than
    /// the counting window.
    fn reset_and_cooldown(
        &mut self,
        reset: Option<&Spanned<Statement>>,
        cooldown: Option<&Spanned<Statement>>,
        window: &Window,
        places: &mut Places,
    ) -> (Option<ResetPolicy>, Option<String>) {
        let reset = match reset {
            Some(Spanned {
                node: Statement::Reset(w),
                span,
            }) => {
                places.reset = Some(span.clone());
                self.word::<ResetPolicy>(
                    w,
                    "reset policy",
                    ResetPolicy::ALL.iter().map(|r| r.as_str()),
                )
            }
            _ => Some(ResetPolicy::Auto),
        };
        let Some(Spanned {
            node: Statement::Cooldown(d),
            span,
        }) = cooldown
        else {
            return (reset, None);
        };
        places.cooldown = Some(span.clone());
        self.zero_is_none(d, "cooldown");
        let text = self.duration(d);
        if let (Some(t), Some((w, within))) = (&text, window)
            && let Ok(c) = parse_period(t)
            && c < *w
        {
            self.diags.push(
                Diagnostic::warning(Code::ShortCooldown, span.clone(), format!("the cooldown ({t}) is shorter than the window ({})", within.node))
                    .label("shorter than the criteria window")
                    .help("events from before the cooldown may still fill the window and fire again at once"),
            );
        }
        (reset, text)
    }

    /// Every `notify` statement, with the warning of a resolved notice that would be sent the
    /// moment the alert fires.
    fn notifications(
        &mut self,
        alert: &Spanned<String>,
        statements: &[Merged<'_>],
        criteria: &Option<Criteria>,
        reset: Option<ResetPolicy>,
        cooldown: &Option<String>,
        places: &mut Places,
    ) -> (Vec<AlertNotification>, Vec<String>) {
        let mut notifications = Vec::new();
        let mut unresolved = Vec::new();
        // Absences and sustained conditions stay open until events say otherwise.
        let stays_open = criteria
            .as_ref()
            .is_some_and(|c| c.absent.is_some() || c.sustain.is_some());
        for s in statements {
            let Statement::Notify { kind, name, params } = &s.node else {
                continue;
            };
            let Some(n) = self.notification(&alert.node, kind, name, params, &mut unresolved)
            else {
                continue;
            };
            places
                .notifications
                .push((name.node.clone(), name.span.clone()));
            if n.send_resolved
                && reset == Some(ResetPolicy::Auto)
                && cooldown.is_none()
                && !stays_open
            {
                self.diags.push(
                    Diagnostic::warning(
                        Code::ResolvedAtOnce,
                        name.span.clone(),
                        format!("`{}` would say resolved the moment it fires", name.node),
                    )
                    .label("an auto alert without a cooldown closes as it fires")
                    .help("give the alert a `cooldown` (it stays active that long) or a `for` condition (active while it holds), or `reset manual`"),
                );
            }
            notifications.push(n);
        }
        (notifications, unresolved)
    }

    /// Warns when events of many entities share one counting window (MLRun's way).
    pub(super) fn shared_window(
        &mut self,
        per_entity: bool,
        many: bool,
        span: &Span,
        counts_many: bool,
    ) {
        if many && !per_entity && counts_many {
            self.diags.push(
                Diagnostic::warning(Code::SharedWindow, span.clone(), "events of all matching entities count in one window")
                    .label("one window shared by every entity")
                    .help("add `per entity` to count each entity's events apart (MLRun shares one window)"),
            );
        }
    }
}
