//! A chained event: the alert firing posts another event into its project, evaluated like any
//! other (alerts may trigger on it). Its closing posts nothing.

use serde_json::{Map, Value, json};

use super::{Channel, Message, Outgoing, Phase, Refusal};
use crate::engine::render;
use crate::model::{Entities, Event, EventKind, ParamSpec, Shape};

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new("event_kind", "kind", Shape::EventKind, true),
    ParamSpec::new("entity_id", "entity", Shape::Text, false),
    ParamSpec::wire_only("value_dict"),
];

pub struct Chained;

impl Channel for Chained {
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    fn check(&self, params: &Map<String, Value>) -> Result<(), String> {
        let kind = params
            .get("event_kind")
            .and_then(Value::as_str)
            .ok_or("needs `event_kind` in params")?;
        kind.parse::<EventKind>()
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn outgoing(&self, m: &Message<'_>) -> Result<Outgoing, Refusal> {
        if m.phase != Phase::Fired {
            return Ok(Outgoing::Nothing);
        }
        let a = m.activation;
        let kind: EventKind = m
            .required("event_kind")?
            .parse()
            .map_err(|e: crate::model::UnknownValue| Refusal(e.to_string()))?;
        let entity = m.text("entity_id").unwrap_or("{{entity}}");
        let value_dict = match m.param("value_dict") {
            Some(Value::Object(values)) => values
                .iter()
                .map(|(k, v)| {
                    let v = v
                        .as_str()
                        .map_or_else(|| v.clone(), |s| Value::from(render(s, a)));
                    (k.clone(), v)
                })
                .collect(),
            _ => json!({"source_alert": a.name, "source_activation": a.id, "summary": a.summary})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        };
        Ok(Outgoing::Event(Box::new(Event {
            kind: Some(kind.clone()),
            timestamp: None,
            entity: Entities {
                kind: kind.entity_kind().unwrap_or(a.entity_kind),
                project: a.project.clone(),
                ids: vec![render(entity, a)],
            },
            value_dict,
            id: None,
        })))
    }

    /// The kind it posts.
    fn preview(&self, m: &Message<'_>) -> Value {
        json!({"event_kind": m.param("event_kind")})
    }
}
