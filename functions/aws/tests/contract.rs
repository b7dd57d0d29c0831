//! The store contract suite (the one the embedded store passes) against DynamoDB on moto.

mod common;

use std::sync::Arc;

use tocsin_core::store::Store;

tocsin_core::store_contract_tests!((Arc::new(common::store().await) as Arc<dyn Store>, ()));

/// Absence alerts are not in this store's contract yet (their deadlines need an index the
/// tick can read without a scan): storing one is refused with the reason, not accepted and
/// left never to fire.
#[tokio::test]
async fn absence_alerts_are_refused_with_the_reason() {
    use tocsin_core::{AlertsSettings, Error, Service};
    let svc = Service::new(
        Arc::new(common::store().await),
        AlertsSettings::default(),
        Arc::new(tocsin_core::dispatch::Nowhere),
    );
    let mut quiet = tocsin_core::store::contract::failure_alert("quiet", "*", 1, None, "auto");
    quiet.criteria = Some(tocsin_core::model::Criteria {
        absent: Some("10m".into()),
        ..Default::default()
    });
    let refused = svc
        .store_alert(
            "proj",
            "quiet",
            quiet,
            false,
            tocsin_core::model::Timestamp::now(),
        )
        .await;
    assert!(
        matches!(&refused, Err(Error::BadRequest(m)) if m.contains("not supported on the AWS deployment")),
        "{refused:?}"
    );
    assert!(
        svc.store()
            .get_alert("proj", "quiet")
            .await
            .expect("read")
            .is_none()
    );
}
