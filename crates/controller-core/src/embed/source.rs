//! [`LoadGeneratorSource`]: the collections of a load-generator source, described in
//! one place.

use strata_controller_api::{
    CollectionDescription, DataSource, GlobalId, IngestionDescription, InstanceId,
    SourceConnection, SourceOutput, StorageError, StorageTimestamp,
};
use strata_replica::generator::Generator;

/// A load-generator source: its ingestion (which receives the primary output), its
/// progress collection (the remap shard that binds offsets to times) and any
/// subsources, each receiving one named output. [`LoadGeneratorSource::descriptions`]
/// gives every collection to pass to one `create_collections` call.
///
/// # Examples
///
/// ```
/// use strata_controller_api::{GlobalId, InstanceId, LoadGenerator, SourceConnection, SourceOutput, Timestamp};
/// use strata_controller_core::embed::LoadGeneratorSource;
/// let auction = SourceConnection::LoadGenerator {
///     generator: LoadGenerator::Auction,
///     tick_interval_ms: 100,
///     offsets_per_tick: 10,
///     seed: 7,
/// };
/// let source = LoadGeneratorSource::new(GlobalId::User(10), GlobalId::User(11), InstanceId(1), auction)
///     .subsource(GlobalId::User(12), SourceOutput::Named("bids".into()));
/// let collections = source.descriptions::<Timestamp>().unwrap();
/// assert_eq!(collections.len(), 3);
/// // A subsource the generator does not have is a typed error, not a panic.
/// let bad = source.subsource(GlobalId::User(13), SourceOutput::Named("nope".into()));
/// assert!(bad.descriptions::<Timestamp>().is_err());
/// ```
#[derive(Debug, Clone)]
pub struct LoadGeneratorSource {
    ingestion: GlobalId,
    progress: GlobalId,
    instance: InstanceId,
    connection: SourceConnection,
    subsources: Vec<(GlobalId, SourceOutput)>,
}

impl LoadGeneratorSource {
    /// A source `ingestion` run on `instance`, binding its offsets in `progress`.
    pub fn new(
        ingestion: GlobalId,
        progress: GlobalId,
        instance: InstanceId,
        connection: SourceConnection,
    ) -> Self {
        LoadGeneratorSource {
            ingestion,
            progress,
            instance,
            connection,
            subsources: Vec::new(),
        }
    }

    /// Adds subsource `id`, which receives the generator's `output`.
    pub fn subsource(mut self, id: GlobalId, output: SourceOutput) -> Self {
        self.subsources.push((id, output));
        self
    }

    /// Every collection of the source, progress collection first.
    ///
    /// # Errors
    ///
    /// [`StorageError::InvalidUsage`] if the connection is not a load generator the
    /// replica knows, or names an output the generator does not have.
    pub fn descriptions<T: StorageTimestamp>(
        &self,
    ) -> Result<Vec<(GlobalId, CollectionDescription<T>)>, StorageError<T>> {
        let invalid = |e: &dyn std::fmt::Display| StorageError::InvalidUsage(e.to_string());
        let generator = Generator::new(&self.connection).map_err(|e| invalid(&e))?;
        let desc_of =
            |output: &SourceOutput| generator.output_desc(output).map_err(|e| invalid(&e));
        let ingestion = IngestionDescription {
            connection: self.connection.clone(),
            instance_id: self.instance,
            remap_collection_id: self.progress,
            source_exports: Default::default(),
            as_of: None,
        };
        let mut out = vec![
            (
                self.progress,
                CollectionDescription::for_source(
                    strata_replica::remap::remap_desc(),
                    DataSource::Progress,
                ),
            ),
            (
                self.ingestion,
                CollectionDescription::for_source(
                    desc_of(&SourceOutput::Primary)?,
                    DataSource::Ingestion(ingestion),
                ),
            ),
        ];
        for (id, output) in &self.subsources {
            out.push((
                *id,
                CollectionDescription::for_source(
                    desc_of(output)?,
                    DataSource::IngestionExport {
                        ingestion_id: self.ingestion,
                        output: output.clone(),
                    },
                ),
            ));
        }
        Ok(out)
    }
}
