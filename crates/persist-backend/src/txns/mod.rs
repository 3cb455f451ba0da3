//! The txns shard: atomic writes across many data shards (Materialize's txn-wal,
//! redesigned for Strata).
//!
//! **Owns**: the txns shard's rows ([`txns_desc`]), registration and forgetting of
//! data shards, commits, lazy apply, reads through the txns shard, and its compaction.
//!
//! **How it works**: one shard, the *txns shard*, records `(data shard, batch)` rows at
//! their commit time. A commit writes each data shard's updates to blob as a batch that
//! is not linked into its data shard, then makes **one** `compare_and_append` on the
//! txns shard at `[ts, ts + 1)` holding the batch references. Every registered data
//! shard's *logical* upper is the txns upper, so advancing it for N idle shards is one
//! CAS too. Batches are linked into their data shards later (*apply*), lazily and
//! idempotently; a read at `as_of` first applies every commit at or before `as_of`.
//! Rows known to be applied are retracted by later writes, which keeps the txns shard
//! small.
//!
//! **Must never depend on**: anything but this crate's handles and pure state.
//!
//! **Invariants**:
//! - a data shard is written through txns only between its registration and forget;
//! - nothing moves a registered data shard's physical upper past a commit time without
//!   linking that commit's batch, so an upper past `ts` proves the batch at `ts` is
//!   linked (apply is idempotent and safe to run concurrently);
//! - a row is retracted only once it is applied;
//! - a read through the txns shard at `as_of` sees every commit at or before `as_of`
//!   and none after: all of a commit's writes, or none of them.

mod apply;
mod error;
mod feed;
mod gc;
mod handle;
mod rows;
mod txn;
mod view;

pub use error::{TxnsError, TxnsResult};
pub use handle::TxnsHandle;
pub use rows::txns_desc;
pub use txn::{Txn, TxnApply};
