//! The scoring queue's order, through the store API on both stores: oldest request first, where
//! a write that comes in while its patient is being scored is a new request. A patient written
//! again and again while it is scored does not keep the head of the queue, so a patient queued
//! after it is scored in its turn.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::StoreKind;
use signaal::scoring::worker::{drain, Scored};

const T0: i64 = 1_700_000_000_000;

/// A patient queued again while it waits keeps its place: the scoring it waits for reads the
/// new write too.
async fn a_waiting_patient_queued_again_keeps_its_place(kind: StoreKind) {
    let Some((url, _dir)) = common::fresh_database(kind).await else {
        return;
    };
    let store = signaal::store::open(&url).await.unwrap();
    store.queue_patient("first", T0).await.unwrap();
    store.queue_patient("second", T0 + 1).await.unwrap();
    store.queue_patient("first", T0 + 2).await.unwrap();
    let order: Vec<String> = store
        .queued(10, T0 + 2)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.patient)
        .collect();
    assert_eq!(order, ["first", "second"]);
    store.close().await;
}

/// A patient queued again while a server scores it is a new request: once that scoring is
/// done, it waits behind the patients queued before the write.
async fn a_patient_queued_while_scored_goes_behind_those_queued_before(kind: StoreKind) {
    let Some((url, _dir)) = common::fresh_database(kind).await else {
        return;
    };
    let store = signaal::store::open(&url).await.unwrap();
    store.queue_patient("busy", T0).await.unwrap();
    let claimed = store.claim(10, T0 + 10, T0 + 60_010).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store.queue_patient("other", T0 + 20).await.unwrap();
    // Written while being scored, then that scoring settles: it stays queued (a new
    // generation), in line after "other".
    store.queue_patient("busy", T0 + 30).await.unwrap();
    store.dequeue("busy", claimed[0].generation).await.unwrap();
    let order: Vec<String> = store
        .queued(10, T0 + 40)
        .await
        .unwrap()
        .into_iter()
        .map(|q| q.patient)
        .collect();
    assert_eq!(order, ["other", "busy"]);
    store.close().await;
}

/// Patients written again while they are scored, round after round (more of them than a round
/// claims): a patient queued after them is scored in its turn, before any of them is scored a
/// second time.
async fn a_patient_queued_behind_patients_written_over_and_over_is_scored(kind: StoreKind) {
    let Some((url, _dir)) = common::fresh_database(kind).await else {
        return;
    };
    let store = signaal::store::open(&url).await.unwrap();
    const BUSY: i64 = 40;
    for i in 0..BUSY {
        store
            .queue_patient(&format!("busy-{i:02}"), T0 + i)
            .await
            .unwrap();
    }
    store.queue_patient("new", T0 + 100).await.unwrap();
    // The rounds in which each patient was scored.
    let scored: Arc<Mutex<BTreeMap<String, Vec<i64>>>> = Arc::default();
    for round in 1..=BUSY + 1 {
        let now = T0 + 1_000 * round;
        let (store2, scored2) = (store.clone(), scored.clone());
        let claimed = drain(&*store, now, move |queued| {
            let (store, scored) = (store2.clone(), scored2.clone());
            async move {
                if queued.patient.starts_with("busy") {
                    // A write of the patient's data while it is being scored.
                    store.queue_patient(&queued.patient, now).await?;
                }
                scored
                    .lock()
                    .unwrap()
                    .entry(queued.patient)
                    .or_default()
                    .push(round);
                Ok(Scored::Due(None))
            }
        })
        .await
        .unwrap();
        assert!(claimed > 0, "round {round} claimed nobody");
        if scored.lock().unwrap().contains_key("new") {
            break;
        }
    }
    let scored = scored.lock().unwrap().clone();
    let Some(&[new]) = scored.get("new").map(Vec::as_slice) else {
        panic!("not scored once: {scored:?}");
    };
    assert!(
        scored
            .values()
            .all(|rounds| rounds.len() == 1 || rounds[1] >= new),
        "scored again in a round before the new patient's: {scored:?}"
    );
    // The busy patients are all still queued: those scored for the write made meanwhile.
    let still = store.queued(100, T0 + 100_000).await.unwrap();
    assert!(still.iter().all(|q| q.patient != "new"));
    assert_eq!(still.len(), BUSY as usize);
    store.close().await;
}

macro_rules! on_both_stores {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(StoreKind::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(StoreKind::Postgres).await;
            }
        }
    };
}

on_both_stores!(a_waiting_patient_queued_again_keeps_its_place);
on_both_stores!(a_patient_queued_while_scored_goes_behind_those_queued_before);
on_both_stores!(a_patient_queued_behind_patients_written_over_and_over_is_scored);
