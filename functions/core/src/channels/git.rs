//! A comment on a GitHub or GitLab issue or merge request, as MLRun's git notification posts it
//! (`mlrun/utils/notifications/notification/git.py`): `repo`, `issue` or `merge_request`,
//! `token` (also `GIT_TOKEN` or `GITHUB_TOKEN`), `server` (`api.github.com`, or `gitlab.com`),
//! and `gitlab` (or a server whose name says gitlab).
//!
//! - GitHub: `POST https://{server}/repos/{repo}/issues/{issue}/comments` with
//!   `Authorization: token ...` and `{"body": ...}` (a pull request is an issue there).
//! - GitLab: `POST https://{server}/api/v4/projects/{repo, / as %2F}/issues/{issue}/notes` (or
//!   `merge_requests/{id}/notes`) with `PRIVATE-TOKEN`.
//!
//! The comment is Markdown: what fired, why, the facts, the event's data and the link to the
//! alert; a resolved notice comments too.

use serde_json::{Map, Value, json};

use super::text::markdown;
use super::{Channel, Message, Outgoing, Phase, Refusal};
use crate::model::{ParamSpec, Shape};

const PARAMS: &[ParamSpec] = &[
    ParamSpec::new("repo", "repo", Shape::Text, true),
    ParamSpec::new("issue", "issue", Shape::NumberOrText, false),
    ParamSpec::new("merge_request", "merge_request", Shape::NumberOrText, false),
    // Required, under any of its names (see `check`).
    ParamSpec::new("token", "token", Shape::Secret, false),
    ParamSpec::new("server", "server", Shape::Text, false),
    ParamSpec::new("gitlab", "gitlab", Shape::Bool, false),
];

/// The names MLRun also takes the token under.
const TOKEN_KEYS: [&str; 3] = ["token", "GIT_TOKEN", "GITHUB_TOKEN"];

pub struct Git;

/// A number or a string, as a path segment.
fn number(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

impl Channel for Git {
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }

    /// MLRun's own validation: a repo, a token, and an issue or a merge request.
    fn check(&self, params: &Map<String, Value>) -> Result<(), String> {
        if !TOKEN_KEYS
            .iter()
            .any(|k| params.get(*k).is_some_and(|v| v != "" && !v.is_null()))
        {
            return Err("git notification needs `token` in secret_params or params".into());
        }
        if number(params.get("issue")).is_none() && number(params.get("merge_request")).is_none() {
            return Err("git: at least one of `issue` or `merge_request` is required".into());
        }
        if let Some(server) = params.get("server").and_then(Value::as_str)
            && server.starts_with("http://")
        {
            return Err("git: the server is reached over https; give its host".into());
        }
        Ok(())
    }

    fn outgoing(&self, m: &Message<'_>) -> Result<Outgoing, Refusal> {
        if m.phase == Phase::Acknowledged {
            return Ok(Outgoing::Nothing);
        }
        let repo = m.required("repo")?;
        let token = TOKEN_KEYS
            .iter()
            .find_map(|k| m.text(k))
            .ok_or_else(|| Refusal("no token configured".into()))?;
        let server = m.text("server");
        let gitlab = matches!(m.param("gitlab"), Some(Value::Bool(true)))
            || m.param("gitlab").and_then(Value::as_str) == Some("true")
            || server.is_some_and(|s| s.contains("gitlab"));
        let host = |default: &str| {
            let s = server.unwrap_or(default);
            s.strip_prefix("https://")
                .unwrap_or(s)
                .trim_end_matches('/')
                .to_owned()
        };
        let issue = number(m.param("issue"));
        let merge_request = number(m.param("merge_request"));
        let body = json!({"body": comment(m)});
        if gitlab {
            let project = repo.replace('/', "%2F");
            let path = match (&merge_request, &issue) {
                (Some(mr), _) => format!("merge_requests/{mr}"),
                (None, Some(i)) => format!("issues/{i}"),
                (None, None) => return Err(Refusal("no issue or merge request configured".into())),
            };
            return Ok(Outgoing::Http {
                method: "POST".into(),
                url: format!(
                    "https://{}/api/v4/projects/{project}/{path}/notes",
                    host("gitlab.com")
                ),
                headers: vec![("PRIVATE-TOKEN".into(), token.to_owned())],
                body,
            });
        }
        let issue = issue
            .or(merge_request)
            .ok_or_else(|| Refusal("no issue or pull request configured".into()))?;
        Ok(Outgoing::Http {
            method: "POST".into(),
            url: format!(
                "https://{}/repos/{repo}/issues/{issue}/comments",
                host("api.github.com")
            ),
            headers: vec![
                ("Accept".into(), "application/vnd.github.v3+json".into()),
                ("Authorization".into(), format!("token {token}")),
            ],
            body,
        })
    }

    fn mlrun(&self) -> bool {
        true
    }
}

/// The comment: a heading that says what happened, then the facts.
fn comment(m: &Message<'_>) -> String {
    let a = m.activation;
    let heading = match m.phase {
        Phase::Resolved => format!(":white_check_mark: Resolved: {}", m.words()),
        _ => format!(":rotating_light: [{}] {}", a.severity, m.words()),
    };
    markdown(m, &heading)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channels::tests::{activation, message, note};

    fn with(params: Value, secret: Value) -> (crate::model::Notification, Map<String, Value>) {
        let mut n = note("git", Some("drift!"));
        n.params = params.as_object().cloned();
        (n, secret.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn github_and_gitlab_as_mlrun_posts_them() {
        let a = activation();
        let (n, secret) = with(
            json!({"repo": "org/models", "issue": 12}),
            json!({"token": "t0k"}),
        );
        let mut m = message(&n, &a, Phase::Fired);
        m.secret = Some(&secret);
        let Ok(Outgoing::Http {
            url, headers, body, ..
        }) = Git.outgoing(&m)
        else {
            panic!("an HTTP request");
        };
        assert_eq!(
            url,
            "https://api.github.com/repos/org/models/issues/12/comments"
        );
        assert!(headers.contains(&("Authorization".into(), "token t0k".into())));
        let text = body["body"].as_str().expect("a comment");
        assert!(
            text.starts_with("### :rotating_light: [high] drift!"),
            "{text}"
        );
        assert!(
            text.contains("- **Entity:** model-endpoint-result ep1.app.res"),
            "{text}"
        );

        let (n, secret) = with(
            json!({"repo": "org/models", "merge_request": "7", "server": "gitlab.example.com"}),
            json!({"GIT_TOKEN": "t0k"}),
        );
        let mut m = message(&n, &a, Phase::Resolved);
        m.secret = Some(&secret);
        let Ok(Outgoing::Http { url, headers, .. }) = Git.outgoing(&m) else {
            panic!("an HTTP request");
        };
        assert_eq!(
            url,
            "https://gitlab.example.com/api/v4/projects/org%2Fmodels/merge_requests/7/notes"
        );
        assert_eq!(headers, [("PRIVATE-TOKEN".to_owned(), "t0k".to_owned())]);
    }

    #[test]
    fn mlruns_validation_is_the_checks() {
        let check = |p: Value| Git.check(p.as_object().expect("params"));
        assert!(check(json!({"repo": "o/r", "issue": 1, "token": "t"})).is_ok());
        assert!(check(json!({"repo": "o/r", "issue": 1, "GITHUB_TOKEN": "t"})).is_ok());
        assert!(
            check(json!({"repo": "o/r", "issue": 1})).is_err(),
            "a token"
        );
        assert!(
            check(json!({"repo": "o/r", "token": "t"})).is_err(),
            "an issue or an MR"
        );
        let plain = json!({"repo": "o/r", "issue": 1, "token": "t", "server": "http://x"});
        assert!(check(plain).is_err());
    }
}
