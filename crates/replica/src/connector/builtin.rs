//! The built-in connectors: the load generators of [`crate::generator`] on the
//! [`SourceConnector`] API, and the file and object-store sinks of [`crate::sink`] on
//! the [`SinkConnector`] API, with nothing the dataflows treat specially.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use strata_controller_api::{
    ConnectorConfig, LoadGenerator, RelationDesc, SinkConnection, SourceConnection, SourceOutput,
};

use super::{
    ConnectorError, Offset, Pacing, ReaderShare, SinkConnector, SourceConnector, SourceProgress,
    SourceReader, SourceStatus, SourceUpdate, SourceWaker,
};
use crate::generator::{Generator, GeneratorError};

/// The registered kind of the load generators.
pub const LOAD_GENERATOR: &str = "load-generator";
/// The registered kind of the file sink (setting `path`).
pub const FILE: &str = "file";
/// The registered kind of the object-store sink (settings `url` and `prefix`).
pub const OBJECT_STORE: &str = "object-store";

/// The settings a `load-generator` connector accepts.
const SETTINGS: [&str; 6] = [
    "generator",
    "tick_interval_ms",
    "offsets_per_tick",
    "seed",
    "keys",
    "max_ticks",
];

/// The typed connection a `load-generator` connector configuration describes.
///
/// Settings: `generator` (`counter`, `auction` or `key-value`; required),
/// `tick_interval_ms` (default 1000), `offsets_per_tick` (default 1), `seed` (default
/// 0), `keys` (key-value only; required) and `max_ticks` (counter only; optional). An
/// unknown setting is an error, so a misspelt one is not silently ignored.
///
/// # Examples
///
/// ```
/// use strata_controller_api::{ConnectorConfig, LoadGenerator, SourceConnection};
/// use strata_replica::connector::builtin::{LOAD_GENERATOR, load_generator_connection};
/// let config = ConnectorConfig::new(LOAD_GENERATOR)
///     .with("generator", "key-value")
///     .with("keys", "10");
/// let SourceConnection::LoadGenerator { generator, .. } =
///     load_generator_connection(&config).unwrap()
/// else {
///     unreachable!()
/// };
/// assert_eq!(generator, LoadGenerator::KeyValue { keys: 10 });
/// assert!(load_generator_connection(&config.clone().with("seeed", "1")).is_err());
/// ```
pub fn load_generator_connection(
    config: &ConnectorConfig,
) -> Result<SourceConnection, GeneratorError> {
    if config.kind != LOAD_GENERATOR {
        return Err(GeneratorError::NotALoadGenerator {
            kind: config.kind.clone(),
        });
    }
    if let Some(unknown) = config
        .settings
        .keys()
        .find(|name| !SETTINGS.contains(&name.as_str()))
    {
        return Err(invalid(
            unknown,
            format!("unknown setting; known: {}", SETTINGS.join(", ")),
        ));
    }
    let number = |name: &str| -> Result<Option<u64>, GeneratorError> {
        config
            .setting(name)
            .map(|value| {
                value.parse::<u64>().map_err(|e| {
                    invalid(name, format!("{value:?} is not an unsigned integer: {e}"))
                })
            })
            .transpose()
    };
    let generator = match config.setting("generator") {
        Some("counter") => LoadGenerator::Counter {
            max_ticks: number("max_ticks")?,
        },
        Some("auction") => LoadGenerator::Auction,
        Some("key-value") => LoadGenerator::KeyValue {
            keys: number("keys")?.ok_or_else(|| invalid("keys", "required by key-value".into()))?,
        },
        Some(other) => {
            return Err(invalid(
                "generator",
                format!("{other:?} is not one of counter, auction, key-value"),
            ));
        }
        None => return Err(invalid("generator", "required".into())),
    };
    Ok(SourceConnection::LoadGenerator {
        generator,
        tick_interval_ms: number("tick_interval_ms")?.unwrap_or(1000),
        offsets_per_tick: number("offsets_per_tick")?.unwrap_or(1),
        seed: number("seed")?.unwrap_or(0),
    })
}

fn invalid(setting: &str, reason: String) -> GeneratorError {
    GeneratorError::InvalidSetting {
        setting: setting.to_owned(),
        reason,
    }
}

/// The load-generator connector of a connection (typed or by settings).
pub fn load_generator(
    connection: &SourceConnection,
) -> Result<Arc<dyn SourceConnector>, ConnectorError> {
    let generator = Generator::new(connection).map_err(|e| ConnectorError::InvalidConfig {
        kind: LOAD_GENERATOR.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(generator))
}

/// The registry's factory for [`LOAD_GENERATOR`].
pub(super) fn load_generator_factory(
    config: &ConnectorConfig,
) -> Result<Arc<dyn SourceConnector>, ConnectorError> {
    load_generator(&SourceConnection::Connector(config.clone()))
}

impl SourceConnector for Generator {
    fn kind(&self) -> &str {
        LOAD_GENERATOR
    }

    fn outputs(&self) -> Vec<(SourceOutput, RelationDesc)> {
        Generator::outputs(self)
    }

    fn pacing(&self) -> Pacing {
        Pacing {
            tick_interval: Duration::from_millis(self.tick_interval_ms()),
            offsets_per_tick: Some(self.offsets_per_tick()),
        }
    }

    /// A generator's updates are a pure function of the offset.
    fn parallel(&self) -> bool {
        true
    }

    fn open(
        &self,
        _resume: Offset,
        share: ReaderShare,
        _waker: SourceWaker,
    ) -> Result<Box<dyn SourceReader>, ConnectorError> {
        Ok(Box::new(GeneratorReader {
            generator: self.clone(),
            share,
        }))
    }
}

/// A generator needs no upstream: every offset is there, up to its limit.
struct GeneratorReader {
    generator: Generator,
    share: ReaderShare,
}

impl SourceReader for GeneratorReader {
    fn poll(&mut self) -> Result<SourceProgress, ConnectorError> {
        let frontier = self.generator.offset_limit().unwrap_or(Offset::MAX);
        Ok(SourceProgress {
            frontier,
            upstream: None,
            status: SourceStatus::Running,
        })
    }

    fn read(
        &mut self,
        range: Range<Offset>,
        emit: &mut dyn FnMut(SourceUpdate),
    ) -> Result<(), ConnectorError> {
        for offset in range.filter(|o| self.share.owns(*o)) {
            for (output, row, diff) in self.generator.updates_at(offset) {
                emit(SourceUpdate {
                    offset,
                    output,
                    row,
                    diff,
                });
            }
        }
        Ok(())
    }
}

/// The connector configuration of a sink connection: a typed built-in as its kind's
/// settings, a registered connector as it is.
pub fn sink_config(connection: &SinkConnection) -> ConnectorConfig {
    match connection {
        SinkConnection::File { path } => ConnectorConfig::new(FILE).with("path", path.as_str()),
        SinkConnection::ObjectStore { url, prefix } => ConnectorConfig::new(OBJECT_STORE)
            .with("url", url.as_str())
            .with("prefix", prefix.as_str()),
        SinkConnection::Connector(config) => config.clone(),
    }
}

/// The settings of `config` named `names`, in order; any other setting, or a missing
/// one, is an error. For connectors whose settings are all required.
pub(crate) fn exact_settings<'a, const N: usize>(
    config: &'a ConnectorConfig,
    names: [&str; N],
) -> Result<[&'a str; N], ConnectorError> {
    let invalid = |reason: String| ConnectorError::InvalidConfig {
        kind: config.kind.clone(),
        reason,
    };
    if let Some(unknown) = config
        .settings
        .keys()
        .find(|k| !names.contains(&k.as_str()))
    {
        return Err(invalid(format!(
            "unknown setting {unknown:?}; known: {}",
            names.join(", ")
        )));
    }
    let mut values = [""; N];
    for (value, name) in values.iter_mut().zip(names) {
        *value = config
            .setting(name)
            .ok_or_else(|| invalid(format!("the {name:?} setting is required")))?;
    }
    Ok(values)
}

/// The registry's factory for [`FILE`].
pub(super) fn file_sink_factory(
    config: &ConnectorConfig,
) -> Result<Arc<dyn SinkConnector>, ConnectorError> {
    let [path] = exact_settings(config, ["path"])?;
    let connector = crate::sink::file::FileSinkConnector::new(path).map_err(|e| {
        ConnectorError::InvalidConfig {
            kind: FILE.to_owned(),
            reason: e.to_string(),
        }
    })?;
    Ok(Arc::new(connector))
}

/// The registry's factory for [`OBJECT_STORE`] (needs the `persist` feature).
pub(super) fn object_store_sink_factory(
    config: &ConnectorConfig,
) -> Result<Arc<dyn SinkConnector>, ConnectorError> {
    let [url, prefix] = exact_settings(config, ["url", "prefix"])?;
    object_store_sink(url, prefix)
}

#[cfg(feature = "persist")]
fn object_store_sink(url: &str, prefix: &str) -> Result<Arc<dyn SinkConnector>, ConnectorError> {
    let connector =
        crate::sink::object_store::ObjectStoreSinkConnector::new(url, prefix).map_err(|e| {
            ConnectorError::InvalidConfig {
                kind: OBJECT_STORE.to_owned(),
                reason: e.to_string(),
            }
        })?;
    Ok(Arc::new(connector))
}

#[cfg(not(feature = "persist"))]
fn object_store_sink(url: &str, _prefix: &str) -> Result<Arc<dyn SinkConnector>, ConnectorError> {
    Err(ConnectorError::InvalidConfig {
        kind: OBJECT_STORE.to_owned(),
        reason: format!(
            "an object-store sink to {url} needs a replica built with the persist feature"
        ),
    })
}
