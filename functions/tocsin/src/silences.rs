//! `tocsin silence add|list|expire`: silences on a running server, through its API.

use serde_json::{Value, json};
use tocsin_core::model::{
    EventKind, Schedule, Severity, SilenceMatchers, SilenceSpec, Timestamp, parse_period,
};

use crate::client::{answer, get_json, http};

/// What `tocsin silence add` was asked for: its flags.
#[derive(Debug, Default, clap::Args)]
pub struct AddSilence {
    #[arg(long)]
    pub project: String,
    /// Its id (a second add with the same id replaces it); default: a new one.
    #[arg(long)]
    pub id: Option<String>,
    /// Alert name, exact or a glob.
    #[arg(long)]
    pub alert: Option<String>,
    /// Entity id glob.
    #[arg(long)]
    pub entity: Option<String>,
    /// Severity to match; repeatable.
    #[arg(long)]
    pub severity: Vec<String>,
    /// Event kind to match; repeatable.
    #[arg(long)]
    pub kind: Vec<String>,
    /// How long from the start, e.g. 1h or 4h.
    #[arg(long = "for", value_name = "SPAN")]
    pub duration: Option<String>,
    /// Until this time (RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// From this time (default now).
    #[arg(long)]
    pub from: Option<String>,
    /// A weekly window: `DAYS FROM-TO ZONE`, e.g. "sat 02:00-04:00 Europe/Berlin".
    #[arg(long)]
    pub schedule: Option<String>,
    /// Why (required): what the suppressed notifications say.
    #[arg(long)]
    pub comment: String,
    /// Who, when the server runs without auth.
    #[arg(long)]
    pub by: Option<String>,
}

fn time(flag: &str, text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text)
        .ok_or_else(|| format!("{flag} `{text}`: expected a time such as 2026-12-05T02:00:00Z"))
}

impl AddSilence {
    /// The body to send, checked here first so that a typo fails before any request.
    pub fn spec(&self, now: Timestamp) -> Result<SilenceSpec, String> {
        let starts_at = self
            .from
            .as_deref()
            .map(|t| time("--from", t))
            .transpose()?;
        // A span counts from the start the server records: give it, so both clocks agree.
        let starts_at = starts_at.or(self.duration.is_some().then_some(now));
        let start = starts_at.unwrap_or(now);
        let ends_at = match (&self.duration, &self.until) {
            (Some(_), Some(_)) => return Err("give one of --for and --until".into()),
            (Some(d), None) => {
                Some(start.plus(parse_period(d).map_err(|e| format!("--for: {e}"))?))
            }
            (None, Some(t)) => Some(time("--until", t)?),
            (None, None) => None,
        };
        let schedule = self
            .schedule
            .as_deref()
            .map(str::parse::<Schedule>)
            .transpose()?;
        let severity = self
            .severity
            .iter()
            .map(|s| {
                s.parse::<Severity>()
                    .map_err(|e| format!("--severity: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let event_kind = self
            .kind
            .iter()
            .map(|k| k.parse::<EventKind>().map_err(|e| format!("--kind: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(SilenceSpec {
            matchers: SilenceMatchers {
                alert: self.alert.clone(),
                entity: self.entity.clone(),
                severity,
                event_kind,
            },
            starts_at,
            ends_at,
            schedule,
            comment: self.comment.clone(),
            created_by: self.by.clone(),
            // Made by hand: `apply --prune` leaves it alone.
            applied_from: None,
        })
    }
}

fn base(server: &str, project: &str) -> String {
    format!(
        "{}/api/v1/projects/{project}/silences",
        server.trim_end_matches('/')
    )
}

/// Makes the silence; returns the server's answer.
pub async fn add(server: &str, add: &AddSilence) -> Result<Value, String> {
    let spec = add.spec(Timestamp::now())?;
    let base = base(server, &add.project);
    let client = http();
    match &add.id {
        Some(id) => {
            let url = format!("{base}/{id}");
            answer(&url, client.put(&url).json(&spec).send().await).await
        }
        None => answer(&base, client.post(&base).json(&spec).send().await).await,
    }
}

/// The project's silences in `state` (current, active, pending, expired, all).
pub async fn list(server: &str, project: &str, state: &str) -> Result<Vec<Value>, String> {
    let url = format!("{}?state={state}", base(server, project));
    let body = get_json(&http(), &url).await?;
    Ok(body["silences"].as_array().cloned().unwrap_or_default())
}

/// Ends the silence `id` now.
pub async fn expire(server: &str, project: &str, id: &str) -> Result<Value, String> {
    let url = format!("{}/{id}/expire", base(server, project));
    answer(&url, http().post(&url).json(&json!({})).send().await).await
}

/// One line per silence: id, state, until or next start, what it matches, who and why.
pub fn table(silences: &[Value]) -> String {
    let mut out = String::from("ID\tSTATE\tUNTIL/NEXT\tMATCHES\tWHEN\tBY\tCOMMENT\n");
    for s in silences {
        let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
        let m = &s["matchers"];
        let mut matches = Vec::new();
        for key in ["alert", "entity"] {
            if let Some(v) = m[key].as_str() {
                matches.push(format!("{key}={v}"));
            }
        }
        for key in ["severity", "event_kind"] {
            if let Some(vs) = m[key].as_array() {
                let vs: Vec<String> = vs.iter().map(text).collect();
                matches.push(format!("{key}={}", vs.join(",")));
            }
        }
        let when = match serde_json::from_value::<Schedule>(s["schedule"].clone()) {
            Ok(schedule) => schedule.to_string(),
            Err(_) => format!("{} to {}", text(&s["starts_at"]), text(&s["ends_at"])),
        };
        let turn = s["until"]
            .as_str()
            .or(s["next_start"].as_str())
            .unwrap_or("-");
        let matches = if matches.is_empty() {
            "everything".to_owned()
        } else {
            matches.join(" ")
        };
        out.push_str(&format!(
            "{}\t{}\t{turn}\t{matches}\t{when}\t{}\t{}\n",
            text(&s["id"]),
            text(&s["state"]),
            text(&s["created_by"]),
            text(&s["comment"]),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_a_checked_spec() {
        let now = Timestamp::parse("2026-12-05T10:00:00Z").expect("now");
        let add = AddSilence {
            project: "p".into(),
            alert: Some("drift-*".into()),
            severity: vec!["high".into()],
            kind: vec!["data_drift_detected".into()],
            duration: Some("4h".into()),
            comment: "retraining".into(),
            ..Default::default()
        };
        let spec = add.spec(now).expect("spec");
        assert_eq!(spec.ends_at, Timestamp::parse("2026-12-05T14:00:00Z"));
        assert_eq!(spec.matchers.event_kind, [EventKind::DataDriftDetected]);
        let weekly = AddSilence {
            schedule: Some("sat 02:00-04:00 Europe/Berlin".into()),
            duration: None,
            ..add
        };
        assert_eq!(
            weekly
                .spec(now)
                .expect("weekly")
                .schedule
                .expect("schedule")
                .to_string(),
            "sat 02:00-04:00 Europe/Berlin"
        );
        let bad = AddSilence {
            severity: vec!["urgent".into()],
            ..Default::default()
        };
        assert!(bad.spec(now).unwrap_err().contains("--severity"));
        let both = AddSilence {
            duration: Some("1h".into()),
            until: Some("2026-12-06T00:00:00Z".into()),
            ..Default::default()
        };
        assert!(both.spec(now).is_err());
    }
}
