//! The engine: matching events to alerts, sliding windows, and the alert state machine.
//!
//! It never reads the clock and never does I/O: every function takes the time and the values it
//! decides on. Stores compose these pieces inside whatever makes them atomic (a lock and one
//! batch write in the embedded store, conditional writes in DynamoDB), and `tocsin test` runs
//! them on a virtual clock.

mod matcher;
mod runtime;
mod window;

pub use matcher::Matcher;
pub use runtime::{Closed, Runtime};
pub use window::Window;

use crate::model::{AlertState, Timestamp};

/// Renders an alert summary's placeholders (`{{project}}`, `{{name}}`, `{{entity}}`, with or
/// without spaces inside the braces) as plain text; unknown placeholders stay as written.
pub fn render_summary(template: &str, project: &str, name: &str, entity: &str) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        match after[..end].trim() {
            "project" => out.push_str(project),
            "name" => out.push_str(name),
            "entity" => out.push_str(entity),
            _ => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// Whether an alert is active as seen at `now` (see [`Runtime::state_at`]).
pub fn is_active(runtime: &Runtime, now: Timestamp) -> bool {
    runtime.state_at(now) == AlertState::Active
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_placeholders_are_replaced_as_plain_text() {
        assert_eq!(
            render_summary(
                "Alert {{name}}: Model {{project}}/{{entity}} is drifting.",
                "my-project123",
                "alert",
                "ddd"
            ),
            "Alert alert: Model my-project123/ddd is drifting."
        );
        assert_eq!(
            render_summary("{{ entity }} {{other}} {{", "p", "n", "e"),
            "e {{other}} {{"
        );
        assert_eq!(
            render_summary("{{entity}}", "p", "n", "{{name}}"),
            "{{name}}",
            "no re-expansion"
        );
    }
}
