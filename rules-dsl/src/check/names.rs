//! Names and kinds: the project, unique alert and template names, custom event kinds,
//! and the event and entity kinds a statement names.

use super::*;

impl<'f> Checker<'f> {
    /// First pass: the project, templates, and declared event kinds; duplicate names.
    pub(super) fn declarations(&mut self, file: &'f File) {
        for (keyword, name) in &file.unparsed {
            match keyword.as_str() {
                "template" => {
                    self.broken_templates.insert(name.clone());
                }
                "event" => {
                    self.custom.insert(name.clone(), None);
                }
                _ => {}
            }
        }
        let mut projects = Vec::new();
        let mut names: BTreeMap<String, Span> = BTreeMap::new();
        for item in &file.items {
            match item {
                Item::Project(p) => projects.push(p),
                Item::Template(d) => {
                    if self.templates.insert(d.name.node.clone(), d).is_some() {
                        self.diags.push(
                            Diagnostic::error(
                                Code::DuplicateName,
                                d.name.span.clone(),
                                format!("template `{}` is defined twice", d.name.node),
                            )
                            .label("defined again here"),
                        );
                    }
                }
                Item::Alert(d) => self.unique_name(&mut names, &d.name),
                Item::Silence { .. } => {}
                Item::CalculatedEvent { name, .. } => {
                    self.unique_name(&mut names, name);
                    if self.event_kind_name(name) {
                        self.custom.insert(name.node.clone(), None);
                    }
                }
                Item::CustomEvent { name, entity, .. } => {
                    let kind = self.entity_kind(entity);
                    if self.event_kind_name(name)
                        && self.custom.insert(name.node.clone(), kind).is_some()
                    {
                        self.diags.push(
                            Diagnostic::error(
                                Code::DuplicateName,
                                name.span.clone(),
                                format!("event `{}` is defined twice", name.node),
                            )
                            .label("defined again here"),
                        );
                    }
                }
            }
        }
        // Calculated events are about the entity kind of what they are calculated from.
        for item in &file.items {
            if let Item::CalculatedEvent { name, from, .. } = item {
                let entity = from.iter().find_map(|k| self.known_entity_of(&k.node));
                if let Some(e) = entity {
                    self.custom.insert(name.node.clone(), Some(e));
                }
            }
        }
        match projects.as_slice() {
            [] => self.diags.push(
                Diagnostic::error(Code::Project, 0..0, "the file declares no project")
                    .label("expected `project NAME` first")
                    .help("start the file with `project my-project`"),
            ),
            [p, rest @ ..] => {
                self.project = p.node.clone();
                if !ProjectName::is_valid(&p.node) {
                    self.diags.push(name_error(p));
                }
                for extra in rest {
                    self.diags.push(
                        Diagnostic::error(Code::Project, extra.span.clone(), "the file declares more than one project")
                            .label("a second project")
                            .help(format!("a file holds the alerts of one project (`{}`); put these in another file", p.node)),
                    );
                }
            }
        }
    }

    pub(super) fn unique_name(
        &mut self,
        names: &mut BTreeMap<String, Span>,
        name: &Spanned<String>,
    ) {
        if !AlertName::is_valid(&name.node) {
            self.diags.push(name_error(name));
        }
        if names.insert(name.node.clone(), name.span.clone()).is_some() {
            self.diags.push(
                Diagnostic::error(
                    Code::DuplicateName,
                    name.span.clone(),
                    format!("`{}` is defined twice", name.node),
                )
                .label("defined again here")
                .help("alerts and calculated events share one namespace per project"),
            );
        }
    }

    /// Whether a declared event name is a usable custom kind (reports why not).
    pub(super) fn event_kind_name(&mut self, name: &Spanned<String>) -> bool {
        match name.node.parse::<EventKind>() {
            Ok(EventKind::Custom(c)) if c.as_str() == name.node => true,
            Ok(EventKind::Custom(_)) => {
                self.diags.push(
                    Diagnostic::error(
                        Code::InvalidName,
                        name.span.clone(),
                        format!("invalid event name `{}`", name.node),
                    )
                    .label("not in canonical form")
                    .help("use lowercase letters, digits and hyphens"),
                );
                false
            }
            Ok(builtin) => {
                self.diags.push(
                    Diagnostic::error(
                        Code::DuplicateName,
                        name.span.clone(),
                        format!("`{}` is a built-in event kind", name.node),
                    )
                    .label(format!("already means `{builtin}`"))
                    .help("give the new event a name of its own"),
                );
                false
            }
            Err(_) => {
                let near = did_you_mean(&name.node, EventKind::ALL.iter().map(|k| k.as_str()));
                let d = Diagnostic::error(
                    Code::InvalidName,
                    name.span.clone(),
                    format!("invalid event name `{}`", name.node),
                )
                .label("not usable as an event kind");
                self.diags.push(match near {
                    Some(n) => d.help(format!("it is too close to the built-in kind `{n}`; use `{n}` or a clearly different name")),
                    None => d.help(format!(
                        "use lowercase letters, digits and hyphens, starting with a letter, at most {} characters",
                        tocsin_core::model::CustomKind::MAX_LEN
                    )),
                });
                false
            }
        }
    }

    /// The entity kind of an event kind known here (built-in or declared), without reporting.
    pub(super) fn known_entity_of(&self, kind: &str) -> Option<EntityKind> {
        match kind.parse::<EventKind>().ok()? {
            EventKind::Custom(c) => self.custom.get(c.as_str()).copied().flatten(),
            builtin => builtin.entity_kind(),
        }
    }

    pub(super) fn entity_kind(&mut self, word: &Spanned<String>) -> Option<EntityKind> {
        match word.node.parse::<EntityKind>() {
            Ok(k) => Some(k),
            Err(_) => {
                let near = did_you_mean(&word.node, EntityKind::ALL.iter().map(|k| k.as_str()));
                self.diags.push(
                    Diagnostic::error(
                        Code::UnknownEntityKind,
                        word.span.clone(),
                        format!("unknown entity kind `{}`", word.node),
                    )
                    .label("not an entity kind")
                    .suggest(near)
                    .help_if_none(format!(
                        "entity kinds: {}",
                        EntityKind::ALL
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
                None
            }
        }
    }

    /// An event kind as written: built-in (either spelling) or declared in this file.
    pub(super) fn event_kind(&mut self, word: &Spanned<String>) -> Option<EventKind> {
        let parsed = word.node.parse::<EventKind>();
        match parsed {
            Ok(EventKind::Custom(c)) if self.custom.contains_key(c.as_str()) => {
                Some(EventKind::Custom(c))
            }
            Ok(EventKind::Custom(_)) | Err(_) => {
                let candidates: Vec<String> = EventKind::ALL
                    .iter()
                    .map(|k| k.as_str().replace('-', "_"))
                    .chain(self.custom.keys().cloned())
                    .collect();
                let near = did_you_mean(&word.node, candidates.iter().map(String::as_str));
                self.diags.push(
                    Diagnostic::error(Code::UnknownEventKind, word.span.clone(), format!("unknown event kind `{}`", word.node))
                        .label("not a built-in or declared event kind")
                        .suggest(near)
                        .help_if_none(format!(
                            "declare a kind of your own with `event {} on job` (or another entity kind)",
                            word.node
                        )),
                );
                None
            }
            Ok(k) => Some(k),
        }
    }
}

pub(super) fn name_error(name: &Spanned<String>) -> Diagnostic {
    Diagnostic::error(
        Code::InvalidName,
        name.span.clone(),
        format!("invalid name `{}`", name.node),
    )
    .label("names use letters, digits, `-` and `_`")
    .help("rename it, for example to `{}`".replace(
        "{}",
        &name.node.replace(
            |c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "-",
        ),
    ))
}
