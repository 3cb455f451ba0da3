//! `strata replica` as a process: it serves instance-client's gRPC client when the
//! token is right, refuses it when it is wrong, writes to persist, and exits 0 on
//! SIGTERM.

#![cfg(test)]

mod common;

use std::collections::BTreeMap;

use common::*;
use strata_controller_api::{
    CollectionMetadata, GlobalId, IngestionDescription, InstanceId, LoadGenerator, ShardId,
    SourceConnection, SourceOutput, Timestamp,
};
use strata_instance_client::grpc::{ClientTls, GrpcConnector};
use strata_instance_client::transport::{ReplicaConnection, ReplicaConnector};
use strata_instance_client::{ReplicaResponse, RunIngestionCommand, StorageCommand};
use strata_persist_backend::conformance::new_shard;
use strata_replica::generator::Generator;
use strata_replica::remap::remap_desc;

const TOKEN: &str = "correct-horse";

/// A counter source with id `User(1)` writing to `data`, remap `User(2)`.
fn counter_ingestion(persist: &str, data: ShardId) -> RunIngestionCommand<Timestamp> {
    let connection = SourceConnection::LoadGenerator {
        generator: LoadGenerator::Counter { max_ticks: None },
        tick_interval_ms: 20,
        offsets_per_tick: 1,
        seed: 0,
    };
    let remap_shard = new_shard();
    let meta = |shard, relation_desc| CollectionMetadata {
        persist_location: persist.to_owned(),
        data_shard: shard,
        remap_shard: Some(remap_shard),
        txns_shard: None,
        relation_desc,
    };
    let outputs = Generator::new(&connection).unwrap().outputs();
    let (output, desc) = outputs
        .into_iter()
        .find(|(o, _)| *o == SourceOutput::Primary)
        .unwrap();
    RunIngestionCommand {
        id: GlobalId::User(1),
        description: IngestionDescription {
            connection,
            instance_id: InstanceId(1),
            remap_collection_id: GlobalId::User(2),
            source_exports: BTreeMap::from([(GlobalId::User(1), output)]),
            as_of: None,
        },
        storage_metadata: BTreeMap::from([
            (GlobalId::User(1), meta(data, desc)),
            (GlobalId::User(2), meta(remap_shard, remap_desc())),
        ]),
    }
}

fn history(
    epoch: u64,
    ingestion: RunIngestionCommand<Timestamp>,
) -> Vec<StorageCommand<Timestamp>> {
    vec![
        StorageCommand::Hello {
            nonce: epoch,
            epoch,
        },
        StorageCommand::RunIngestion(ingestion),
        StorageCommand::InitializationComplete,
        StorageCommand::AllowWrites,
    ]
}

/// Waits until the replica reports an upper beyond 0 for `id`.
async fn upper_advances(connection: &mut ReplicaConnection<Timestamp>, id: GlobalId) -> u64 {
    while let Some(response) = connection.responses.recv().await {
        let ReplicaResponse::FrontierUppers(uppers) = response else {
            continue;
        };
        for (got, upper) in uppers {
            if got == id
                && let Some(t) = upper.elements().first()
                && t.as_millis() > 0
            {
                return t.as_millis();
            }
        }
    }
    panic!("the connection closed before the upper of {id} advanced");
}

/// A connection the server refused: its response stream ends without a response.
async fn assert_refused(connector: GrpcConnector) {
    let mut connection = ReplicaConnector::<Timestamp>::connect(&connector)
        .await
        .unwrap();
    let _ = connection
        .commands
        .send(StorageCommand::Hello { nonce: 9, epoch: 9 });
    let next = connection.responses.recv().await;
    assert!(next.is_none(), "a refused connection got {next:?}");
}

/// A plain HTTP/1.1 GET, enough for the metrics endpoint.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

fn write_token(dir: &std::path::Path) -> String {
    let path = dir.join("token");
    std::fs::write(&path, format!("{TOKEN}\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn serves_with_the_right_token_refuses_a_wrong_one_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let persist = file_url(&dir.path().join("persist"));
    let token_file = write_token(dir.path());
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let replica = ReplicaProcess::start(
        &persist,
        &[
            "--token-file",
            &token_file,
            "--workers",
            "2",
            "--metrics-addr",
            &metrics_addr,
        ],
    );
    let uri = format!("http://{}", replica.addr);
    let data = new_shard();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (upper, _connection) = rt.block_on(async {
        assert_refused(GrpcConnector::new(&uri, None).unwrap().with_token("wrong")).await;
        assert_refused(GrpcConnector::new(&uri, None).unwrap()).await;

        let connector = GrpcConnector::new(&uri, None).unwrap().with_token(TOKEN);
        let mut connection = ReplicaConnector::<Timestamp>::connect(&connector)
            .await
            .unwrap();
        for command in history(1, counter_ingestion(&persist, data)) {
            connection.commands.send(command).unwrap();
        }
        // The connection stays open through SIGTERM: shutdown must not wait for it.
        (
            upper_advances(&mut connection, GlobalId::User(1)).await,
            connection,
        )
    });

    let metrics = http_get(&metrics_addr, "/metrics");
    assert!(
        metrics.contains("strata_replica_commands_received_total{kind=\"run-ingestion\"} 1"),
        "metrics do not count the commands: {metrics}"
    );

    let (code, stderr) = replica.terminate();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("sigterm, shutting down"), "{stderr}");
    assert!(stderr.contains("connections still open after"), "{stderr}");
    assert!(stderr.contains("strata replica: stopped"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");

    // What the replica wrote is durable and readable by `strata inspect`.
    let out = run(strata().args(["inspect", "shard", "--persist", &persist, &data.to_string()]));
    assert_eq!(out.code, Some(0), "{out:?}");
    let state: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(state["shard"], data.to_string());
    let durable = state["upper"][0].as_u64().unwrap();
    assert!(
        durable >= upper,
        "durable upper {durable} is behind the reported {upper}"
    );
}

#[test]
fn serves_tls_to_a_client_that_trusts_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let persist = file_url(&dir.path().join("persist"));
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = key.cert.pem();
    let cert = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    let token_file = write_token(dir.path());
    let replica = ReplicaProcess::start(
        &persist,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--token-file",
            &token_file,
        ],
    );
    let port = replica.addr.rsplit(':').next().unwrap().to_owned();
    let uri = format!("https://localhost:{port}");
    let tls = ClientTls {
        ca_pem: cert_pem.into_bytes(),
        domain: "localhost".to_owned(),
    };
    let data = new_shard();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let connector = GrpcConnector::new(&uri, Some(tls.clone()))
            .unwrap()
            .with_token("wrong");
        assert_refused(connector).await;
        let connector = GrpcConnector::new(&uri, Some(tls))
            .unwrap()
            .with_token(TOKEN);
        let mut connection = ReplicaConnector::<Timestamp>::connect(&connector)
            .await
            .unwrap();
        for command in history(1, counter_ingestion(&persist, data)) {
            connection.commands.send(command).unwrap();
        }
        upper_advances(&mut connection, GlobalId::User(1)).await;
    });
    let (code, stderr) = replica.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn refuses_a_non_loopback_address_without_tls_but_not_with_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let persist = file_url(dir.path());
    let addr = format!("0.0.0.0:{}", free_port());
    let out = run(strata().args(["replica", "--listen", &addr, "--persist", &persist]));
    assert_one_line_error(&out, &["refusing to listen on", "without tls"]);

    let mut child = strata()
        .args([
            "replica",
            "--listen",
            &addr,
            "--persist",
            &persist,
            "--insecure",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(
        line.contains(&format!("listening on {addr} (plaintext")),
        "{line}"
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn ctrl_c_stops_an_idle_replica_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let replica = ReplicaProcess::start(&file_url(dir.path()), &[]);
    let (code, stderr) = replica.signal("INT");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("ctrl-c, shutting down"), "{stderr}");
    assert!(!stderr.contains("connections still open"), "{stderr}");
    assert!(stderr.contains("strata replica: stopped"), "{stderr}");
}
