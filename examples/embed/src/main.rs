//! An embedding host, written from `docs/QUICKSTART.md` alone and using only public
//! items of its one Strata dependency: a controller on a file location with an
//! in-process replica; a table written, read, held, dropped and checked gone; a
//! counter source; then a restart that finds the table's rows and not the dropped one.
//!
//! `cargo xtask test` runs it; by hand: `cargo run --manifest-path examples/embed/Cargo.toml`.

use std::error::Error;
use std::time::{Duration, Instant};

use strata_controller_core::api::{
    CollectionDescription, Collections, Datum, GlobalId, InstanceId, Instances, Lifecycle,
    LoadGenerator, Reads, RelationDesc, ReplicaConfig, ReplicaId, ReplicaLocation, Row,
    ScalarType, SourceConnection, StorageError, StorageMetadata, Tables, Timestamp,
};
use strata_controller_core::embed::{InProcessReplicas, LoadGeneratorSource};
use strata_controller_core::{Controller, ControllerConfig};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

const KEPT: GlobalId = GlobalId::User(1);
const DROPPED: GlobalId = GlobalId::User(2);
const COUNTER: GlobalId = GlobalId::User(10);
const COUNTER_PROGRESS: GlobalId = GlobalId::User(11);
const INSTANCE: InstanceId = InstanceId(1);

fn desc() -> RelationDesc {
    RelationDesc::builder()
        .with_column("id", ScalarType::Int64.nullable(false))
        .with_column("text", ScalarType::String.nullable(false))
        .finish()
}

fn row(id: i64, text: &str) -> Row {
    Row::pack(&[Datum::Int64(id), Datum::String(text.into())])
}

/// A controller on `url` with one in-process replica.
async fn open(url: &str) -> Result<(Controller<Timestamp>, InProcessReplicas)> {
    let replicas = InProcessReplicas::new(url);
    let config = ControllerConfig {
        connector_factory: Some(replicas.connector_factory()),
        ..ControllerConfig::default()
    };
    let mut ctl = Controller::<Timestamp>::open_durable(config, url).await?;
    ctl.create_instance(INSTANCE)?;
    let location = ReplicaLocation::InProcess { workers: 1 };
    ctl.connect_replica(INSTANCE, ReplicaId(1), ReplicaConfig { location })?;
    Ok((ctl, replicas))
}

async fn create_tables(ctl: &mut Controller<Timestamp>, ids: &[GlobalId]) -> Result<()> {
    let tables = ids
        .iter()
        .map(|id| (*id, CollectionDescription::table(desc())))
        .collect();
    ctl.create_collections(&StorageMetadata::default(), Some(Timestamp::new(0)), tables)
        .await?;
    Ok(())
}

/// Writes `rows` to `id` at the time that joins the next group commit.
async fn write(ctl: &mut Controller<Timestamp>, id: GlobalId, rows: Vec<Row>) -> Result<Timestamp> {
    loop {
        let at = ctl.table_write_ts().ok_or("the tables are closed")?;
        let advance = Timestamp::new(at.as_millis() + 1);
        let updates = rows.iter().map(|r| (r.clone(), 1)).collect();
        match ctl.append_table(at, advance, vec![(id, updates)])?.await {
            Ok(()) => return Ok(at),
            // A commit started in between: ask for a new time.
            Err(StorageError::UpdateBeforeUpper { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}

/// Runs the event loop until `id`'s upper passes `past`, for at most a minute.
async fn run_until_upper(ctl: &mut Controller<Timestamp>, id: GlobalId, past: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(50), ctl.ready()).await;
        while ctl.process()?.is_some() {}
        let upper = ctl.collection_frontiers(id)?.upper;
        if upper.as_option().is_some_and(|t| t.as_millis() > past) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{id}'s upper stayed at {upper:?}").into());
        }
    }
}

async fn first_life(url: &str) -> Result<()> {
    let (mut ctl, replicas) = open(url).await?;
    create_tables(&mut ctl, &[KEPT, DROPPED]).await?;
    let counter = SourceConnection::LoadGenerator {
        generator: LoadGenerator::Counter { max_ticks: None },
        tick_interval_ms: 10,
        offsets_per_tick: 1,
        seed: 0,
    };
    let source = LoadGeneratorSource::new(COUNTER, COUNTER_PROGRESS, INSTANCE, counter);
    ctl.create_collections(&StorageMetadata::default(), None, source.descriptions()?)
        .await?;
    // Replicas start sources only after this.
    ctl.initialization_complete();

    let at = write(&mut ctl, KEPT, vec![row(1, "hello"), row(2, "world")]).await?;
    assert_eq!(ctl.snapshot(KEPT, at).await?.len(), 2);

    let before_drop = write(&mut ctl, DROPPED, vec![row(3, "short-lived")]).await?;
    let hold = ctl.acquire_read_holds(vec![DROPPED])?;
    let drop_at = ctl.table_write_ts().ok_or("the tables are closed")?;
    ctl.drop_tables(vec![DROPPED], drop_at).await?;
    // Durable now; still readable before the drop while the hold lives.
    assert!(!ctl.catalog_contents().collection_metadata.contains_key(&DROPPED));
    assert_eq!(ctl.snapshot(DROPPED, before_drop).await?.len(), 1);
    drop(hold);

    run_until_upper(&mut ctl, COUNTER, 5).await?;
    let counted = ctl.snapshot_latest(COUNTER).await?;
    println!("the counter source produced {} rows", counted.len());
    assert!(!counted.is_empty());

    ctl.close().await;
    replicas.shutdown();
    Ok(())
}

async fn second_life(url: &str) -> Result<()> {
    let (mut ctl, replicas) = open(url).await?;
    // Re-creating a collection with the same id and description continues its shard.
    create_tables(&mut ctl, &[KEPT]).await?;
    let rows = ctl.snapshot_latest(KEPT).await?;
    println!("after the restart {KEPT} holds {} rows", rows.len());
    assert_eq!(rows.len(), 2);
    assert!(!ctl.catalog_contents().collection_metadata.contains_key(&DROPPED));
    ctl.close().await;
    replicas.shutdown();
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("strata-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("file://{}", dir.display());
    let outcome = async {
        first_life(&url).await?;
        second_life(&url).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    outcome?;
    println!("embed example: ok");
    Ok(())
}
