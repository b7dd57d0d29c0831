//! The silences of the API: made, replaced, read, listed and expired. A silence's id is the
//! caller's (`PUT`, rule files) or a random one (`POST`, chosen by the host); who made it is the
//! signed-in principal, or what the body says when the server runs without auth.

use super::Service;
use crate::auth::Principal;
use crate::error::{Error, Result};
use crate::model::{
    AlertName, Silence, SilencePhase, SilenceSpec, SilenceState, SilenceView, Timestamp,
};

/// Which silences a listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SilenceFilter {
    /// Active and pending ones.
    #[default]
    Current,
    Active,
    Pending,
    Expired,
    All,
}

impl std::str::FromStr for SilenceFilter {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "current" => SilenceFilter::Current,
            "active" => SilenceFilter::Active,
            "pending" => SilenceFilter::Pending,
            "expired" => SilenceFilter::Expired,
            "all" => SilenceFilter::All,
            other => {
                return Err(Error::bad(format!(
                    "Invalid silence state `{other}`: use current, active, pending, expired or all"
                )));
            }
        })
    }
}

impl SilenceFilter {
    fn shows(self, view: &SilenceView) -> bool {
        match self {
            SilenceFilter::All => true,
            SilenceFilter::Current => view.state != SilencePhase::Expired,
            SilenceFilter::Active => view.state == SilencePhase::Active,
            SilenceFilter::Pending => view.state == SilencePhase::Pending,
            SilenceFilter::Expired => view.state == SilencePhase::Expired,
        }
    }
}

/// Who a silence is recorded as made by: the signed-in principal, else the name the body gives
/// (the server runs without auth), else `anonymous`.
fn author(principal: &Principal, spec: &SilenceSpec) -> String {
    if principal.authenticated {
        return principal.name.clone();
    }
    spec.created_by
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("anonymous")
        .to_owned()
}

fn not_found(project: &str, id: &str) -> Error {
    Error::NotFound(format!("Silence `{id}` not found in project `{project}`"))
}

impl Service {
    /// `PUT /projects/{project}/silences/{id}` (and `POST`, with a new id): makes or replaces
    /// the silence `id`. Returns it as it stands at `now`, and whether it is new.
    pub async fn store_silence(
        &self,
        project: &str,
        id: &str,
        spec: SilenceSpec,
        principal: &Principal,
        now: Timestamp,
    ) -> Result<(SilenceView, bool)> {
        if !AlertName::is_valid(id) {
            return Err(Error::bad(format!(
                "Invalid silence id `{id}`: use letters, digits, `-` and `_` only (at most {})",
                crate::model::MAX_NAME
            )));
        }
        let store = self.store();
        let existing = store.silence(project, id).await?;
        let by = author(principal, &spec);
        let silence = spec
            .into_silence(
                id.to_owned(),
                project.to_owned(),
                by,
                now,
                existing.as_ref(),
            )
            .map_err(|e| Error::bad(e.0))?;
        let view = silence.view(now);
        store
            .put_silence(silence, now, self.settings.silence_retention())
            .await?;
        Ok((view, existing.is_none()))
    }

    /// `GET /projects/{project}/silences/{id}`.
    pub async fn get_silence(
        &self,
        project: &str,
        id: &str,
        now: Timestamp,
    ) -> Result<SilenceView> {
        self.stored_silence(project, id, now)
            .await
            .map(|s| s.view(now))
    }

    async fn stored_silence(&self, project: &str, id: &str, now: Timestamp) -> Result<Silence> {
        let retention = self.settings.silence_retention();
        self.store()
            .silence(project, id)
            .await?
            .filter(|s| s.is_kept(now, retention))
            .ok_or_else(|| not_found(project, id))
    }

    /// `GET /projects/{project}/silences?state=`: `*` lists every project's.
    pub async fn list_silences(
        &self,
        project: &str,
        filter: SilenceFilter,
        now: Timestamp,
    ) -> Result<Vec<SilenceView>> {
        let retention = self.settings.silence_retention();
        let project = (project != "*").then_some(project);
        Ok(self
            .store()
            .silences(project)
            .await?
            .into_iter()
            .filter(|s| s.is_kept(now, retention))
            .map(|s| s.view(now))
            .filter(|v| filter.shows(v))
            .collect())
    }

    /// `POST /projects/{project}/silences/{id}/expire`: ends it now (an expired one stays as it
    /// was). It stays listed as expired for the retention.
    pub async fn expire_silence(
        &self,
        project: &str,
        id: &str,
        principal: &Principal,
        now: Timestamp,
    ) -> Result<SilenceView> {
        let silence = self
            .stored_silence(project, id, now)
            .await?
            .expired(&principal.name, now);
        let view = silence.view(now);
        self.store()
            .put_silence(silence, now, self.settings.silence_retention())
            .await?;
        Ok(view)
    }

    /// The silences of `project` (all with `*`) that are in effect at `now`: what marks
    /// alerts in listings (see [`Silence::marks`]).
    pub async fn silences_in_effect(&self, project: &str, now: Timestamp) -> Result<Vec<Silence>> {
        let project = (project != "*").then_some(project);
        Ok(self
            .store()
            .silences(project)
            .await?
            .into_iter()
            .filter(|s| matches!(s.state_at(now), SilenceState::Active { .. }))
            .collect())
    }
}
