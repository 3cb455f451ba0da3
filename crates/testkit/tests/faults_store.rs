//! `FaultyObjectStore` over `InMemory`: transparency, total failure, indeterminate
//! writes, determinism, unavailability windows and counters.

#![cfg(test)]

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use strata_testkit::faults::{
    FaultConfig, FaultCounters, FaultyObjectStore, InjectedFault, OpClass, PerClass,
};

type Step = (&'static str, object_store::Result<String>);

fn faulty(seed: u64) -> (Arc<InMemory>, FaultyObjectStore) {
    let inner = Arc::new(InMemory::new());
    let store = FaultyObjectStore::new(Arc::clone(&inner) as Arc<dyn ObjectStore>, seed);
    (inner, store)
}

async fn seed_objects(store: &dyn ObjectStore) {
    for (path, data) in [("a/1", "hello"), ("a/2", "world"), ("b/3", "!")] {
        store.put(&Path::from(path), data.into()).await.unwrap();
    }
}

/// Every key and its contents, sorted.
async fn contents(store: &dyn ObjectStore) -> Vec<(String, String)> {
    let metas: Vec<_> = store.list(None).try_collect().await.unwrap();
    let mut out = Vec::new();
    for meta in metas {
        let bytes = store
            .get(&meta.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        out.push((
            meta.location.to_string(),
            String::from_utf8(bytes.to_vec()).unwrap(),
        ));
    }
    out.sort();
    out
}

fn sorted_locations(metas: Vec<object_store::ObjectMeta>) -> String {
    let mut names: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
    names.sort();
    names.join(",")
}

/// Calls every method of the trait (directly or through `ObjectStoreExt`) once, on a
/// store that holds the seed objects, and records what each returned.
async fn exercise(store: &dyn ObjectStore) -> Vec<Step> {
    let p = Path::from;
    let text = |b: bytes::Bytes| String::from_utf8(b.to_vec()).unwrap();
    let mut steps: Vec<Step> = Vec::new();
    let put = store.put(&p("c/new"), "data".into()).await;
    steps.push(("put", put.map(|_| "ok".into())));
    let create = store
        .put_opts(&p("c/created"), "x".into(), PutMode::Create.into())
        .await;
    steps.push(("put create new", create.map(|_| "ok".into())));
    let exists = store
        .put_opts(&p("a/1"), "x".into(), PutMode::Create.into())
        .await;
    steps.push(("put create existing", exists.map(|_| "ok".into())));
    let get = match store.get(&p("a/1")).await {
        Ok(r) => r.bytes().await.map(text),
        Err(e) => Err(e),
    };
    steps.push(("get", get));
    steps.push((
        "get missing",
        store.get(&p("nope")).await.map(|_| "found".into()),
    ));
    let range = store.get_range(&p("a/1"), 1..3).await.map(text);
    steps.push(("get_range", range));
    let ranges = store.get_ranges(&p("a/1"), &[0..1, 3..5]).await;
    let ranges = ranges.map(|rs| rs.into_iter().map(text).collect::<Vec<_>>().join("|"));
    steps.push(("get_ranges", ranges));
    let head = store.head(&p("a/2")).await.map(|m| m.size.to_string());
    steps.push(("head", head));
    let list = store.list(Some(&p("a"))).try_collect().await;
    steps.push(("list", list.map(sorted_locations)));
    let offset = store.list_with_offset(Some(&p("a")), &p("a/1"));
    steps.push((
        "list_with_offset",
        offset.try_collect().await.map(sorted_locations),
    ));
    let delimited = store.list_with_delimiter(None).await.map(|r| {
        let prefixes: Vec<String> = r.common_prefixes.iter().map(|p| p.to_string()).collect();
        format!("{prefixes:?} {}", sorted_locations(r.objects))
    });
    steps.push(("list_with_delimiter", delimited));
    let copy = store.copy(&p("a/1"), &p("d/copy")).await;
    steps.push(("copy", copy.map(|()| "ok".into())));
    let copy_new = store.copy_if_not_exists(&p("a/1"), &p("a/2")).await;
    steps.push(("copy_if_not_exists", copy_new.map(|()| "ok".into())));
    let rename = store.rename(&p("a/2"), &p("d/renamed")).await;
    steps.push(("rename", rename.map(|()| "ok".into())));
    let rename_new = store.rename_if_not_exists(&p("b/3"), &p("d/copy")).await;
    steps.push(("rename_if_not_exists", rename_new.map(|()| "ok".into())));
    steps.push(("multipart", multipart(store, "e/multi", true).await));
    steps.push((
        "multipart abort",
        multipart(store, "e/aborted", false).await,
    ));
    let delete = store.delete(&p("a/1")).await;
    steps.push(("delete", delete.map(|()| "ok".into())));
    let locations = futures::stream::iter([Ok(p("b/3")), Ok(p("c/new"))]).boxed();
    let results: Vec<_> = store.delete_stream(locations).collect().await;
    for result in results {
        steps.push(("delete_stream", result.map(|l| l.to_string())));
    }
    steps
}

async fn multipart(
    store: &dyn ObjectStore,
    path: &str,
    complete: bool,
) -> object_store::Result<String> {
    let mut upload = store.put_multipart(&Path::from(path)).await?;
    upload.put_part(PutPayload::from("ab")).await?;
    upload.put_part(PutPayload::from("cd")).await?;
    if complete {
        upload.complete().await.map(|_| "ok".into())
    } else {
        upload.abort().await.map(|()| "aborted".into())
    }
}

fn render(steps: &[Step]) -> Vec<(&'static str, Result<String, String>)> {
    steps
        .iter()
        .map(|(name, r)| {
            (
                *name,
                match r {
                    Ok(text) => Ok(text.clone()),
                    Err(e) => Err(e.to_string()),
                },
            )
        })
        .collect()
}

#[tokio::test]
async fn zero_rates_are_transparent_for_every_method() {
    let plain = InMemory::new();
    seed_objects(&plain).await;
    let expected = render(&exercise(&plain).await);

    let (inner, store) = faulty(1);
    // Explicit zeros, not just the default.
    store.handle().set_config(
        FaultConfig::default()
            .with_error_rate_all(0.0)
            .with_indeterminate_rate(0.0),
    );
    seed_objects(&store).await;
    let got = render(&exercise(&store).await);
    assert_eq!(got, expected);
    assert_eq!(contents(&store).await, contents(&plain).await);
    assert_eq!(contents(inner.as_ref()).await, contents(&plain).await);

    // The inner store's own errors pass through untouched.
    let not_injected = [
        "put create existing",
        "get missing",
        "copy_if_not_exists",
        "rename_if_not_exists",
    ];
    for (name, result) in exercise_errors(&got) {
        assert!(not_injected.contains(&name), "{name}: {result}");
    }
    let counters = store.handle().counters();
    assert_eq!(counters.total_faults(), 0);
    assert!(counters.calls.total() > 20, "{counters:?}");
    // The expected outcomes are what InMemory does, so a sanity check of a few.
    assert!(got.contains(&("get", Ok("hello".into()))));
    assert!(got.contains(&("get_ranges", Ok("h|lo".into()))));
}

fn exercise_errors(
    steps: &[(&'static str, Result<String, String>)],
) -> Vec<(&'static str, String)> {
    steps
        .iter()
        .filter_map(|(name, r)| r.as_ref().err().map(|e| (*name, e.clone())))
        .collect()
}

#[tokio::test]
async fn full_rates_fail_every_call_without_touching_the_inner_store() {
    let (inner, store) = faulty(2);
    seed_objects(inner.as_ref()).await;
    let before = contents(inner.as_ref()).await;
    store.handle().set_error_rate_all(1.0);
    let steps = exercise(&store).await;
    for (name, result) in &steps {
        let err = result.as_ref().expect_err(name);
        let fault = InjectedFault::of(err).unwrap_or_else(|| panic!("{name}: {err}"));
        assert!(
            matches!(fault, InjectedFault::Determinate { .. }),
            "{name}: {fault}"
        );
        let object_store::Error::Generic { store, .. } = err else {
            panic!("{name}: not a generic error: {err:?}");
        };
        assert_eq!(*store, "faulty");
    }
    assert_eq!(contents(inner.as_ref()).await, before);
    let counters = store.handle().counters();
    assert_eq!(counters.determinate.total(), steps.len() as u64);
    assert_eq!(counters.calls, counters.determinate);
}

#[tokio::test]
async fn multipart_parts_and_completion_fail_on_their_own() {
    let (inner, store) = faulty(3);
    let mut upload = store.put_multipart(&Path::from("m")).await.unwrap();
    upload.put_part("ab".into()).await.unwrap();
    store.handle().set_error_rate(OpClass::Write, 1.0);
    let part = upload.put_part("cd".into()).await.unwrap_err();
    assert!(InjectedFault::of(&part).unwrap().is_determinate());
    let complete = upload.complete().await.unwrap_err();
    assert!(InjectedFault::of(&complete).unwrap().is_determinate());
    assert!(
        inner.head(&Path::from("m")).await.is_err(),
        "nothing was completed"
    );
    store.handle().clear_faults();
    upload.complete().await.unwrap();
    let bytes = inner
        .get(&Path::from("m"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], b"ab", "the refused part was never sent");
}

#[tokio::test]
async fn indeterminate_writes_are_applied_although_they_fail() {
    let (inner, store) = faulty(4);
    let handle = store.handle();
    handle.set_indeterminate_rate(1.0);
    let path = Path::from("x/y");

    let err = store
        .put_opts(&path, "v1".into(), PutMode::Create.into())
        .await
        .unwrap_err();
    let fault = InjectedFault::of(&err).unwrap();
    assert!(
        matches!(fault, InjectedFault::Indeterminate { op: "put", .. }),
        "{fault}"
    );
    assert_eq!(
        fault.certainty(),
        strata_controller_api::Certainty::Indeterminate
    );
    // Visible behind the faults and through them.
    let bytes = inner.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&bytes[..], b"v1");
    let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&bytes[..], b"v1", "reads are not mutations");
    // A retry of the conditional put now meets the first attempt.
    let retry = store
        .put_opts(&path, "v1".into(), PutMode::Create.into())
        .await;
    assert!(
        matches!(retry, Err(object_store::Error::AlreadyExists { .. })),
        "{retry:?}"
    );

    // Copies, renames, deletes and multipart completions behave the same way.
    assert!(store.copy(&path, &Path::from("copy")).await.is_err());
    assert!(
        store
            .rename(&Path::from("copy"), &Path::from("moved"))
            .await
            .is_err()
    );
    assert!(store.delete(&path).await.is_err());
    let mut upload = store.put_multipart(&Path::from("multi")).await.unwrap();
    upload.put_part("m".into()).await.unwrap();
    assert!(upload.complete().await.is_err());
    let keys: Vec<_> = contents(inner.as_ref()).await;
    assert_eq!(
        keys,
        vec![("moved".into(), "v1".into()), ("multi".into(), "m".into())]
    );

    let counters = handle.counters();
    assert_eq!(counters.indeterminate.write, 4);
    assert_eq!(counters.indeterminate.delete, 1);
    assert_eq!(counters.determinate.total(), 0);
}

/// A mixed workload, classified call by call.
async fn workload(store: &FaultyObjectStore, calls: usize) -> Vec<(OpClass, String)> {
    let mut outcomes = Vec::new();
    for i in 0..calls {
        let path = Path::from(format!("k/{}", i % 7));
        let (class, result) = match i % 4 {
            0 => (
                OpClass::Write,
                store.put(&path, "v".into()).await.map(|_| ()),
            ),
            1 => (OpClass::Read, store.head(&path).await.map(|_| ())),
            2 => {
                let listed: object_store::Result<Vec<_>> = store.list(None).try_collect().await;
                (OpClass::List, listed.map(|_| ()))
            }
            _ => (OpClass::Delete, store.delete(&path).await),
        };
        let outcome = match &result {
            Ok(()) => "ok".to_owned(),
            Err(err) => match InjectedFault::of(err) {
                Some(InjectedFault::Determinate { .. }) => "determinate".to_owned(),
                Some(InjectedFault::Indeterminate { .. }) => "indeterminate".to_owned(),
                Some(InjectedFault::Unavailable { .. }) => "unavailable".to_owned(),
                Some(other) => format!("other fault {other}"),
                None => "inner error".to_owned(),
            },
        };
        outcomes.push((class, outcome));
    }
    outcomes
}

fn noisy() -> FaultConfig {
    FaultConfig::default()
        .with_error_rate_all(0.3)
        .with_indeterminate_rate(0.2)
}

#[tokio::test]
async fn the_same_seed_gives_the_same_fault_sequence() {
    let run = |seed| async move {
        let (_, store) = faulty(seed);
        store.handle().set_config(noisy());
        workload(&store, 200).await
    };
    let first = run(42).await;
    assert_eq!(first, run(42).await);
    assert_ne!(first, run(43).await);
    let faults = first.iter().filter(|(_, o)| o != "ok").count();
    assert!(
        faults > 20,
        "a 30% rate over 200 calls injects faults: {faults}"
    );
}

#[tokio::test]
async fn counters_match_the_faults_callers_see() {
    let (_, store) = faulty(7);
    store.handle().set_config(noisy());
    let outcomes = workload(&store, 400).await;
    let mut seen = FaultCounters::default();
    for (class, outcome) in &outcomes {
        *seen.calls.get_mut(*class) += 1;
        let bucket = match outcome.as_str() {
            "determinate" => &mut seen.determinate,
            "indeterminate" => &mut seen.indeterminate,
            "unavailable" => &mut seen.unavailable,
            "ok" | "inner error" => continue,
            other => panic!("unexpected outcome {other}"),
        };
        *bucket.get_mut(*class) += 1;
    }
    let counters = store.handle().counters();
    assert_eq!(counters, seen);
    assert_eq!(
        counters.indeterminate.read, 0,
        "reads are never indeterminate"
    );
    assert_eq!(
        counters.indeterminate.list, 0,
        "lists are never indeterminate"
    );
    assert!(counters.indeterminate.write > 0 && counters.determinate.list > 0);
    store.handle().reset_counters();
    assert_eq!(store.handle().counters(), FaultCounters::default());
}

#[tokio::test]
async fn the_manual_switch_fails_everything_until_lifted() {
    let (inner, store) = faulty(8);
    seed_objects(inner.as_ref()).await;
    let handle = store.handle();
    handle.set_unavailable(true);
    assert!(handle.is_unavailable());
    let steps = exercise(&store).await;
    for (name, result) in &steps {
        let err = result.as_ref().expect_err(name);
        let fault = InjectedFault::of(err).unwrap();
        assert!(
            matches!(fault, InjectedFault::Unavailable { .. }),
            "{name}: {fault}"
        );
    }
    let counters = handle.counters();
    assert_eq!(counters.unavailable.total(), steps.len() as u64);
    assert_eq!(counters.determinate.total(), 0);

    handle.set_unavailable(false);
    assert!(!handle.is_unavailable());
    let plain = InMemory::new();
    seed_objects(&plain).await;
    let expected = render(&exercise(&plain).await);
    assert_eq!(render(&exercise(&store).await), expected, "lifts cleanly");
}

#[tokio::test(start_paused = true)]
async fn a_time_window_fails_everything_until_it_ends() {
    let (inner, store) = faulty(9);
    seed_objects(inner.as_ref()).await;
    let handle = store.handle();
    handle.unavailable_for(Duration::from_secs(10));
    tokio::time::advance(Duration::from_secs(9)).await;
    let steps = exercise(&store).await;
    assert!(steps.iter().all(|(_, r)| {
        r.as_ref()
            .err()
            .and_then(InjectedFault::of)
            .is_some_and(|f| matches!(f, InjectedFault::Unavailable { .. }))
    }));
    assert!(handle.is_unavailable());

    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(!handle.is_unavailable());
    let plain = InMemory::new();
    seed_objects(&plain).await;
    assert_eq!(
        render(&exercise(&store).await),
        render(&exercise(&plain).await)
    );

    // A window and the switch are independent; lifting clears both.
    handle.unavailable_for(Duration::from_secs(60));
    handle.set_unavailable(true);
    handle.set_unavailable(false);
    assert!(handle.is_unavailable(), "the window is still open");
    handle.make_available();
    assert!(!handle.is_unavailable());
    assert!(store.head(&Path::from("d/renamed")).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn latency_delays_calls_on_tokios_clock() {
    let (_, store) = faulty(10);
    let handle = store.handle();
    handle.set_latency(Duration::from_secs(5), Duration::from_secs(2));
    let start = tokio::time::Instant::now();
    store.put(&Path::from("p"), "v".into()).await.unwrap();
    let listed: Vec<_> = store.list(None).try_collect().await.unwrap();
    assert_eq!(listed.len(), 1);
    // The paused clock only moves by the injected sleeps: two calls, each 5 to 7 s.
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited <= Duration::from_secs(14),
        "{waited:?}"
    );
    assert_eq!(handle.counters().delayed, 2);
    assert_eq!(
        handle.counters().calls,
        PerClass {
            read: 0,
            write: 1,
            list: 1,
            delete: 0
        }
    );
}
