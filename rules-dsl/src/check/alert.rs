//! One alert or calculated event: its statements checked and compiled into the alert config the
//! service stores.

use super::*;

impl<'f> Checker<'f> {
    pub(super) fn calculated(
        &mut self,
        name: &Spanned<String>,
        from: &[Spanned<String>],
        statements: &[Spanned<Statement>],
        span: Span,
    ) -> Option<CompiledAlert> {
        let kinds: Vec<EventKind> = from.iter().filter_map(|k| self.event_kind(k)).collect();
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

    /// Compiles one alert from its merged statements.
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

        // Trigger.
        let mut events = Vec::new();
        match get("on") {
            Some(Spanned {
                node: Statement::On(kinds),
                ..
            }) => {
                for k in kinds {
                    if let Some(kind) = self.event_kind(k) {
                        events.push((kind, k.span.clone()));
                    }
                }
            }
            _ => self.diags.push(
                Diagnostic::error(
                    Code::MissingStatement,
                    name.span.clone(),
                    format!("alert `{}` says no event to trigger on", name.node),
                )
                .label("no `on` statement")
                .help("add `on failed` (or another event kind), or extend a template that has one"),
            ),
        }

        // Entity.
        let (entity_kind, entity_id) = match get("entity") {
            Some(Spanned {
                node: Statement::Entity { kind, id },
                span,
            }) => {
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
                let inferred = events.iter().find_map(|(k, _)| match k {
                    EventKind::Custom(c) => self.custom.get(c.as_str()).copied().flatten(),
                    b => b.entity_kind(),
                });
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
        if let Some(ek) = entity_kind {
            for (k, sp) in &events {
                let fits = match k {
                    EventKind::Custom(c) => self.custom.get(c.as_str()).copied().flatten(),
                    b => b.entity_kind(),
                };
                if let Some(f) = fits
                    && f != ek
                {
                    self.diags.push(
                        Diagnostic::error(Code::KindMismatch, sp.clone(), format!("`{k}` events are about {f} entities, but the alert watches {ek} entities"))
                            .label(format!("about {f} entities"))
                            .help(format!("use `entity {f} ...`, or an event kind about {ek} entities")),
                    );
                }
            }
        }
        let many = entity_id.contains('*');

        // Severity, summary, description.
        let severity = match get("severity") {
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
        };
        let summary = match get("summary") {
            Some(Spanned {
                node: Statement::Summary(s),
                ..
            }) => {
                self.placeholders(s, false);
                Some(s.node.clone())
            }
            _ if calculated => Some(format!("{{{{entity}}}}: {}", name.node)),
            _ => None,
        };
        let description = match get("description") {
            Some(Spanned {
                node: Statement::Description(s),
                ..
            }) => s.node.clone(),
            _ => String::new(),
        };

        // Criteria.
        let mut window = None;
        let criteria = match get("criteria") {
            Some(Spanned {
                node:
                    Statement::When {
                        count,
                        within,
                        per_entity,
                    },
                span,
            }) => {
                let n = match count.node.parse::<i64>() {
                    Ok(n) if n >= 1 && n < self.settings.max_criteria_count => Some(n),
                    _ => {
                        self.diags.push(
                            Diagnostic::error(Code::InvalidCount, count.span.clone(), format!("invalid count `{}`", count.node))
                                .label(format!("expected 1 to {}", self.settings.max_criteria_count - 1))
                                .help("the service refuses counts at or above `alerts.max_criteria_count`"),
                        );
                        None
                    }
                };
                let period = within.as_ref().and_then(|w| self.duration(w));
                window = period
                    .clone()
                    .and_then(|p| parse_period(&p).ok())
                    .map(|s| (s, within.clone()));
                self.per_entity(*per_entity, many, span, n.is_some_and(|n| n > 1));
                Some(Criteria {
                    count: n.unwrap_or(1),
                    period,
                    per_entity: *per_entity,
                    sustain: None,
                    ..Default::default()
                })
            }
            Some(Spanned {
                node:
                    Statement::For {
                        duration,
                        per_entity,
                    },
                span,
            }) => {
                let d = self.duration(duration);
                self.per_entity(*per_entity, many, span, false);
                Some(Criteria {
                    count: 1,
                    period: None,
                    per_entity: many,
                    sustain: d,
                    ..Default::default()
                })
            }
            Some(Spanned {
                node:
                    Statement::Absent {
                        duration,
                        expecting,
                    },
                span,
            }) => {
                let d = self.duration(duration);
                if !expecting.is_empty() && !many {
                    self.diags.push(
                        Diagnostic::error(
                            Code::PerEntityOnOne,
                            span.clone(),
                            "`expecting` on an alert about one entity",
                        )
                        .label("that entity is awaited anyway")
                        .help("remove `expecting`, or watch many entities (`entity job \"*\"`)"),
                    );
                }
                Some(Criteria {
                    absent: d,
                    must_report: expecting.iter().map(|e| e.node.clone()).collect(),
                    ..Default::default()
                })
            }
            _ => None,
        };

        // Filter.
        let filter = match get("where") {
            Some(Spanned {
                node: Statement::Where(e),
                ..
            }) => Some(self.filter(e)),
            _ => None,
        };

        // Reset and cooldown.
        let reset = match get("reset") {
            Some(Spanned {
                node: Statement::Reset(w),
                ..
            }) => self.word::<ResetPolicy>(
                w,
                "reset policy",
                ResetPolicy::ALL.iter().map(|r| r.as_str()),
            ),
            _ => Some(ResetPolicy::Auto),
        };
        let cooldown = match get("cooldown") {
            Some(Spanned {
                node: Statement::Cooldown(d),
                span,
            }) => {
                let text = self.duration(d);
                if reset == Some(ResetPolicy::Manual) {
                    self.diags.push(
                        Diagnostic::error(
                            Code::CooldownOnManual,
                            span.clone(),
                            "`cooldown` on an alert with `reset manual`",
                        )
                        .label("a manual alert stays active until reset; it has no cooldown")
                        .help("remove the cooldown, or use `reset auto`"),
                    );
                }
                if let (Some(t), Some((w, Some(within)))) = (&text, &window)
                    && let Ok(c) = parse_period(t)
                    && c < *w
                {
                    self.diags.push(
                        Diagnostic::warning(Code::ShortCooldown, span.clone(), format!("the cooldown ({t}) is shorter than the window ({})", within.node))
                            .label("shorter than the criteria window")
                            .help("events from before the cooldown may still fill the window and fire again at once"),
                    );
                }
                text
            }
            _ => None,
        };

        // Notifications.
        let mut notifications = Vec::new();
        let mut unresolved = Vec::new();
        for s in statements {
            if let Statement::Notify {
                kind,
                name: nname,
                params,
            } = &s.node
                && let Some(n) = self.notification(&name.node, kind, nname, params, &mut unresolved)
            {
                // Absences and sustained conditions stay open until events say otherwise.
                let stays_open = criteria
                    .as_ref()
                    .is_some_and(|c| c.absent.is_some() || c.sustain.is_some());
                if n.send_resolved
                    && reset == Some(ResetPolicy::Auto)
                    && cooldown.is_none()
                    && !stays_open
                {
                    self.diags.push(
                        Diagnostic::warning(
                            Code::ResolvedAtOnce,
                            nname.span.clone(),
                            format!("`{}` would say resolved the moment it fires", nname.node),
                        )
                        .label("an auto alert without a cooldown closes as it fires")
                        .help("give the alert a `cooldown` (it stays active that long) or a `for` condition (active while it holds), or `reset manual`"),
                    );
                }
                notifications.push(n);
            }
        }

        if self.error_count() > errors_before {
            return None;
        }
        let (Some(severity), Some(entity_kind), Some(reset)) = (severity, entity_kind, reset)
        else {
            return None;
        };
        let emits = emits.flatten();
        let config = AlertConfig {
            project: self.project.clone(),
            name: name.node.clone(),
            id: None,
            description,
            summary,
            severity,
            criteria,
            trigger: Trigger {
                events: events.into_iter().map(|(k, _)| k).collect(),
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
            emits,
            state: Default::default(),
            acknowledged: None,
            silenced: None,
            last_activation_time: None,
            count: 0,
            created: None,
            updated: None,
            extra: Map::new(),
        };
        Some(CompiledAlert {
            config,
            span,
            unresolved_secrets: unresolved,
        })
    }

    pub(super) fn per_entity(
        &mut self,
        per_entity: bool,
        many: bool,
        span: &Span,
        counts_many: bool,
    ) {
        if per_entity && !many {
            self.diags.push(
                Diagnostic::error(Code::PerEntityOnOne, span.clone(), "`per entity` on an alert about one entity")
                    .label("there is only one entity to count")
                    .help("remove `per entity`, or watch many entities with `entity KIND \"*\"` or a glob"),
            );
        }
        if many && !per_entity && counts_many {
            self.diags.push(
                Diagnostic::warning(Code::SharedWindow, span.clone(), "events of all matching entities count in one window")
                    .label("one window shared by every entity")
                    .help("add `per entity` to count each entity's events apart (MLRun shares one window)"),
            );
        }
    }
}
