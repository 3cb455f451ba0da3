//! The replica transport conformance suite: what every [`ReplicaConnector`] /
//! [`ReplicaHandler`] pair must do, whatever carries the bytes.
//!
//! A transport is given as a [`TransportFactory`]: a function that serves a handler
//! (a fresh server, with its own epoch fence, per call) and returns a connector to
//! it. The suite drives the connector the way an
//! [`Instance`](strata_instance_client::Instance) does and checks what a recording
//! handler sees. It uses only the public API of `strata-instance-client`.
//!
//! Rules checked, one function each:
//! - [`ordered_delivery`]: `Hello` reaches the handler with its nonce and epoch,
//!   commands arrive in order, responses come back in order;
//! - [`independent_connections`]: each `connect` is a new connection served on its
//!   own, with its own responses;
//! - [`epoch_fence`]: a lower epoch is refused, a higher one ends older connections;
//! - [`hello_first`]: a connection that does not start with `Hello` is closed unserved;
//! - [`close_propagates`]: dropping the controller's side ends the handler's serving,
//!   and a handler that returns ends the controller's responses.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use futures::FutureExt;
//! use strata_controller_api::Timestamp;
//! use strata_instance_client::LocalConnector;
//! use strata_instance_client::transport::{ReplicaConnector, ReplicaHandler};
//! use strata_testkit::conformance::transport;
//!
//! #[tokio::main]
//! async fn main() {
//!     let local = |handler: Arc<dyn ReplicaHandler<Timestamp>>| {
//!         async move { LocalConnector::new(handler) as Arc<dyn ReplicaConnector<Timestamp>> }
//!             .boxed()
//!     };
//!     transport::run_all(&local).await;
//! }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use strata_controller_api::{Antichain, GlobalId, Timestamp};
use strata_instance_client::transport::{
    CommandReceiver, Hello, ReplicaConnection, ReplicaConnector, ReplicaHandler, ResponseSender,
};
use strata_instance_client::{ReplicaResponse, StorageCommand};
use tokio::sync::mpsc;

/// How long the suite waits for any one thing before it fails.
const WAIT: Duration = Duration::from_secs(10);

/// The command id that asks the recording handler to end its connection.
const CLOSE: GlobalId = GlobalId::User(u64::MAX);

/// Serves a handler and returns a connector to it.
///
/// Each call must start a new server with its own epoch fence: the suite's functions
/// assume a replica that has seen no epoch.
pub trait TransportFactory: Send + Sync {
    /// Serves `handler`; the returned connector's connections reach it.
    fn serve(
        &self,
        handler: Arc<dyn ReplicaHandler<Timestamp>>,
    ) -> BoxFuture<'static, Arc<dyn ReplicaConnector<Timestamp>>>;
}

impl<F> TransportFactory for F
where
    F: Fn(
            Arc<dyn ReplicaHandler<Timestamp>>,
        ) -> BoxFuture<'static, Arc<dyn ReplicaConnector<Timestamp>>>
        + Send
        + Sync,
{
    fn serve(
        &self,
        handler: Arc<dyn ReplicaHandler<Timestamp>>,
    ) -> BoxFuture<'static, Arc<dyn ReplicaConnector<Timestamp>>> {
        self(handler)
    }
}

/// What the recording handler saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// A connection was served, with its `Hello`.
    Served(Hello),
    /// A command on the connection with this nonce.
    Command(u64, Box<StorageCommand<Timestamp>>),
    /// The commands of the connection with this nonce ended.
    Ended(u64),
}

/// Records every connection and echoes `AllowCompaction { id }` as `DroppedId(id)`;
/// [`CLOSE`] makes it return.
struct Recorder {
    events: mpsc::UnboundedSender<Event>,
}

#[async_trait]
impl ReplicaHandler<Timestamp> for Recorder {
    async fn serve(
        &self,
        hello: Hello,
        mut commands: CommandReceiver<Timestamp>,
        responses: ResponseSender<Timestamp>,
    ) {
        let _ = self.events.send(Event::Served(hello));
        // `Ended` is sent when serving stops, whether the commands ended or the
        // transport dropped this future.
        let _ended = Ended {
            events: self.events.clone(),
            nonce: hello.nonce,
        };
        while let Some(command) = commands.recv().await {
            if let StorageCommand::AllowCompaction { id, .. } = &command {
                if *id == CLOSE {
                    return;
                }
                let _ = responses.send(ReplicaResponse::DroppedId(*id));
            }
            let _ = self
                .events
                .send(Event::Command(hello.nonce, Box::new(command)));
        }
    }
}

/// Reports the end of a connection's serving when dropped.
struct Ended {
    events: mpsc::UnboundedSender<Event>,
    nonce: u64,
}

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.events.send(Event::Ended(self.nonce));
    }
}

/// A served recorder: its connector and what it saw.
struct Served {
    connector: Arc<dyn ReplicaConnector<Timestamp>>,
    events: mpsc::UnboundedReceiver<Event>,
}

async fn serve(factory: &impl TransportFactory) -> Served {
    let (events_tx, events) = mpsc::unbounded_channel();
    let handler = Arc::new(Recorder { events: events_tx }) as Arc<dyn ReplicaHandler<Timestamp>>;
    Served {
        connector: factory.serve(handler).await,
        events,
    }
}

impl Served {
    async fn connect(&self, rule: &str) -> ReplicaConnection<Timestamp> {
        match tokio::time::timeout(WAIT, self.connector.connect()).await {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => panic!("transport conformance, {rule}: connecting failed: {e}"),
            Err(_) => panic!("transport conformance, {rule}: connecting timed out"),
        }
    }

    async fn next(&mut self, rule: &str) -> Event {
        match tokio::time::timeout(WAIT, self.events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => panic!("transport conformance, {rule}: the handler is gone"),
            Err(_) => panic!("transport conformance, {rule}: the handler saw nothing new"),
        }
    }

    /// Whether the handler sees nothing more within a short while.
    async fn quiet(&mut self) -> Option<Event> {
        tokio::time::timeout(Duration::from_millis(200), self.events.recv())
            .await
            .ok()
            .flatten()
    }
}

fn hello(nonce: u64, epoch: u64) -> StorageCommand<Timestamp> {
    StorageCommand::Hello { nonce, epoch }
}

fn compact(i: u64) -> StorageCommand<Timestamp> {
    StorageCommand::AllowCompaction {
        id: GlobalId::User(i),
        frontier: Antichain::from_elem(Timestamp::new(i)),
    }
}

fn send(connection: &ReplicaConnection<Timestamp>, command: StorageCommand<Timestamp>, rule: &str) {
    if connection.commands.send(command).is_err() {
        panic!("transport conformance, {rule}: the connection closed while sending");
    }
}

async fn response(connection: &mut ReplicaConnection<Timestamp>, rule: &str) -> GlobalId {
    match tokio::time::timeout(WAIT, connection.responses.recv()).await {
        Ok(Some(ReplicaResponse::DroppedId(id))) => id,
        Ok(Some(other)) => panic!("transport conformance, {rule}: unexpected response {other:?}"),
        Ok(None) => panic!("transport conformance, {rule}: the responses ended"),
        Err(_) => panic!("transport conformance, {rule}: no response arrived"),
    }
}

async fn responses_end(connection: &mut ReplicaConnection<Timestamp>, rule: &str) {
    loop {
        match tokio::time::timeout(WAIT, connection.responses.recv()).await {
            Ok(None) => return,
            Ok(Some(_)) => {}
            Err(_) => panic!("transport conformance, {rule}: the responses did not end"),
        }
    }
}

/// Runs every rule of the suite.
pub async fn run_all(factory: &impl TransportFactory) {
    ordered_delivery(factory).await;
    independent_connections(factory).await;
    epoch_fence(factory).await;
    hello_first(factory).await;
    close_propagates(factory).await;
}

/// `Hello` reaches the handler with its nonce and epoch; 100 commands arrive in
/// order, and their 100 responses come back in order.
pub async fn ordered_delivery(factory: &impl TransportFactory) {
    let rule = "ordered delivery";
    let mut served = serve(factory).await;
    let mut connection = served.connect(rule).await;
    send(&connection, hello(7, 1), rule);
    for i in 0..100 {
        send(&connection, compact(i), rule);
    }
    assert_eq!(
        served.next(rule).await,
        Event::Served(Hello { nonce: 7, epoch: 1 }),
        "transport conformance, {rule}: the handler must see the Hello first"
    );
    for i in 0..100 {
        assert_eq!(
            served.next(rule).await,
            Event::Command(7, Box::new(compact(i))),
            "transport conformance, {rule}: command {i} out of order"
        );
    }
    for i in 0..100 {
        assert_eq!(
            response(&mut connection, rule).await,
            GlobalId::User(i),
            "transport conformance, {rule}: response {i} out of order"
        );
    }
}

/// Two connections to one replica are served separately: each one's commands reach
/// the handler under its own `Hello`, and each gets its own responses.
pub async fn independent_connections(factory: &impl TransportFactory) {
    let rule = "independent connections";
    let mut served = serve(factory).await;
    let mut a = served.connect(rule).await;
    let mut b = served.connect(rule).await;
    send(&a, hello(1, 1), rule);
    send(&b, hello(2, 1), rule);
    for i in 0..10 {
        send(&a, compact(i), rule);
        send(&b, compact(100 + i), rule);
    }
    let mut seen: BTreeMap<u64, Vec<StorageCommand<Timestamp>>> = BTreeMap::new();
    let mut hellos = Vec::new();
    while seen.values().map(Vec::len).sum::<usize>() < 20 {
        match served.next(rule).await {
            Event::Served(h) => hellos.push(h.nonce),
            Event::Command(nonce, command) => seen.entry(nonce).or_default().push(*command),
            Event::Ended(nonce) => {
                panic!("transport conformance, {rule}: connection {nonce} ended early")
            }
        }
    }
    hellos.sort_unstable();
    assert_eq!(
        hellos,
        vec![1, 2],
        "transport conformance, {rule}: both connections must be served"
    );
    assert_eq!(
        seen.get(&1),
        Some(&(0..10).map(compact).collect()),
        "transport conformance, {rule}: connection 1's commands"
    );
    assert_eq!(
        seen.get(&2),
        Some(&(100..110).map(compact).collect()),
        "transport conformance, {rule}: connection 2's commands"
    );
    for i in 0..10 {
        assert_eq!(response(&mut a, rule).await, GlobalId::User(i), "{rule}");
        assert_eq!(
            response(&mut b, rule).await,
            GlobalId::User(100 + i),
            "{rule}"
        );
    }
}

/// A connection whose epoch is below the highest the replica has seen is closed
/// without being served; one with a higher epoch ends the commands of older ones.
pub async fn epoch_fence(factory: &impl TransportFactory) {
    let rule = "epoch fence";
    let mut served = serve(factory).await;
    let current = served.connect(rule).await;
    send(&current, hello(1, 5), rule);
    assert_eq!(
        served.next(rule).await,
        Event::Served(Hello { nonce: 1, epoch: 5 }),
        "{rule}"
    );

    let mut stale = served.connect(rule).await;
    send(&stale, hello(2, 4), rule);
    // A refused connection may or may not accept the send; it must not be served.
    let _ = stale.commands.send(compact(1));
    responses_end(&mut stale, rule).await;

    let newer = served.connect(rule).await;
    send(&newer, hello(3, 6), rule);
    assert_eq!(
        served.next(rule).await,
        Event::Served(Hello { nonce: 3, epoch: 6 }),
        "transport conformance, {rule}: a lower epoch must not be served"
    );
    // The fenced connection passes on nothing more.
    let _ = current.commands.send(compact(2));
    send(&newer, compact(3), rule);
    let mut events = Vec::new();
    while !events.contains(&Event::Command(3, Box::new(compact(3)))) {
        events.push(served.next(rule).await);
    }
    if let Some(event) = served.quiet().await {
        events.push(event);
    }
    assert!(
        !events.contains(&Event::Command(1, Box::new(compact(2)))),
        "transport conformance, {rule}: a fenced connection's command reached the handler: {events:?}"
    );
}

/// A connection that starts with anything but `Hello` is closed and never served.
pub async fn hello_first(factory: &impl TransportFactory) {
    let rule = "hello first";
    let mut served = serve(factory).await;
    let mut connection = served.connect(rule).await;
    let _ = connection.commands.send(compact(1));
    responses_end(&mut connection, rule).await;
    assert_eq!(
        served.quiet().await,
        None,
        "transport conformance, {rule}: a connection without Hello was served"
    );
}

/// Dropping the controller's side ends the handler's serving (its commands end, or the
/// transport drops its `serve` future); a handler that returns ends the controller's
/// responses.
pub async fn close_propagates(factory: &impl TransportFactory) {
    let rule = "close propagates";
    let mut served = serve(factory).await;
    let connection = served.connect(rule).await;
    send(&connection, hello(1, 1), rule);
    assert_eq!(
        served.next(rule).await,
        Event::Served(Hello { nonce: 1, epoch: 1 }),
        "{rule}"
    );
    drop(connection);
    assert_eq!(
        served.next(rule).await,
        Event::Ended(1),
        "transport conformance, {rule}: the handler's commands must end when the controller goes"
    );

    let mut connection = served.connect(rule).await;
    send(&connection, hello(2, 1), rule);
    send(&connection, compact(5), rule);
    assert_eq!(
        response(&mut connection, rule).await,
        GlobalId::User(5),
        "{rule}"
    );
    send(
        &connection,
        StorageCommand::AllowCompaction {
            id: CLOSE,
            frontier: Antichain::new(),
        },
        rule,
    );
    responses_end(&mut connection, rule).await;
}
