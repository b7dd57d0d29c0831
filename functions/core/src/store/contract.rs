//! The store contract: behaviour every store must have, run through the [`Service`] so that it
//! also checks the engine wiring. MLRun's own acceptance scenarios are ported here. A store's
//! crate runs the suite with [`store_contract_tests!`](crate::store_contract_tests).

use std::sync::Arc;

use serde_json::json;

use crate::SilenceFilter;
use crate::auth::{AuditEntry, Principal};
use crate::error::Error;
use crate::model::{
    AlertConfig, AlertState, DeliveryStatus, Event, Severity, SilenceSpec, Timestamp,
};
use crate::service::Service;
use crate::settings::AlertsSettings;
use crate::store::{ActivationQuery, EntityFilter, NameFilter, Store};

/// Generates one `#[tokio::test]` per contract case for the store that `$factory` makes. The
/// factory returns `(Arc<dyn Store>, guard)`; the guard lives as long as the test (a temp dir).
#[macro_export]
macro_rules! store_contract_tests {
    ($factory:expr) => {
        $crate::store_contract_tests!(@each $factory;
            mlrun_manual_alert_scenario, mlrun_sliding_window_scenario, exact_and_wildcard_alerts_both_fire,
            per_entity_windows_count_each_entity_apart, auto_cooldown_ignores_events_until_it_ends,
            updates_reset_only_when_behaviour_changes, activations_record_events_and_resets,
            idempotent_events_count_once, operator_limits_are_enforced, secrets_are_masked_and_kept,
            activation_filters_and_pages, unknown_alerts_and_deletes, listing_is_ordered_and_paged,
            filters_and_entity_globs_decide_what_counts, calculated_events_feed_alerts_once_sustained,
            acknowledged_alerts_notify_no_one_until_reset, the_audit_list_keeps_who_did_what,
            silences_hold_back_notifications_while_in_effect, silences_are_listed_expired_and_dropped,
            closing_an_activation_plans_its_resolved_notifications,
            a_sustained_condition_resolves_when_it_stops_holding,
            absences_fire_once_at_their_deadline_and_close_when_events_return,
            an_absence_on_one_entity_is_awaited_from_creation,
            recorded_events_read_back_in_order_and_in_pages,
            a_batch_counts_like_its_events_one_by_one,
            calculated_events_of_a_batch_come_after_its_events,
            chains_of_calculated_events_run_to_their_end_in_a_batch,
            keys_repeated_in_and_across_batches_count_once,
            an_acknowledgement_is_told_to_the_channels_that_take_it,
            a_notification_cooldown_runs_from_a_sent_message);
    };
    (@each $factory:expr; $($case:ident),+) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $factory;
                $crate::store::contract::$case(store).await;
            }
        )+

        /// A case added to the suite but not to the list above would silently never run.
        #[test]
        fn the_contract_suite_lists_every_case() {
            $crate::store::contract::check_listed(&[$(stringify!($case)),+]);
        }
    };
}

/// Checks that `listed` names every case of this suite: each `pub async fn` of this file.
pub fn check_listed(listed: &[&str]) {
    let cases: Vec<&str> = include_str!("contract.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("pub async fn "))
        .filter_map(|rest| rest.split('(').next())
        .collect();
    let mut missing: Vec<&str> = cases
        .iter()
        .copied()
        .filter(|c| !listed.contains(c))
        .collect();
    missing.sort_unstable();
    assert!(
        missing.is_empty(),
        "contract cases not listed in store_contract_tests!: {missing:?}"
    );
    assert_eq!(
        listed.len(),
        cases.len(),
        "store_contract_tests! lists {} cases; the suite has {}",
        listed.len(),
        cases.len()
    );
}

const P: &str = "proj";
const T0: i64 = 1_800_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_secs(T0 + secs)
}

fn service(store: Arc<dyn Store>) -> Service {
    Service::new(
        store,
        AlertsSettings::default(),
        Arc::new(crate::dispatch::Nowhere),
    )
}

/// A job-failure alert on `entity` with `count` within `period` and a reset policy.
pub fn failure_alert(
    name: &str,
    entity: &str,
    count: i64,
    period: Option<&str>,
    reset: &str,
) -> AlertConfig {
    serde_json::from_value(json!({
        "project": P, "name": name, "summary": "Job {{project}}/{{entity}} failed ({{name}})",
        "severity": "medium", "reset_policy": reset,
        "criteria": {"count": count, "period": period},
        "trigger": {"events": ["failed"]},
        "entities": {"kind": "job", "project": P, "ids": [entity]},
        "notifications": [{"notification": {"kind": "webhook", "name": "hook",
            "secret_params": {"url": "http://127.0.0.1:9/hook"}}}]
    }))
    .expect("valid contract alert")
}

fn failure(entity: &str) -> Event {
    serde_json::from_value(
        json!({"kind": "failed", "entity": {"kind": "job", "project": P, "ids": [entity]},
        "value_dict": {"error": "boom"}}),
    )
    .expect("valid contract event")
}

async fn send(svc: &Service, entity: &str, t: Timestamp) -> crate::engine::EventOutcome {
    send_keyed(svc, entity, t, None).await
}

async fn send_keyed(
    svc: &Service,
    entity: &str,
    t: Timestamp,
    key: Option<&str>,
) -> crate::engine::EventOutcome {
    let ev = svc
        .accept_event(P, "failed", failure(entity), key.map(str::to_owned), t)
        .expect("event accepted");
    svc.ingest(&ev).await.expect("event ingested")
}

async fn state(svc: &Service, name: &str, t: Timestamp) -> (AlertState, u64) {
    let a = svc.get_alert(P, name, t).await.expect("alert exists");
    (a.state, a.count)
}

async fn store(svc: &Service, config: AlertConfig, t: Timestamp) -> AlertConfig {
    let name = config.name.clone();
    svc.store_alert(P, &name, config, false, t)
        .await
        .expect("alert stored")
}

/// MLRun: a manual alert, 3 within 1h: 3 events make it active (count 1); 3 more change
/// nothing; after a reset one event leaves it inactive; stored again as auto, 3 events fire
/// it and it resets itself (count 2).
pub async fn mlrun_manual_alert_scenario(s: Arc<dyn Store>) {
    let svc = service(s);
    store(
        &svc,
        failure_alert("a", "job1", 3, Some("1h"), "manual"),
        at(0),
    )
    .await;
    for i in 1..=3 {
        send(&svc, "job1", at(i)).await;
    }
    assert_eq!(state(&svc, "a", at(4)).await, (AlertState::Active, 1));
    for i in 5..=7 {
        assert!(
            send(&svc, "job1", at(i)).await.fired.is_empty(),
            "an active manual alert ignores events"
        );
    }
    assert_eq!(state(&svc, "a", at(8)).await, (AlertState::Active, 1));
    svc.reset_alert(P, "a", "ops", at(9)).await.expect("reset");
    send(&svc, "job1", at(10)).await;
    assert_eq!(state(&svc, "a", at(11)).await, (AlertState::Inactive, 1));
    store(
        &svc,
        failure_alert("a", "job1", 3, Some("1h"), "auto"),
        at(12),
    )
    .await;
    for i in 13..=15 {
        send(&svc, "job1", at(i)).await;
    }
    assert_eq!(state(&svc, "a", at(16)).await, (AlertState::Inactive, 2));
}

/// MLRun: a 2-minute window of 2: failures 125 s apart do not fire; a third soon after does.
pub async fn mlrun_sliding_window_scenario(s: Arc<dyn Store>) {
    let svc = service(s);
    store(
        &svc,
        failure_alert("w", "job1", 2, Some("2m"), "auto"),
        at(0),
    )
    .await;
    assert!(send(&svc, "job1", at(1)).await.fired.is_empty());
    assert!(
        send(&svc, "job1", at(126)).await.fired.is_empty(),
        "125 s apart"
    );
    let fired = send(&svc, "job1", at(130)).await.fired;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].activation.number_of_events, 2);
    assert_eq!(state(&svc, "w", at(131)).await, (AlertState::Inactive, 1));
}

/// An event matches the alerts on its entity and the `*` alerts of its project and kind, only.
pub async fn exact_and_wildcard_alerts_both_fire(s: Arc<dyn Store>) {
    let svc = service(s);
    store(&svc, failure_alert("exact", "job1", 1, None, "auto"), at(0)).await;
    store(&svc, failure_alert("any", "*", 1, None, "auto"), at(0)).await;
    store(&svc, failure_alert("other", "job2", 1, None, "auto"), at(0)).await;
    let fired = send(&svc, "job1", at(1)).await.fired;
    let mut names: Vec<_> = fired.iter().map(|f| f.activation.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["any", "exact"]);
    let any = fired
        .iter()
        .find(|f| f.activation.name == "any")
        .expect("wildcard fired");
    assert_eq!(
        any.activation.entity_id, "job1",
        "the activation names the event's entity"
    );
}

/// A `*` alert shares one window across entities (MLRun), unless `criteria.per_entity`.
pub async fn per_entity_windows_count_each_entity_apart(s: Arc<dyn Store>) {
    let svc = service(s);
    store(
        &svc,
        failure_alert("shared", "*", 2, Some("1h"), "auto"),
        at(0),
    )
    .await;
    let mut per = failure_alert("apart", "*", 2, Some("1h"), "auto");
    per.criteria.as_mut().expect("criteria").per_entity = true;
    store(&svc, per, at(0)).await;
    let fired = send(&svc, "job1", at(1)).await.fired;
    assert!(fired.is_empty());
    let fired = send(&svc, "job2", at(2)).await.fired;
    assert_eq!(
        fired
            .iter()
            .map(|f| f.activation.name.as_str())
            .collect::<Vec<_>>(),
        ["shared"]
    );
    send(&svc, "job1", at(3)).await; // shared: 1 again; apart: job1 has 2
    assert_eq!(state(&svc, "apart", at(4)).await, (AlertState::Inactive, 1));
    assert_eq!(
        state(&svc, "shared", at(4)).await,
        (AlertState::Inactive, 1)
    );
}

/// An auto alert with a cooldown stays active and ignores events until the cooldown ends.
pub async fn auto_cooldown_ignores_events_until_it_ends(s: Arc<dyn Store>) {
    let svc = service(s);
    let mut a = failure_alert("cool", "job1", 1, None, "auto");
    a.cooldown_period = Some("1m".into());
    store(&svc, a, at(0)).await;
    assert_eq!(send(&svc, "job1", at(1)).await.fired.len(), 1);
    assert_eq!(state(&svc, "cool", at(2)).await, (AlertState::Active, 1));
    assert!(
        send(&svc, "job1", at(30)).await.fired.is_empty(),
        "in cooldown"
    );
    assert_eq!(
        state(&svc, "cool", at(61)).await,
        (AlertState::Inactive, 1),
        "cooldown over"
    );
    assert_eq!(send(&svc, "job1", at(62)).await.fired.len(), 1);
    let acts = svc
        .activations(&page(ActivationQuery::default()))
        .await
        .expect("list");
    assert_eq!(
        acts[1].reset_time,
        Some(at(61)),
        "the first activation closed when its cooldown ended"
    );
}

/// Changing summary, severity or notifications keeps the state; changing criteria, or
/// `force_reset`, or an active manual alert made auto, resets it.
pub async fn updates_reset_only_when_behaviour_changes(s: Arc<dyn Store>) {
    let svc = service(s);
    let base = failure_alert("u", "job1", 1, None, "manual");
    let first = store(&svc, base.clone(), at(0)).await;
    send(&svc, "job1", at(1)).await;
    let mut cosmetic = base.clone();
    cosmetic.summary = Some("new words".into());
    cosmetic.severity = Severity::High;
    let after = store(&svc, cosmetic.clone(), at(2)).await;
    assert_eq!((after.state, after.count), (AlertState::Active, 1));
    assert_eq!(after.id, first.id, "an update keeps the id");
    assert_eq!(after.created, first.created, "an update keeps created");
    assert_eq!(after.updated, Some(at(2)));
    let forced = svc
        .store_alert(P, "u", cosmetic.clone(), true, at(3))
        .await
        .expect("stored");
    assert_eq!((forced.state, forced.count), (AlertState::Inactive, 1));
    send(&svc, "job1", at(4)).await;
    let mut auto = cosmetic.clone();
    auto.reset_policy = crate::model::ResetPolicy::Auto;
    assert_eq!(
        store(&svc, auto, at(5)).await.state,
        AlertState::Inactive,
        "active manual made auto resets"
    );
    let mut two = base.clone();
    two.criteria = Some(crate::model::Criteria {
        count: 2,
        period: None,
        per_entity: false,
        sustain: None,
        ..Default::default()
    });
    store(&svc, two.clone(), at(6)).await;
    send(&svc, "job1", at(7)).await;
    store(&svc, cosmetic, at(8)).await; // criteria back to 1: the window of 1 event is cleared
    let (st, count) = state(&svc, "u", at(9)).await;
    assert_eq!((st, count), (AlertState::Inactive, 2));
}

/// Activations record the events counted, the rendered summary, and when they closed.
pub async fn activations_record_events_and_resets(s: Arc<dyn Store>) {
    let svc = service(s);
    store(&svc, failure_alert("m", "job1", 2, None, "manual"), at(0)).await;
    store(&svc, failure_alert("auto", "job1", 1, None, "auto"), at(0)).await;
    send(&svc, "job1", at(1)).await;
    send(&svc, "job1", at(2)).await;
    svc.reset_alert(P, "m", "ops", at(10)).await.expect("reset");
    svc.reset_alert(P, "m", "ops", at(20))
        .await
        .expect("resetting an inactive alert succeeds");
    let q = ActivationQuery {
        name: Some(NameFilter::Exact("m".into())),
        ..page(ActivationQuery::default())
    };
    let acts = svc.activations(&q).await.expect("list");
    assert_eq!(acts.len(), 1);
    let a = &acts[0];
    assert_eq!(
        (a.number_of_events, a.activation_time, a.reset_time),
        (2, at(2), Some(at(10)))
    );
    assert_eq!(a.summary.as_deref(), Some("Job proj/job1 failed (m)"));
    assert_eq!(a.value_dict.get("error"), Some(&json!("boom")));
    let got = svc.activation(P, a.id).await.expect("by id");
    assert_eq!(&got, a);
    let autos = svc
        .activations(&ActivationQuery {
            name: Some(NameFilter::Exact("auto".into())),
            ..page(ActivationQuery::default())
        })
        .await
        .expect("list");
    assert_eq!(autos.len(), 2);
    assert!(
        autos
            .iter()
            .all(|a| a.reset_time == Some(a.activation_time)),
        "auto resets at once"
    );
    assert!(autos[0].id > autos[1].id, "newest first");
}

/// A retried event (same idempotency key) is counted once.
pub async fn idempotent_events_count_once(s: Arc<dyn Store>) {
    let svc = service(s);
    store(&svc, failure_alert("i", "job1", 2, None, "auto"), at(0)).await;
    assert_eq!(send_keyed(&svc, "job1", at(1), Some("k1")).await.counted, 1);
    let again = send_keyed(&svc, "job1", at(2), Some("k1")).await;
    assert!(again.duplicate && again.counted == 0 && again.fired.is_empty());
    assert_eq!(state(&svc, "i", at(3)).await.1, 0);
    assert_eq!(
        send_keyed(&svc, "job1", at(4), Some("k2"))
            .await
            .fired
            .len(),
        1
    );
}

/// `max_allowed` (412, across projects) and `max_criteria_count` (412).
pub async fn operator_limits_are_enforced(s: Arc<dyn Store>) {
    let settings = AlertsSettings {
        max_allowed: 2,
        ..AlertsSettings::default()
    };
    let svc = Service::new(s, settings, Arc::new(crate::dispatch::Nowhere));
    store(&svc, failure_alert("one", "job1", 1, None, "auto"), at(0)).await;
    store(&svc, failure_alert("two", "job1", 1, None, "auto"), at(0)).await;
    let err = svc
        .store_alert(
            P,
            "three",
            failure_alert("three", "job1", 1, None, "auto"),
            false,
            at(1),
        )
        .await;
    assert!(
        matches!(err, Err(Error::PreconditionFailed(ref m)) if m.starts_with("Allowed number of alerts exceeded")),
        "{err:?}"
    );
    store(&svc, failure_alert("two", "job2", 1, None, "auto"), at(2)).await; // updates are fine
    let err = svc
        .store_alert(
            P,
            "one",
            failure_alert("one", "job1", 10_000_000, None, "auto"),
            false,
            at(3),
        )
        .await;
    assert!(
        matches!(err, Err(Error::PreconditionFailed(ref m)) if m.starts_with("Maximum criteria count exceeded")),
        "{err:?}"
    );
}

/// Secrets are answered masked; storing the masked form back keeps the stored secret.
pub async fn secrets_are_masked_and_kept(s: Arc<dyn Store>) {
    let svc = service(s.clone());
    let stored = store(&svc, failure_alert("s", "job1", 1, None, "auto"), at(0)).await;
    let text = serde_json::to_string(&stored).expect("json");
    assert!(
        !text.contains("127.0.0.1:9"),
        "no secret in the answer: {text}"
    );
    let masked = svc.get_alert(P, "s", at(1)).await.expect("get");
    store(&svc, masked, at(2)).await;
    let rule = s
        .get_alert(P, "s")
        .await
        .expect("get")
        .expect("exists")
        .rule;
    assert_eq!(
        rule.secrets["hook"]["url"],
        json!("http://127.0.0.1:9/hook")
    );
    let mut foreign = failure_alert("t", "job1", 1, None, "auto");
    foreign.notifications[0].notification.secret_params =
        Some(crate::compiled::secret_reference(P, "t", "hook"));
    assert!(matches!(
        svc.store_alert(P, "t", foreign, false, at(3)).await,
        Err(Error::BadRequest(_))
    ));
}

/// Filters (name exact/substring, entity exact/glob, severity, kinds, time) and pages.
pub async fn activation_filters_and_pages(s: Arc<dyn Store>) {
    let svc = service(s);
    store(&svc, failure_alert("alpha", "*", 1, None, "auto"), at(0)).await;
    let mut beta = failure_alert("beta", "*", 1, None, "auto");
    beta.severity = Severity::High;
    store(&svc, beta, at(0)).await;
    for i in 0..5 {
        send(&svc, &format!("ep{i}"), at(10 + i)).await;
    }
    let all = |q: ActivationQuery| {
        let svc = svc.clone();
        async move { svc.activations(&page(q)).await.expect("list") }
    };
    assert_eq!(all(ActivationQuery::default()).await.len(), 10);
    assert_eq!(
        all(ActivationQuery {
            name: Some(NameFilter::Contains("lph".into())),
            ..Default::default()
        })
        .await
        .len(),
        5
    );
    assert_eq!(
        all(ActivationQuery {
            entity: Some(EntityFilter::Glob("ep[0-1]*".into())),
            ..Default::default()
        })
        .await
        .len(),
        0
    );
    assert_eq!(
        all(ActivationQuery {
            entity: Some(EntityFilter::Glob("ep*".into())),
            ..Default::default()
        })
        .await
        .len(),
        10
    );
    assert_eq!(
        all(ActivationQuery {
            entity: Some(EntityFilter::Exact("ep3".into())),
            ..Default::default()
        })
        .await
        .len(),
        2
    );
    assert_eq!(
        all(ActivationQuery {
            severity: vec![Severity::High],
            ..Default::default()
        })
        .await
        .len(),
        5
    );
    assert_eq!(
        all(ActivationQuery {
            since: Some(at(13)),
            until: Some(at(13)),
            ..Default::default()
        })
        .await
        .len(),
        2
    );
    assert_eq!(
        all(ActivationQuery {
            project: Some("elsewhere".into()),
            ..Default::default()
        })
        .await
        .len(),
        0
    );
    let first = svc
        .activations(&ActivationQuery {
            limit: 3,
            ..Default::default()
        })
        .await
        .expect("page");
    let second = svc
        .activations(&ActivationQuery {
            limit: 3,
            offset: 3,
            ..Default::default()
        })
        .await
        .expect("page");
    assert_eq!(first.len(), 3);
    assert!(
        first.last().map(|a| a.id) > second.first().map(|a| a.id),
        "pages continue newest first"
    );
}

/// Reset and get of unknown alerts are 404; delete succeeds either way.
pub async fn unknown_alerts_and_deletes(s: Arc<dyn Store>) {
    let svc = service(s);
    assert!(matches!(
        svc.get_alert(P, "nope", at(0)).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        svc.reset_alert(P, "nope", "ops", at(0)).await,
        Err(Error::NotFound(_))
    ));
    svc.delete_alert(P, "nope")
        .await
        .expect("deleting nothing succeeds");
    store(&svc, failure_alert("d", "job1", 1, None, "auto"), at(0)).await;
    svc.delete_alert(P, "d").await.expect("delete");
    assert!(matches!(
        svc.get_alert(P, "d", at(1)).await,
        Err(Error::NotFound(_))
    ));
    assert!(
        send(&svc, "job1", at(2)).await.fired.is_empty(),
        "a deleted alert no longer matches"
    );
    let again = store(&svc, failure_alert("d", "job1", 1, None, "auto"), at(3)).await;
    assert_eq!(again.count, 0, "a re-created alert starts afresh");
}

/// Alerts list in (project, name) order, per project or all (`*`), with offset and limit.
pub async fn listing_is_ordered_and_paged(s: Arc<dyn Store>) {
    let svc = service(s);
    for name in ["c", "a", "b"] {
        store(&svc, failure_alert(name, "job1", 1, None, "auto"), at(0)).await;
    }
    let other: AlertConfig = serde_json::from_value({
        let mut v =
            serde_json::to_value(failure_alert("z", "job1", 1, None, "auto")).expect("json");
        v["project"] = json!("another");
        v["entities"]["project"] = json!("another");
        v
    })
    .expect("config");
    svc.store_alert("another", "z", other, false, at(0))
        .await
        .expect("stored");
    let names = |v: Vec<crate::store::AlertRecord>| {
        v.iter().map(|a| a.view(at(1)).name).collect::<Vec<_>>()
    };
    assert_eq!(
        names(svc.list_alerts(P, 0, 100).await.expect("list")),
        ["a", "b", "c"]
    );
    assert_eq!(names(svc.list_alerts(P, 1, 1).await.expect("list")), ["b"]);
    assert_eq!(
        names(svc.list_alerts("*", 0, 100).await.expect("list")),
        ["z", "a", "b", "c"]
    );
    let listed = svc.list_alerts(P, 0, 100).await.expect("list");
    assert!(listed.iter().all(|a| a.view(at(1)).id == Some(a.id)));
}

/// An event of `kind` about `entity` (of `entity_kind`) with `values`, accepted at `t`.
async fn send_values(
    svc: &Service,
    kind: &str,
    entity_kind: &str,
    entity: &str,
    values: serde_json::Value,
    t: Timestamp,
) -> crate::engine::EventOutcome {
    let event: Event = serde_json::from_value(json!({
        "entity": {"kind": entity_kind, "project": P, "ids": [entity]}, "value_dict": values
    }))
    .expect("event");
    let accepted = svc.accept_event(P, kind, event, None, t).expect("accepted");
    svc.ingest(&accepted).await.expect("ingested")
}

pub async fn filters_and_entity_globs_decide_what_counts(s: Arc<dyn Store>) {
    let svc = service(s);
    let alert: AlertConfig = serde_json::from_value(json!({
        "name": "drift", "severity": "high",
        "criteria": {"count": 2, "period": "10m", "per_entity": true},
        "trigger": {"events": ["data-drift-detected"]},
        "entities": {"kind": "model-endpoint-result", "project": P, "ids": ["ep1.*"]},
        "filter": {"all": [{"field": "result_value", "op": ">", "value": 0.7},
                           {"not": {"field": "app", "op": "starts_with", "value": "test-"}}]}
    }))
    .expect("config");
    let stored = svc
        .store_alert(P, "drift", alert, false, at(0))
        .await
        .expect("stored");
    assert_eq!(stored.filter.as_ref().map(|f| f.depth()), Some(3));
    let drift =
        |entity: &'static str, v: f64, app: &str| (entity, json!({"result_value": v, "app": app}));
    let mut fired = 0;
    for (t, (entity, values)) in [
        drift("ep1.a", 0.9, "drift"),  // counts: ep1.a 1
        drift("ep2.a", 0.9, "drift"),  // another endpoint: the glob does not match
        drift("ep1.a", 0.5, "drift"),  // filtered out
        drift("ep1.a", 0.9, "test-x"), // filtered out
        drift("ep1.b", 0.9, "drift"),  // ep1.b 1: windows are per entity
        drift("ep1.a", 0.8, "drift"),  // ep1.a 2: fires
    ]
    .into_iter()
    .enumerate()
    {
        let out = send_values(
            &svc,
            "data-drift-detected",
            "model-endpoint-result",
            entity,
            values,
            at(t as i64),
        )
        .await;
        fired += out.fired.len();
        if t == 5 {
            assert_eq!(out.fired.len(), 1, "the second passing ep1.a event fires");
            assert_eq!(out.fired[0].activation.entity_id, "ep1.a");
        }
    }
    assert_eq!(fired, 1);
    let bad: AlertConfig = serde_json::from_value(json!({
        "name": "bad", "severity": "high", "trigger": {"events": ["failed"]},
        "entities": {"kind": "job", "project": P, "ids": ["*"]},
        "filter": {"field": "name", "op": "contains", "value": 3}
    }))
    .expect("config");
    assert!(matches!(
        svc.store_alert(P, "bad", bad, false, at(0)).await,
        Err(Error::BadRequest(_))
    ));
}

pub async fn calculated_events_feed_alerts_once_sustained(s: Arc<dyn Store>) {
    let svc = service(s);
    let calculated: AlertConfig = serde_json::from_value(json!({
        "name": "cpu-high", "severity": "low",
        "criteria": {"sustain": "1h", "per_entity": true},
        "trigger": {"events": ["job-cpu"]},
        "entities": {"kind": "job", "project": P, "ids": ["*"]},
        "filter": {"field": "cpu", "op": ">", "value": 70},
        "emits": "job-cpu-high"
    }))
    .expect("config");
    svc.store_alert(P, "cpu-high", calculated, false, at(0))
        .await
        .expect("stored");
    let alert: AlertConfig = serde_json::from_value(json!({
        "name": "hot-job", "severity": "high", "reset_policy": "manual",
        "trigger": {"events": ["job-cpu-high"]},
        "entities": {"kind": "job", "project": P, "ids": ["*"]}
    }))
    .expect("config");
    svc.store_alert(P, "hot-job", alert, false, at(0))
        .await
        .expect("stored");
    // train-1 holds above 70% for the hour; train-2 drops at 59 minutes.
    for minute in 0..=60 {
        let t = at(minute * 60);
        let cpu2 = if minute == 59 { 40 } else { 90 };
        let one = send_values(&svc, "job-cpu", "job", "train-1", json!({"cpu": 90}), t).await;
        let two = send_values(&svc, "job-cpu", "job", "train-2", json!({"cpu": cpu2}), t).await;
        assert!(two.fired.is_empty(), "train-2 never holds for an hour");
        let names: Vec<_> = one
            .fired
            .iter()
            .map(|f| f.activation.name.as_str())
            .collect();
        if minute < 60 {
            assert!(names.is_empty(), "minute {minute}: {names:?}");
        } else {
            assert_eq!(
                names,
                ["cpu-high", "hot-job"],
                "the calculated event fires the alert"
            );
            assert_eq!(one.fired[1].activation.event_kind.as_str(), "job-cpu-high");
            assert_eq!(one.fired[1].activation.entity_id, "train-1");
        }
    }
    let unknown: Event = serde_json::from_value(
        json!({"entity": {"kind": "job", "project": P, "ids": ["j"]}, "value_dict": {}}),
    )
    .expect("event");
    let accepted = svc
        .accept_event(P, "job-gpu", unknown, None, at(3600))
        .expect("well formed");
    assert!(
        matches!(svc.ingest(&accepted).await, Err(Error::BadRequest(m)) if m.contains("no alert of project")),
        "a custom kind no alert triggers on is refused"
    );
    let hot = svc.get_alert(P, "hot-job", at(3601)).await.expect("alert");
    assert_eq!((hot.state, hot.count), (AlertState::Active, 1));
    let looped: AlertConfig = serde_json::from_value(json!({
        "name": "loop", "severity": "low", "trigger": {"events": ["job-cpu-high"]},
        "entities": {"kind": "job", "project": P, "ids": ["*"]}, "emits": "job-cpu-high"
    }))
    .expect("config");
    assert!(matches!(
        svc.store_alert(P, "loop", looped, false, at(0)).await,
        Err(Error::BadRequest(_))
    ));
}

pub async fn acknowledged_alerts_notify_no_one_until_reset(s: Arc<dyn Store>) {
    let svc = service(s);
    let mut alert = failure_alert("ack", "job1", 1, None, "auto");
    alert.cooldown_period = Some("1m".into());
    svc.store_alert(P, "ack", alert, false, at(0))
        .await
        .expect("stored");
    assert!(
        matches!(
            svc.acknowledge_alert(P, "ack", "dana", at(1)).await,
            Err(Error::BadRequest(_))
        ),
        "an inactive alert cannot be acknowledged"
    );
    assert!(matches!(
        svc.acknowledge_alert(P, "nope", "dana", at(1)).await,
        Err(Error::NotFound(_))
    ));
    let first = send(&svc, "job1", at(10)).await;
    assert_eq!(
        first.fired[0].activation.deliveries[0].status,
        crate::model::DeliveryStatus::Pending
    );
    let acked = svc
        .acknowledge_alert(P, "ack", "  dana ", at(20))
        .await
        .expect("acknowledged");
    let ack = acked.acknowledged.expect("recorded");
    assert_eq!((ack.by.as_str(), ack.at), ("dana", at(20)));
    // The cooldown ends and the alert fires again: the acknowledgement holds its notifications.
    let again = send(&svc, "job1", at(100)).await;
    let delivery = &again.fired[0].activation.deliveries[0];
    assert_eq!(delivery.status, crate::model::DeliveryStatus::Suppressed);
    assert!(
        delivery
            .error
            .as_deref()
            .is_some_and(|e| e.contains("acknowledged by dana"))
    );
    let read = svc.get_alert(P, "ack", at(101)).await.expect("alert");
    assert_eq!(read.acknowledged.map(|a| a.by), Some("dana".into()));
    assert_eq!(read.last_activation_time, Some(at(100)));
    svc.reset_alert(P, "ack", "ops", at(102))
        .await
        .expect("reset");
    assert_eq!(
        svc.get_alert(P, "ack", at(103))
            .await
            .expect("alert")
            .acknowledged,
        None
    );
    let after = send(&svc, "job1", at(200)).await;
    assert_eq!(
        after.fired[0].activation.deliveries[0].status,
        crate::model::DeliveryStatus::Pending
    );
    assert!(matches!(
        svc.acknowledge_alert(P, "ack", "   ", at(201)).await,
        Err(Error::BadRequest(_))
    ));
}

fn silence(value: serde_json::Value) -> SilenceSpec {
    serde_json::from_value(value).expect("valid contract silence")
}

fn signed_in(name: &str) -> Principal {
    Principal {
        name: name.into(),
        grants: Vec::new(),
        authenticated: true,
    }
}

/// A silence holds back the notifications of the activations it matches while it is in
/// effect (a one-off window, a daily schedule): the alert still fires and records them as
/// suppressed, with who and why. Before, after, and for what it does not match, they go out.
pub async fn silences_hold_back_notifications_while_in_effect(s: Arc<dyn Store>) {
    let svc = service(s);
    store(&svc, failure_alert("quiet", "job1", 1, None, "auto"), at(0)).await;
    store(&svc, failure_alert("loud", "job2", 1, None, "auto"), at(0)).await;
    let anyone = Principal::anonymous();
    let window = silence(json!({
        "matchers": {"alert": "qu*", "entity": "job?", "severity": ["medium"], "event_kind": ["failed"]},
        "starts_at": at(100), "ends_at": at(200), "comment": "upgrade", "created_by": "ann"}));
    let (made, created) = svc
        .store_silence(P, "upgrade", window, &anyone, at(10))
        .await
        .expect("silence stored");
    assert!(created);
    assert_eq!(
        (made.state, made.next_start),
        (crate::model::SilencePhase::Pending, Some(at(100)))
    );
    let status = |o: &crate::engine::EventOutcome| o.fired[0].activation.deliveries[0].clone();
    assert_eq!(
        status(&send(&svc, "job1", at(50)).await).status,
        DeliveryStatus::Pending,
        "not yet"
    );
    let held = send(&svc, "job1", at(150)).await;
    let d = status(&held);
    assert_eq!(d.status, DeliveryStatus::Suppressed);
    assert_eq!(d.silence.as_deref(), Some("upgrade"));
    assert!(
        d.error
            .as_deref()
            .is_some_and(|e| e.starts_with("silenced by ann: upgrade, until")),
        "{d:?}"
    );
    assert_eq!(d.at, Some(at(200)));
    assert_eq!(
        state(&svc, "quiet", at(151)).await.1,
        2,
        "it still fires and counts"
    );
    let stored = svc
        .activation(P, held.fired[0].activation.id)
        .await
        .expect("recorded");
    assert_eq!(stored.deliveries[0].status, DeliveryStatus::Suppressed);
    assert_eq!(
        status(&send(&svc, "job2", at(150)).await).status,
        DeliveryStatus::Pending,
        "another alert"
    );
    assert_eq!(
        status(&send(&svc, "job1", at(200)).await).status,
        DeliveryStatus::Pending,
        "over"
    );

    // T0 is 08:00 UTC: a daily 09:00-10:00 window holds from 3600 s on.
    let daily = silence(json!({
        "matchers": {"severity": ["medium"]},
        "schedule": {"from": "09:00", "to": "10:00", "time_zone": "UTC"},
        "comment": "nightly batch"}));
    svc.store_silence(P, "daily", daily, &signed_in("ops"), at(300))
        .await
        .expect("schedule stored");
    let d = status(&send(&svc, "job2", at(3_660)).await);
    assert_eq!(d.status, DeliveryStatus::Suppressed);
    assert!(
        d.error
            .as_deref()
            .is_some_and(|e| e.starts_with("silenced by ops: nightly batch"))
    );
    assert_eq!(d.at, Some(at(7_200)));
    assert_eq!(
        status(&send(&svc, "job2", at(7_260)).await).status,
        DeliveryStatus::Pending
    );
    // Expired early: from then on it holds nothing.
    let ended = svc
        .expire_silence(P, "daily", &signed_in("bob"), at(90_000))
        .await
        .expect("expired");
    assert_eq!(ended.state, crate::model::SilencePhase::Expired);
    assert_eq!(ended.silence.expired_by.as_deref(), Some("bob"));
    assert_eq!(
        status(&send(&svc, "job2", at(90_000 + 3_660)).await).status,
        DeliveryStatus::Pending
    );
}

/// Silences are listed by state; an expired one stays listed for the retention, then is
/// dropped; a replaced one keeps its id and creation time.
pub async fn silences_are_listed_expired_and_dropped(s: Arc<dyn Store>) {
    let svc = service(s);
    let anyone = Principal::anonymous();
    let one = |end: i64| {
        silence(json!({"matchers": {"alert": "a*"}, "ends_at": at(end), "comment": "why"}))
    };
    svc.store_silence(P, "a", one(1_000), &anyone, at(0))
        .await
        .expect("a");
    svc.store_silence(P, "b", one(2_000), &anyone, at(0))
        .await
        .expect("b");
    assert!(matches!(
        svc.store_silence(P, "bad id!", one(1_000), &anyone, at(0))
            .await,
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        svc.store_silence(
            P,
            "c",
            silence(json!({"comment": "forever"})),
            &anyone,
            at(0)
        )
        .await,
        Err(Error::BadRequest(_))
    ));
    let (replaced, created) = svc
        .store_silence(P, "b", one(3_000), &anyone, at(10))
        .await
        .expect("replaced");
    assert!(!created);
    assert_eq!(
        (replaced.silence.created, replaced.silence.updated),
        (at(0), at(10))
    );
    assert_eq!(replaced.until, Some(at(3_000)));
    let names = |v: Vec<crate::model::SilenceView>| -> Vec<String> {
        v.into_iter().map(|v| v.silence.id).collect()
    };
    let listed = |f: SilenceFilter, t: i64| {
        let svc = svc.clone();
        async move { names(svc.list_silences(P, f, at(t)).await.expect("listed")) }
    };
    assert_eq!(listed(SilenceFilter::Current, 20).await, ["a", "b"]);
    assert_eq!(listed(SilenceFilter::Expired, 1_500).await, ["a"]);
    assert_eq!(listed(SilenceFilter::Active, 1_500).await, ["b"]);
    assert_eq!(
        names(
            svc.list_silences("*", SilenceFilter::All, at(1_500))
                .await
                .expect("all")
        ),
        ["a", "b"]
    );
    assert!(listed(SilenceFilter::All, 20).await.len() == 2);
    let retention = AlertsSettings::default().silence_retention_secs;
    // Past a's retention: not found, not listed, and dropped by the next write.
    assert!(matches!(
        svc.get_silence(P, "a", at(1_000 + retention + 1)).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        listed(SilenceFilter::All, 1_000 + retention + 1).await,
        ["b"]
    );
    svc.store_silence(
        P,
        "d",
        one(1_000 + retention + 100),
        &anyone,
        at(1_000 + retention + 1),
    )
    .await
    .expect("d");
    assert!(
        svc.store().silence(P, "a").await.expect("read").is_none(),
        "dropped"
    );
    assert!(matches!(
        svc.expire_silence(P, "zzz", &anyone, at(0)).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(
        svc.get_silence(P, "b", at(20))
            .await
            .expect("b")
            .silence
            .comment,
        "why"
    );
}

/// A notification with `send_resolved` is delivered again when its activation closes: on a
/// manual reset (saying by whom), and at the end of an auto alert's cooldown, which a tick
/// settles with no event (stamped with the cooldown's end, once however often it ticks).
/// Those without it, and alerts that closed before, get no resolved delivery.
pub async fn closing_an_activation_plans_its_resolved_notifications(s: Arc<dyn Store>) {
    let svc = service(s);
    let resolved_hook = |mut a: AlertConfig| {
        a.notifications[0].send_resolved = true;
        let mut quiet = a.notifications[0].clone();
        quiet.notification.name = "quiet".into();
        quiet.send_resolved = false;
        a.notifications.push(quiet);
        a
    };
    store(
        &svc,
        resolved_hook(failure_alert("manual", "job1", 1, None, "manual")),
        at(0),
    )
    .await;
    let mut cooled = resolved_hook(failure_alert("cooled", "job2", 1, None, "auto"));
    cooled.cooldown_period = Some("1m".into());
    store(&svc, cooled, at(0)).await;

    let fired = send(&svc, "job1", at(10)).await.fired[0].activation.id;
    svc.reset_alert(P, "manual", "dana", at(20))
        .await
        .expect("reset");
    let a = svc.activation(P, fired).await.expect("activation");
    assert_eq!(
        (a.reset_time, a.resolution.as_deref()),
        (Some(at(20)), Some("reset by dana"))
    );
    let resolved: Vec<&crate::model::Delivery> =
        a.deliveries.iter().filter(|d| d.resolved).collect();
    assert_eq!(
        resolved.len(),
        1,
        "only the notification with send_resolved: {a:?}"
    );
    assert_eq!(
        (resolved[0].notification.as_str(), resolved[0].status),
        ("hook", DeliveryStatus::Pending)
    );
    assert_eq!(resolved[0].key(fired), format!("{fired}:hook:resolved"));
    let outbox = svc.store().pending_deliveries(100).await.expect("outbox");
    assert!(outbox.iter().any(|o| o.id == fired), "back in the outbox");
    // Its firing's record is kept apart from its resolved one.
    svc.store()
        .record_delivery(
            fired,
            crate::model::Delivery {
                status: DeliveryStatus::Sent,
                attempts: 1,
                ..resolved[0].clone()
            },
        )
        .await
        .expect("recorded");
    let a = svc.activation(P, fired).await.expect("activation");
    assert_eq!(
        a.deliveries
            .iter()
            .filter(|d| d.notification == "hook")
            .count(),
        2
    );
    let hooks: Vec<(bool, DeliveryStatus)> = a
        .deliveries
        .iter()
        .filter(|d| d.notification == "hook")
        .map(|d| (d.resolved, d.status))
        .collect();
    assert_eq!(
        hooks,
        [
            (false, DeliveryStatus::Pending),
            (true, DeliveryStatus::Sent)
        ]
    );
    svc.reset_alert(P, "manual", "erin", at(30))
        .await
        .expect("reset again");
    assert_eq!(
        svc.activation(P, fired)
            .await
            .expect("activation")
            .resolution
            .as_deref(),
        Some("reset by dana"),
        "an inactive alert's reset closes nothing"
    );

    let cooling = send(&svc, "job2", at(100)).await.fired[0].activation.id;
    assert_eq!(
        svc.tick(at(159)).await.expect("tick").closed,
        0,
        "still cooling down"
    );
    let ticked = svc.tick(at(175)).await.expect("tick");
    assert_eq!((ticked.closed, ticked.resolved), (1, true));
    let a = svc.activation(P, cooling).await.expect("activation");
    assert_eq!(
        (a.reset_time, a.resolution.as_deref()),
        (Some(at(160)), Some("its cooldown ended"))
    );
    assert_eq!(a.deliveries.iter().filter(|d| d.resolved).count(), 1);
    assert_eq!(
        state(&svc, "cooled", at(176)).await,
        (AlertState::Inactive, 1)
    );
    assert_eq!(
        svc.tick(at(200)).await.expect("tick").closed,
        0,
        "settled once"
    );
}

/// A sustained alert that resets itself (`for 10m`, auto, no cooldown) fires once per run of
/// its condition and stays active while it holds; the first failing event about the entity
/// closes it ("its condition stopped holding") with its resolved notification. A resolved
/// notification whose firing was held back (here by a silence) is held back too.
pub async fn a_sustained_condition_resolves_when_it_stops_holding(s: Arc<dyn Store>) {
    let svc = service(s);
    let mut hot: AlertConfig = serde_json::from_value(json!({
        "name": "cpu-hot", "severity": "high", "reset_policy": "auto",
        "criteria": {"sustain": "10m", "per_entity": true},
        "trigger": {"events": ["job-cpu"]},
        "entities": {"kind": "job", "project": P, "ids": ["*"]},
        "filter": {"field": "cpu", "op": ">", "value": 70},
        "notifications": [{"notification": {"kind": "webhook", "name": "hook", "when": ["completed"],
            "secret_params": {"url": "http://127.0.0.1:9/hook"}}, "send_resolved": true}]
    }))
    .expect("config");
    hot.project = P.into();
    store(&svc, hot, at(0)).await;
    let cpu = |entity: &'static str, value: i64, minute: i64| {
        let svc = svc.clone();
        async move {
            send_values(
                &svc,
                "job-cpu",
                "job",
                entity,
                json!({"cpu": value}),
                at(minute * 60),
            )
            .await
        }
    };
    let mut fired = Vec::new();
    for minute in 0..=15 {
        for entity in ["train-1", "train-2"] {
            let out = cpu(entity, 90, minute).await;
            fired.extend(
                out.fired
                    .iter()
                    .map(|f| (f.activation.entity_id.clone(), minute)),
            );
        }
    }
    assert_eq!(
        fired,
        [("train-1".to_owned(), 10), ("train-2".to_owned(), 10)],
        "once per entity while it holds, not again every 10 minutes"
    );
    assert_eq!(
        state(&svc, "cpu-hot", at(15 * 60)).await,
        (AlertState::Active, 2)
    );
    let ids = |entity: &str| {
        let svc = svc.clone();
        let entity = entity.to_owned();
        async move {
            svc.store()
                .activations(&page(ActivationQuery {
                    project: Some(P.into()),
                    entity: Some(EntityFilter::Exact(entity.clone())),
                    ..Default::default()
                }))
                .await
                .expect("activations")
                .into_iter()
                .map(|a| a.id)
                .collect::<Vec<u64>>()
        }
    };
    let one = ids("train-1").await[0];
    cpu("train-1", 40, 16).await;
    let a = svc.activation(P, one).await.expect("activation");
    assert_eq!(
        (a.reset_time, a.resolution.as_deref()),
        (Some(at(16 * 60)), Some("its condition stopped holding"))
    );
    let resolved: Vec<DeliveryStatus> = a
        .deliveries
        .iter()
        .filter(|d| d.resolved)
        .map(|d| d.status)
        .collect();
    assert_eq!(resolved, [DeliveryStatus::Pending]);
    assert_eq!(
        state(&svc, "cpu-hot", at(16 * 60 + 1)).await.0,
        AlertState::Active,
        "train-2 still holds"
    );
    cpu("train-2", 40, 17).await;
    assert_eq!(
        state(&svc, "cpu-hot", at(17 * 60 + 1)).await,
        (AlertState::Inactive, 2)
    );

    // A run fired while silenced: its resolved notification is held back too.
    let anyone = Principal::anonymous();
    let quiet = silence(json!({"matchers": {"alert": "cpu-hot"}, "starts_at": at(0),
        "ends_at": at(86_400), "comment": "load test", "created_by": "ann"}));
    svc.store_silence(P, "load-test", quiet, &anyone, at(18 * 60))
        .await
        .expect("silence stored");
    for minute in 20..=30 {
        cpu("train-1", 90, minute).await;
    }
    let again = ids("train-1").await;
    assert_eq!(again.len(), 2, "a new run fires again");
    let newest = again.into_iter().max().expect("newest");
    svc.reset_alert(P, "cpu-hot", "ops", at(31 * 60))
        .await
        .expect("reset");
    let a = svc.activation(P, newest).await.expect("activation");
    assert_eq!(a.resolution.as_deref(), Some("reset by ops"));
    let resolved = a.deliveries.iter().find(|d| d.resolved).expect("resolved");
    assert_eq!(resolved.status, DeliveryStatus::Suppressed);
    assert!(
        resolved
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with("its firing was not notified (silenced by ann")),
        "{resolved:?}"
    );
    assert_eq!(resolved.silence.as_deref(), Some("load-test"));
}

fn page(q: ActivationQuery) -> ActivationQuery {
    ActivationQuery { limit: 1000, ..q }
}

pub async fn the_audit_list_keeps_who_did_what(s: Arc<dyn Store>) {
    let entry = |secs: i64, project: &str, action: &str, by: &str| AuditEntry {
        time: Timestamp(secs * 1_000_000),
        project: project.to_owned(),
        action: action.to_owned(),
        target: "drift".to_owned(),
        by: by.to_owned(),
    };
    assert!(s.audit_log(None, 10).await.expect("audit").is_empty());
    let written = [
        entry(1, "p1", "alert.store", "ci"),
        entry(2, "p2", "alert.reset", "ann"),
        // The same microsecond twice: both kept.
        entry(3, "p1", "alert.acknowledge", "bob"),
        entry(3, "p1", "alert.reset", "bob"),
        entry(4, "p1", "alert.delete", "ci"),
    ];
    for e in &written {
        s.record_audit(e.clone()).await.expect("recorded");
    }
    let all = s.audit_log(None, 10).await.expect("audit");
    assert_eq!(all.len(), 5, "{all:?}");
    assert_eq!(all[0], written[4], "newest first");
    assert_eq!(all[4], written[0]);
    let p1 = s.audit_log(Some("p1"), 10).await.expect("audit");
    assert_eq!(
        p1.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        [
            "alert.delete",
            "alert.reset",
            "alert.acknowledge",
            "alert.store"
        ]
    );
    let two = s.audit_log(Some("p1"), 2).await.expect("audit");
    assert_eq!(two, p1[..2]);
    assert!(s.audit_log(Some("p3"), 10).await.expect("audit").is_empty());
}

/// A `*` absence alert watches each entity seen, and the ones that must report from its
/// creation: each absence fires once, at its deadline (however late the tick), and closes
/// when the entity reports again, with its resolved notification.
pub async fn absences_fire_once_at_their_deadline_and_close_when_events_return(s: Arc<dyn Store>) {
    let svc = service(s);
    let mut heartbeat = failure_alert("heartbeat", "*", 1, None, "auto");
    heartbeat.criteria = Some(crate::model::Criteria {
        absent: Some("10m".into()),
        must_report: vec!["job9".into()],
        ..Default::default()
    });
    heartbeat.notifications[0].send_resolved = true;
    store(&svc, heartbeat, at(0)).await;
    send(&svc, "job1", at(60)).await;
    let fired = |t: &crate::engine::Ticked| -> Vec<(String, Timestamp)> {
        t.fired
            .iter()
            .map(|f| (f.activation.entity_id.clone(), f.activation.activation_time))
            .collect()
    };
    assert!(fired(&svc.tick(at(599)).await.expect("tick")).is_empty());
    let first = svc.tick(at(600)).await.expect("tick");
    assert_eq!(
        fired(&first),
        [("job9".to_owned(), at(600))],
        "never reported"
    );
    let a = &first.fired[0].activation;
    assert_eq!((a.number_of_events, a.event_kind.as_str()), (0, "failed"));
    assert_eq!(a.deliveries[0].status, DeliveryStatus::Pending);
    // A late tick fires at the deadline, not at the tick.
    let second = svc.tick(at(700)).await.expect("tick");
    assert_eq!(fired(&second), [("job1".to_owned(), at(660))]);
    assert!(
        fired(&svc.tick(at(800)).await.expect("tick")).is_empty(),
        "once"
    );
    assert_eq!(
        state(&svc, "heartbeat", at(801)).await,
        (AlertState::Active, 2)
    );

    // job1 reports again: its absence closes, the alert stays active for job9.
    let back = send(&svc, "job1", at(900)).await;
    assert_eq!(back.fired.len(), 0);
    let job1 = second.fired[0].activation.id;
    let closed = svc.activation(P, job1).await.expect("activation");
    assert_eq!(
        (closed.reset_time, closed.resolution.as_deref()),
        (Some(at(900)), Some("events came back"))
    );
    assert!(
        closed
            .deliveries
            .iter()
            .any(|d| d.resolved && d.status == DeliveryStatus::Pending)
    );
    assert_eq!(
        state(&svc, "heartbeat", at(901)).await.0,
        AlertState::Active
    );
    send(&svc, "job9", at(950)).await;
    assert_eq!(
        state(&svc, "heartbeat", at(951)).await,
        (AlertState::Inactive, 2)
    );
    // Silent again: the watch runs from the last event.
    assert!(fired(&svc.tick(at(1_499)).await.expect("tick")).is_empty());
    assert_eq!(
        fired(&svc.tick(at(1_560)).await.expect("tick")),
        [
            ("job1".to_owned(), at(1_500)),
            ("job9".to_owned(), at(1_550))
        ]
    );
    // A reset closes every open absence and watches afresh from then.
    svc.reset_alert(P, "heartbeat", "ops", at(1_600))
        .await
        .expect("reset");
    assert_eq!(
        state(&svc, "heartbeat", at(1_601)).await.0,
        AlertState::Inactive
    );
    assert!(fired(&svc.tick(at(2_000)).await.expect("tick")).is_empty());
    assert_eq!(
        fired(&svc.tick(at(2_200)).await.expect("tick")),
        [("job9".to_owned(), at(2_200))]
    );
}

/// An absence alert on one entity awaits it from its creation, fires once when it stays
/// silent, and after it reported watches from its last event; a config change that keeps what
/// decides firing keeps the watch.
pub async fn an_absence_on_one_entity_is_awaited_from_creation(s: Arc<dyn Store>) {
    let svc = service(s);
    let mut nightly = failure_alert("nightly", "train-nightly", 1, None, "auto");
    nightly.criteria = Some(crate::model::Criteria {
        absent: Some("1h".into()),
        ..Default::default()
    });
    store(&svc, nightly.clone(), at(0)).await;
    let entities = |t: crate::engine::Ticked| -> Vec<(String, Timestamp)> {
        t.fired
            .iter()
            .map(|f| (f.activation.entity_id.clone(), f.activation.activation_time))
            .collect()
    };
    // Another job's events do not concern it.
    send(&svc, "train-other", at(1_000)).await;
    assert!(entities(svc.tick(at(3_599)).await.expect("tick")).is_empty());
    assert_eq!(
        entities(svc.tick(at(3_700)).await.expect("tick")),
        [("train-nightly".to_owned(), at(3_600))]
    );
    assert!(
        entities(svc.tick(at(9_000)).await.expect("tick")).is_empty(),
        "once"
    );
    send(&svc, "train-nightly", at(9_100)).await;
    assert_eq!(
        state(&svc, "nightly", at(9_101)).await,
        (AlertState::Inactive, 1)
    );
    // A new summary is not a new watch.
    nightly.summary = Some("The nightly training did not run".into());
    store(&svc, nightly, at(9_200)).await;
    assert!(entities(svc.tick(at(12_699)).await.expect("tick")).is_empty());
    assert_eq!(
        entities(svc.tick(at(12_700)).await.expect("tick")),
        [("train-nightly".to_owned(), at(12_700))]
    );
}

/// The events a store was handed are read back in order of arrival, filtered by project,
/// time, kind and entity, and in pages that resume where the last one ended.
pub async fn recorded_events_read_back_in_order_and_in_pages(s: Arc<dyn Store>) {
    let svc = service(s);
    store(&svc, failure_alert("jobs", "*", 5, None, "auto"), at(0)).await;
    for i in 0..10 {
        send(&svc, &format!("job{}", i % 3), at(i * 60)).await;
    }
    send_values(
        &svc,
        "data-drift-detected",
        "model-endpoint-result",
        "ep1",
        json!({"v": 1}),
        at(700),
    )
    .await;
    let query = crate::store::EventQuery {
        project: P.into(),
        limit: 100,
        ..Default::default()
    };
    let read = |q: crate::store::EventQuery| {
        let svc = svc.clone();
        async move { svc.recorded_events(&q).await.expect("read") }
    };
    let all = read(query.clone()).await;
    let seen: Vec<(String, Timestamp)> = all
        .iter()
        .map(|r| (r.event.entity_id.clone(), r.event.at))
        .collect();
    assert_eq!(seen.len(), 11, "{seen:?}");
    assert_eq!(seen[0], ("job0".to_owned(), at(0)));
    assert_eq!(seen[10], ("ep1".to_owned(), at(700)));
    assert!(
        seen.windows(2).all(|w| w[0].1 <= w[1].1),
        "in order of arrival"
    );
    let job1 = read(crate::store::EventQuery {
        entity: Some("job1".into()),
        since: Some(at(100)),
        until: Some(at(600)),
        kinds: vec![crate::model::EventKind::Failed],
        ..query.clone()
    })
    .await;
    let times: Vec<Timestamp> = job1.iter().map(|r| r.event.at).collect();
    assert_eq!(times, [at(240), at(420)]);
    assert!(
        read(crate::store::EventQuery {
            project: "other".into(),
            ..query.clone()
        })
        .await
        .is_empty()
    );
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = read(crate::store::EventQuery {
            limit: 3,
            after: after.clone(),
            ..query.clone()
        })
        .await;
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        after = page.last().map(|r| r.cursor.clone());
        paged.extend(page.into_iter().map(|r| r.event));
    }
    let whole: Vec<crate::model::AcceptedEvent> = all.into_iter().map(|r| r.event).collect();
    assert_eq!(paged, whole, "pages resume where the last one ended");
    assert!(matches!(
        svc.recorded_events(&crate::store::EventQuery {
            after: Some("not a cursor".into()),
            ..query
        })
        .await,
        Err(Error::BadRequest(_))
    ));
}

/// Events of `kind` about job `entity` at `t`, with a key, as a batch request brings them.
fn job_event(
    svc: &Service,
    kind: &str,
    entity: &str,
    key: Option<&str>,
    t: Timestamp,
) -> crate::model::AcceptedEvent {
    let event: Event = serde_json::from_value(json!({
        "entity": {"kind": "job", "project": P, "ids": [entity]}, "value_dict": {"n": entity}
    }))
    .expect("event");
    svc.accept_event(P, kind, event, key.map(str::to_owned), t)
        .expect("accepted")
}

/// A job alert on custom kinds, from JSON fields.
fn job_alert(fields: serde_json::Value) -> AlertConfig {
    let mut config =
        json!({"severity": "low", "entities": {"kind": "job", "project": P, "ids": ["*"]}});
    for (k, v) in fields.as_object().expect("an object") {
        config[k] = v.clone();
    }
    serde_json::from_value(config).expect("config")
}

/// Several events in one request count exactly as the same events sent one by one: each
/// crossing fires once, on the event that crossed it, with the events counted.
pub async fn a_batch_counts_like_its_events_one_by_one(s: Arc<dyn Store>) {
    let svc = service(s);
    store(
        &svc,
        failure_alert("pairs", "*", 2, Some("1h"), "auto"),
        at(0),
    )
    .await;
    let mut per_entity = failure_alert("per", "*", 2, Some("1h"), "auto");
    per_entity.criteria.as_mut().expect("criteria").per_entity = true;
    store(&svc, per_entity, at(0)).await;
    let batch: Vec<_> = ["j1", "j2", "j1", "j3", "j2"]
        .iter()
        .enumerate()
        .map(|(i, e)| job_event(&svc, "failed", e, None, at(10 + i as i64)))
        .collect();
    let outcomes: Vec<_> = svc
        .ingest_batch(&batch)
        .await
        .into_iter()
        .map(|o| o.expect("ingested"))
        .collect();
    let fired: Vec<Vec<(String, String, u64)>> = outcomes
        .iter()
        .map(|o| {
            o.fired
                .iter()
                .map(|f| {
                    let a = &f.activation;
                    (a.name.clone(), a.entity_id.clone(), a.number_of_events)
                })
                .collect()
        })
        .collect();
    let fire = |name: &str, entity: &str| (name.to_owned(), entity.to_owned(), 2);
    assert_eq!(
        fired,
        [
            vec![],
            vec![fire("pairs", "j2")],
            vec![fire("per", "j1")],
            vec![fire("pairs", "j3")],
            vec![fire("per", "j2")],
        ],
        "every second event fires the shared window; every entity's second its own"
    );
    assert!(outcomes.iter().all(|o| o.counted == 2 && !o.duplicate));
    let ids: Vec<u64> = outcomes
        .iter()
        .flat_map(|o| o.fired.iter().map(|f| f.activation.id))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order: {ids:?}");
    let listed = svc
        .activations(&page(ActivationQuery {
            project: Some(P.into()),
            ..Default::default()
        }))
        .await
        .expect("listed");
    assert_eq!(listed.len(), 4, "each firing recorded once");
}

/// The one order: a batch's events are evaluated first, in order; the calculated events that
/// their firings emit come after, as a round of their own. Here the batch's second event
/// fires `second` before the calculated event of the first reaches it, so the activation
/// records the second event.
pub async fn calculated_events_of_a_batch_come_after_its_events(s: Arc<dyn Store>) {
    let svc = service(s);
    let first = job_alert(json!({"name": "first", "trigger": {"events": ["step-a"]},
        "emits": "step-calc"}));
    let second = job_alert(json!({"name": "second", "reset_policy": "manual",
        "trigger": {"events": ["step-calc", "step-b"]}}));
    for config in [first, second] {
        store(&svc, config, at(0)).await;
    }
    let batch = [
        job_event(&svc, "step-a", "j1", None, at(10)),
        job_event(&svc, "step-b", "j2", None, at(11)),
    ];
    let outcomes: Vec<_> = svc
        .ingest_batch(&batch)
        .await
        .into_iter()
        .map(|o| o.expect("ingested"))
        .collect();
    let names = |o: &crate::engine::EventOutcome| -> Vec<String> {
        o.fired.iter().map(|f| f.activation.name.clone()).collect()
    };
    assert_eq!(
        names(&outcomes[0]),
        ["first"],
        "the calculated event is ignored"
    );
    assert_eq!(names(&outcomes[1]), ["second"]);
    let a = &outcomes[1].fired[0].activation;
    assert_eq!(
        (a.entity_id.as_str(), a.event_kind.as_str()),
        ("j2", "step-b")
    );
    assert!(a.chain.is_empty());
    assert_eq!(
        outcomes[0].counted, 1,
        "`second`, active and manual, ignores the calculated event"
    );
}

/// Chains inside a batch: each event's chain runs round after round to its end, and every
/// link records the chain that led to it.
pub async fn chains_of_calculated_events_run_to_their_end_in_a_batch(s: Arc<dyn Store>) {
    let svc = service(s);
    let links = [
        json!({"name": "one", "trigger": {"events": ["start"]}, "emits": "after-one"}),
        json!({"name": "two", "trigger": {"events": ["after-one"]}, "emits": "after-two"}),
        json!({"name": "three", "trigger": {"events": ["after-two"]}}),
    ];
    for link in links {
        store(&svc, job_alert(link), at(0)).await;
    }
    let batch = [
        job_event(&svc, "start", "j1", None, at(10)),
        job_event(&svc, "start", "j2", None, at(10)),
    ];
    for (outcome, entity) in svc.ingest_batch(&batch).await.into_iter().zip(["j1", "j2"]) {
        let outcome = outcome.expect("ingested");
        let fired: Vec<(String, Vec<String>)> = outcome
            .fired
            .iter()
            .map(|f| (f.activation.name.clone(), f.activation.chain.clone()))
            .collect();
        let chain = |links: &[&str]| links.iter().map(|l| format!("{P}/{l}")).collect();
        assert_eq!(
            fired,
            [
                ("one".to_owned(), chain(&[])),
                ("two".to_owned(), chain(&["one"])),
                ("three".to_owned(), chain(&["one", "two"])),
            ],
            "the chain of {entity}"
        );
        assert!(
            outcome
                .fired
                .iter()
                .all(|f| f.activation.entity_id == entity)
        );
        assert_eq!(outcome.counted, 3);
    }
}

/// Idempotency keys repeated inside a batch and across batches: the first event of a key
/// counts, the others are duplicates, whatever batch they come in.
pub async fn keys_repeated_in_and_across_batches_count_once(s: Arc<dyn Store>) {
    let svc = service(s);
    store(&svc, failure_alert("keys", "*", 3, None, "manual"), at(0)).await;
    let ingest = |batch: Vec<(&'static str, &'static str)>, t: i64| {
        let svc = &svc;
        async move {
            let events: Vec<_> = batch
                .iter()
                .map(|(entity, key)| job_event(svc, "failed", entity, Some(key), at(t)))
                .collect();
            svc.ingest_batch(&events)
                .await
                .into_iter()
                .map(|o| {
                    let o = o.expect("ingested");
                    (o.duplicate, o.counted, o.fired.len())
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        ingest(vec![("j1", "k1"), ("j2", "k2"), ("j3", "k1")], 10).await,
        [(false, 1, 0), (false, 1, 0), (true, 0, 0)]
    );
    assert_eq!(
        ingest(vec![("j2", "k2"), ("j4", "k3"), ("j5", "k3")], 20).await,
        [(true, 0, 0), (false, 1, 1), (true, 0, 0)],
        "k3 is the third key counted: it fires"
    );
    let a = svc.get_alert(P, "keys", at(30)).await.expect("alert");
    assert_eq!((a.state, a.count), (AlertState::Active, 1));
}

/// An acknowledgement is told to the channels that take acknowledgements (PagerDuty's
/// incident acknowledged), once, on the open activation, through the outbox; the others are
/// not told.
pub async fn an_acknowledgement_is_told_to_the_channels_that_take_it(s: Arc<dyn Store>) {
    use crate::model::{Delivery, DeliveryStatus};
    let svc = service(s.clone());
    let mut alert = failure_alert("paged", "job1", 1, None, "manual");
    alert.notifications.push(
        serde_json::from_value(json!({"notification": {"kind": "pagerduty", "name": "pd",
            "secret_params": {"routing_key": "R0UT1NG", "endpoint": "http://127.0.0.1:9"}}}))
        .expect("a notification"),
    );
    store(&svc, alert, at(0)).await;
    let fired = send(&svc, "job1", at(10)).await;
    let id = fired.fired[0].activation.id;
    // Both notifications were delivered.
    for name in ["hook", "pd"] {
        let kind = if name == "pd" {
            crate::model::NotificationKind::PagerDuty
        } else {
            crate::model::NotificationKind::Webhook
        };
        s.record_delivery(
            id,
            Delivery {
                notification: name.into(),
                kind,
                status: DeliveryStatus::Sent,
                attempts: 1,
                error: None,
                at: Some(at(11)),
                silence: None,
                resolved: false,
                acknowledged: false,
            },
        )
        .await
        .expect("recorded");
    }
    assert!(
        !svc.activation(P, id)
            .await
            .expect("activation")
            .is_pending()
    );
    svc.acknowledge_alert(P, "paged", "dana", at(20))
        .await
        .expect("acknowledged");
    svc.acknowledge_alert(P, "paged", "dana", at(21))
        .await
        .expect("acknowledged again");
    let a = svc.activation(P, id).await.expect("activation");
    let told: Vec<(&str, DeliveryStatus)> = a
        .deliveries
        .iter()
        .filter(|d| d.acknowledged)
        .map(|d| (d.notification.as_str(), d.status))
        .collect();
    assert_eq!(
        told,
        [("pd", DeliveryStatus::Pending)],
        "told once, to PagerDuty"
    );
    assert_eq!(a.deliveries.iter().filter(|d| d.acknowledged).count(), 1);
    assert!(a.is_pending(), "back in the outbox");
    assert_eq!(
        a.deliveries
            .iter()
            .find(|d| d.acknowledged)
            .map(|d| d.key(id)),
        Some(format!("{id}:pd:acknowledged"))
    );
}

/// A notification's cooldown runs from a message that was sent: one given up does not hold
/// back the next firing's, and one sent holds it back for the cooldown from when it was sent.
pub async fn a_notification_cooldown_runs_from_a_sent_message(s: Arc<dyn Store>) {
    use crate::model::{Delivery, DeliveryStatus};
    let svc = service(s.clone());
    let mut alert = failure_alert("cool", "job1", 1, None, "auto");
    alert.notifications[0].cooldown_period = Some("10m".into());
    store(&svc, alert, at(0)).await;
    let settle = |id: u64, status: DeliveryStatus, when: i64| {
        let s = s.clone();
        async move {
            let d = Delivery {
                notification: "hook".into(),
                kind: crate::model::NotificationKind::Webhook,
                status,
                attempts: 3,
                error: None,
                at: Some(at(when)),
                silence: None,
                resolved: false,
                acknowledged: false,
            };
            s.record_delivery(id, d).await.expect("recorded");
            let sent = (status == DeliveryStatus::Sent).then(|| at(when));
            s.delivered(P, "cool", id, "hook", sent)
                .await
                .expect("noted");
        }
    };
    let first = send(&svc, "job1", at(10)).await;
    let id = first.fired[0].activation.id;
    // Its message was given up: the next firing notifies.
    settle(id, DeliveryStatus::Failed, 20).await;
    let second = send(&svc, "job1", at(30)).await;
    let d = &second.fired[0].activation.deliveries[0];
    assert_eq!(d.status, DeliveryStatus::Pending, "{d:?}");
    // This one is sent late (after retries): the cooldown runs from then.
    settle(second.fired[0].activation.id, DeliveryStatus::Sent, 100).await;
    let third = send(&svc, "job1", at(400)).await;
    let d = &third.fired[0].activation.deliveries[0];
    assert_eq!(d.status, DeliveryStatus::Suppressed);
    assert_eq!(d.at, Some(at(700)), "until ten minutes after it was sent");
    let fourth = send(&svc, "job1", at(701)).await;
    assert_eq!(
        fourth.fired[0].activation.deliveries[0].status,
        DeliveryStatus::Pending
    );
}

#[cfg(test)]
mod memory_store {
    use std::sync::Arc;

    use crate::store::{MemoryStore, Store};

    crate::store_contract_tests!((Arc::new(MemoryStore::new()) as Arc<dyn Store>, ()));

    #[tokio::test]
    async fn tokens_are_kept_found_and_revoked() {
        crate::store::token_contract::tokens_are_kept_found_and_revoked(Arc::new(
            MemoryStore::new(),
        ))
        .await;
    }
}
