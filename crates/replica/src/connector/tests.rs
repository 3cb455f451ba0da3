#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use strata_controller_api::{ConnectorConfig, LoadGenerator, SourceConnection};

use super::builtin::{LOAD_GENERATOR, load_generator_connection};
use super::{
    ConnectorError, ConnectorRegistry, ReaderShare, SourceConnector, SourceUpdate, SourceWaker,
};
use crate::generator::{Generator, GeneratorError};

fn auction_settings() -> ConnectorConfig {
    ConnectorConfig::new(LOAD_GENERATOR)
        .with("generator", "auction")
        .with("seed", "7")
        .with("offsets_per_tick", "3")
        .with("tick_interval_ms", "0")
}

fn read_all(
    connector: &dyn SourceConnector,
    share: ReaderShare,
    offsets: std::ops::Range<u64>,
) -> Vec<SourceUpdate> {
    let mut reader = connector
        .open(offsets.start, share, SourceWaker::noop())
        .unwrap();
    let frontier = reader.poll().unwrap().frontier;
    assert!(frontier >= offsets.end);
    let mut updates = Vec::new();
    reader.read(offsets, &mut |u| updates.push(u)).unwrap();
    updates
}

#[test]
fn settings_describe_the_same_generator_as_the_typed_connection() {
    let typed = SourceConnection::LoadGenerator {
        generator: LoadGenerator::Auction,
        tick_interval_ms: 0,
        offsets_per_tick: 3,
        seed: 7,
    };
    assert_eq!(
        load_generator_connection(&auction_settings()).unwrap(),
        typed
    );
    let registry = ConnectorRegistry::default();
    let by_settings = registry
        .source(&SourceConnection::Connector(auction_settings()))
        .unwrap();
    let by_type = registry.source(&typed).unwrap();
    assert_eq!(by_settings.outputs(), by_type.outputs());
    assert_eq!(by_settings.pacing(), by_type.pacing());
    let a = read_all(by_settings.as_ref(), ReaderShare::WHOLE, 0..20);
    let b = read_all(by_type.as_ref(), ReaderShare::WHOLE, 0..20);
    assert!(!a.is_empty());
    assert_eq!(a, b);
}

#[test]
fn bad_settings_are_typed_errors_that_name_the_setting() {
    let base = ConnectorConfig::new(LOAD_GENERATOR);
    let cases: Vec<(ConnectorConfig, &str)> = vec![
        (base.clone(), "generator"),
        (base.clone().with("generator", "lottery"), "generator"),
        (base.clone().with("generator", "key-value"), "keys"),
        (
            base.clone()
                .with("generator", "key-value")
                .with("keys", "ten"),
            "keys",
        ),
        (
            base.clone().with("generator", "counter").with("seed", "-1"),
            "seed",
        ),
        (
            base.clone().with("generator", "counter").with("sed", "1"),
            "sed",
        ),
    ];
    for (config, setting) in cases {
        match load_generator_connection(&config) {
            Err(GeneratorError::InvalidSetting { setting: named, .. }) => {
                assert_eq!(named, setting, "{config:?}");
            }
            other => panic!("{config:?}: expected an invalid {setting}, got {other:?}"),
        }
    }
    // Parsed but out of range: the generator's own validation still applies.
    let zero_keys = base
        .clone()
        .with("generator", "key-value")
        .with("keys", "0");
    assert!(matches!(
        ConnectorRegistry::default().source(&SourceConnection::Connector(zero_keys)),
        Err(ConnectorError::InvalidConfig { .. })
    ));
    assert!(matches!(
        Generator::new(&SourceConnection::Connector(ConnectorConfig::new(
            "postgres"
        ))),
        Err(GeneratorError::NotALoadGenerator { .. })
    ));
}

#[derive(Debug)]
struct Nothing;

impl SourceConnector for Nothing {
    fn kind(&self) -> &str {
        "nothing"
    }

    fn outputs(
        &self,
    ) -> Vec<(
        strata_controller_api::SourceOutput,
        strata_controller_api::RelationDesc,
    )> {
        Vec::new()
    }

    fn open(
        &self,
        _resume: u64,
        _share: ReaderShare,
        _waker: SourceWaker,
    ) -> Result<Box<dyn super::SourceReader>, ConnectorError> {
        Err(ConnectorError::Upstream {
            kind: "nothing".into(),
            reason: "never opens".into(),
        })
    }
}

#[test]
fn the_registry_finds_kinds_and_refuses_unknown_and_duplicate_ones() {
    let mut registry = ConnectorRegistry::default();
    // The built-ins (the Postgres source too, with the `postgres` feature).
    let builtins: Vec<String> = registry.source_kinds().map(str::to_owned).collect();
    assert!(builtins.iter().any(|k| k == LOAD_GENERATOR), "{builtins:?}");
    let unknown = SourceConnection::Connector(ConnectorConfig::new("nothing"));
    match registry.source(&unknown) {
        Err(ConnectorError::UnknownKind { kind, known }) => {
            assert_eq!(kind, "nothing");
            assert_eq!(known, builtins.join(", "));
        }
        Ok(_) => panic!("an unregistered kind was found"),
        Err(other) => panic!("wrong error {other:?}"),
    }
    registry
        .register_source("nothing", |_| {
            Ok(Arc::new(Nothing) as Arc<dyn SourceConnector>)
        })
        .unwrap();
    assert_eq!(registry.source(&unknown).unwrap().kind(), "nothing");
    assert_eq!(
        registry.register_source("nothing", |_| Ok(
            Arc::new(Nothing) as Arc<dyn SourceConnector>
        )),
        Err(ConnectorError::DuplicateKind {
            kind: "nothing".into()
        })
    );
    let mut expected = builtins.clone();
    expected.push("nothing".to_owned());
    expected.sort();
    assert_eq!(
        registry
            .source_kinds()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        expected
    );
    assert!(ConnectorRegistry::empty().source(&unknown).is_err());
}

#[test]
fn parallel_shares_partition_every_range() {
    let connector = ConnectorRegistry::default()
        .source(&SourceConnection::Connector(auction_settings()))
        .unwrap();
    assert!(connector.parallel());
    let whole = read_all(connector.as_ref(), ReaderShare::WHOLE, 5..40);
    let mut shared: Vec<SourceUpdate> = (0..3)
        .flat_map(|worker| read_all(connector.as_ref(), ReaderShare { worker, peers: 3 }, 5..40))
        .collect();
    shared.sort_by_key(|u| u.offset);
    assert_eq!(shared, whole);
    assert!(whole.iter().all(|u| (5..40).contains(&u.offset)));
}

#[test]
fn reader_share_owns_offsets_round_robin() {
    let cases = [
        (ReaderShare::WHOLE, 17, true),
        (
            ReaderShare {
                worker: 0,
                peers: 2,
            },
            4,
            true,
        ),
        (
            ReaderShare {
                worker: 1,
                peers: 2,
            },
            4,
            false,
        ),
        (
            ReaderShare {
                worker: 1,
                peers: 2,
            },
            5,
            true,
        ),
        (
            ReaderShare {
                worker: 0,
                peers: 0,
            },
            5,
            true,
        ),
    ];
    for (share, offset, owns) in cases {
        assert_eq!(share.owns(offset), owns, "{share:?} {offset}");
    }
}
