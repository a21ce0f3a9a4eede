//! The contract every events store keeps (SQLite, local Delta, Databricks), run against each by
//! its own tests: ids and lookups, claims oldest first and once, one target's syncs one at a
//! time, RUN items never held back, an id queued once, only the claimer finishes or renews, and
//! a stale claim taken over after its lease only.

use std::time::Duration;

use bridge::sync::{Claim, EventStatus, EventStore, NewEvent, Operation, Outcome};

fn sync(target: &str) -> NewEvent {
    NewEvent {
        operation: Operation::Insert,
        source_table: "main.sales.results".into(),
        target_table: target.into(),
        primary_keys: Vec::new(),
        filter: None,
        created_by: Some("alice".into()),
        pipeline: None,
        country: None,
        params: None,
    }
}

fn run(pipeline: &str) -> NewEvent {
    NewEvent::run(pipeline, Some("colombia"), &Default::default(), None)
}

/// Runs the contract on an empty `store`. `lease` is how long a claim stays fresh: longer than
/// one heartbeat plus one reclaim of the store takes on a busy machine.
pub async fn check(store: &dyn EventStore, lease: Duration) {
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert_eq!(store.oldest_pending().await.unwrap(), None);

    // Submitted, read back, counted.
    let first = store.submit(sync("dbo.A")).await.unwrap();
    let same_target = store.submit(sync("DBO.a")).await.unwrap();
    let other_target = store.submit(sync("dbo.B")).await.unwrap();
    let item_id = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    let queue_item = || async { store.submit_once(item_id, run("demo")).await.unwrap() };
    let item = queue_item().await.expect("a new id is stored");
    assert!(queue_item().await.is_none(), "an id is queued once");
    assert_eq!(store.get(&first.event_id).await.unwrap().unwrap(), first);
    assert_eq!(store.get("not-a-uuid").await.unwrap(), None);
    assert_eq!(store.pending_count().await.unwrap(), 4);
    assert_eq!(
        store.oldest_pending().await.unwrap(),
        Some(first.created_at)
    );
    let bad = store.submit(sync("x;drop")).await.unwrap_err();
    assert_eq!(bad.field(), Some("target_table"), "{bad}");

    // Oldest first; a busy target's next sync is held back, other targets and RUN items are not.
    let claim = |what| async move { store.claim("w1", what).await.unwrap().map(|e| e.event_id) };
    assert_eq!(claim(Claim::Any).await, Some(first.event_id.clone()));
    assert_eq!(claim(Claim::Any).await, Some(other_target.event_id.clone()));
    assert_eq!(
        claim(Claim::SyncsOnly).await,
        None,
        "dbo.A is busy and the RUN item is not a sync"
    );
    assert_eq!(claim(Claim::Any).await, Some(item.event_id.clone()));
    assert_eq!(claim(Claim::Any).await, None);
    assert_eq!(store.pending_count().await.unwrap(), 1);

    // Only the claimer finishes, once; then the held-back sync is claimable.
    let done = Outcome::completed(3);
    assert!(!store.finish(&first.event_id, "w2", &done).await.unwrap());
    assert!(store.finish(&first.event_id, "w1", &done).await.unwrap());
    assert!(!store.finish(&first.event_id, "w1", &done).await.unwrap());
    let finished = store.get(&first.event_id).await.unwrap().unwrap();
    assert_eq!(
        (finished.status, finished.rows_affected),
        (EventStatus::Completed, Some(3))
    );
    assert!(
        queue_item().await.is_none(),
        "a claimed id is not queued again"
    );
    let next = store.claim_next("w2").await.unwrap().unwrap();
    assert_eq!(next.event_id, same_target.event_id);
    assert_eq!(store.pending_count().await.unwrap(), 0);

    // Heartbeats renew only the claimer's claim; a stale claim is taken over once, after the
    // lease and not before.
    assert!(store.heartbeat(&next.event_id, "w2").await.unwrap());
    assert!(!store.heartbeat(&next.event_id, "w1").await.unwrap());
    assert!(
        store
            .reclaim_stale("w3", Duration::from_secs(3600))
            .await
            .unwrap()
            .is_empty()
    );
    tokio::time::sleep(lease + lease / 2).await;
    assert!(store.heartbeat(&next.event_id, "w2").await.unwrap());
    let taken: Vec<String> = store
        .reclaim_stale("w3", lease)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert!(
        !taken.contains(&next.event_id),
        "a renewed claim is not stale"
    );
    assert!(taken.contains(&other_target.event_id), "{taken:?}");
    // (Against a long lease: the takeover renewed the claims, whatever the store's speed.)
    assert!(
        store
            .reclaim_stale("w4", Duration::from_secs(60))
            .await
            .unwrap()
            .iter()
            .all(|e| !taken.contains(&e.event_id)),
        "taken over once"
    );
    assert!(
        !store
            .finish(&other_target.event_id, "w1", &done)
            .await
            .unwrap(),
        "the old claimer lost it"
    );
    assert!(
        store
            .finish(&other_target.event_id, "w3", &Outcome::failed("boom"))
            .await
            .unwrap()
    );
    let failed = store.get(&other_target.event_id).await.unwrap().unwrap();
    assert_eq!(
        (failed.status, failed.error_message.as_deref()),
        (EventStatus::Failed, Some("boom"))
    );
}
