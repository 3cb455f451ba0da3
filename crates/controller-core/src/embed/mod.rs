//! What an embedding host needs beyond the controller itself, behind the `replica`
//! feature: replicas started in the host's own process ([`InProcessReplicas`]) and the
//! descriptions of a load-generator source with its subsources and progress collection
//! ([`LoadGeneratorSource`]).
//!
//! Both sit on `strata-replica`; a host that reaches its replicas over gRPC does not
//! need this module.

mod replicas;
mod source;

pub use replicas::InProcessReplicas;
pub use source::LoadGeneratorSource;
