//! The file register: the register consensus on a local file system, whose
//! `object_store` backend has no conditional update.
//!
//! Each shard has one file `shards/{s}/head` (an envelope with the seqno and the
//! writer's token). A commit takes an exclusive advisory lock on `shards/{s}/head.lock`,
//! reads the head, compares its seqno with the expected one, writes `head.tmp`, fsyncs
//! it, renames it over `head` and fsyncs the directory, then unlocks. A reader reads
//! `head` without the lock: a rename is atomic, so it sees one whole version.
//!
//! So a commit is one locked read-modify-write: no ghosts, no truncation, one file per
//! shard for ever. The lock is the kernel's (`flock`): it holds between processes of
//! one machine and is released when a process dies, which is what a local directory
//! needs. (A directory shared over a network file system is not supported.)
//!
//! An error before the rename changed nothing; an error from the rename on is
//! indeterminate (the new head may be durable).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use prost::Message;
use strata_controller_api::ShardId;

use super::{CasOutcome, Consensus, ConsensusKind, Envelope, SeqNo, VersionedData};
use crate::error::{CodecError, ExternalError, PersistError};

/// How many shards keep their lock file and directory open (two descriptors each).
pub const MAX_OPEN_SHARDS: usize = 256;

/// The file register of one location directory.
#[derive(Debug)]
pub struct FileRegister {
    root: PathBuf,
    dir: PathBuf,
    /// Open handles of the most recently committed shards (at most
    /// [`MAX_OPEN_SHARDS`]): a commit then costs no open of the lock file or the
    /// directory.
    shards: Mutex<HashMap<ShardId, Arc<ShardFiles>>>,
}

/// One shard's open files.
#[derive(Debug)]
struct ShardFiles {
    path: PathBuf,
    /// Serializes this process's commits: an advisory lock belongs to the open file, so
    /// it does not exclude two threads sharing one.
    local: Mutex<()>,
    lock: File,
    dir: File,
}

impl FileRegister {
    /// The register of the location at directory `root` with key prefix `prefix`.
    pub fn new(root: PathBuf, prefix: object_store::path::Path) -> Self {
        let mut dir = root.clone();
        dir.extend(prefix.parts().map(|p| p.as_ref().to_owned()));
        FileRegister {
            root,
            dir,
            shards: Mutex::new(HashMap::new()),
        }
    }

    fn shard_dir(&self, shard: ShardId) -> PathBuf {
        self.dir.join("shards").join(shard.to_string())
    }

    /// The location directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn cached(&self, shard: ShardId) -> Option<Arc<ShardFiles>> {
        let shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        shards.get(&shard).cloned()
    }

    fn remember(&self, shard: ShardId, files: Arc<ShardFiles>) {
        let mut shards = self.shards.lock().unwrap_or_else(|p| p.into_inner());
        if shards.len() >= MAX_OPEN_SHARDS && !shards.contains_key(&shard) {
            // Two descriptors per shard must not grow with the number of shards. An
            // evicted shard's commit in flight keeps its own handles; a new one opens
            // others, and the advisory lock (per open file) still excludes the two.
            if let Some(evict) = shards.keys().next().copied() {
                shards.remove(&evict);
            }
        }
        shards.entry(shard).or_insert(files);
    }
}

impl ShardFiles {
    /// Opens (creating) the shard's directory and lock file.
    fn open(path: PathBuf) -> io::Result<ShardFiles> {
        ensure_dir(&path)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join("head.lock"))?;
        let dir = File::open(&path)?;
        let files = ShardFiles {
            path,
            local: Mutex::new(()),
            lock,
            dir,
        };
        files.remove_stale_tmp()?;
        Ok(files)
    }

    /// Removes `head.tmp`, which a commit interrupted between writing it and renaming
    /// it (a process that died there) leaves behind; under the lock nobody is writing
    /// it. Returns how many files went (0 or 1).
    fn remove_stale_tmp(&self) -> io::Result<usize> {
        let _local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        self.lock.lock()?;
        let removed = match std::fs::remove_file(self.path.join("head.tmp")) {
            Ok(()) => Ok(1),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e),
        };
        self.lock.unlock()?;
        removed
    }

    /// The head. It is read every time: an inode number cannot tell an unchanged
    /// head from a new one, as a rename frees it for the next file to reuse.
    fn head(&self) -> Result<Option<Envelope>, PersistError> {
        read_head(&self.path)
    }

    fn compare_and_set(
        &self,
        expected: Option<SeqNo>,
        token: &str,
        data: Bytes,
    ) -> Result<CasOutcome, PersistError> {
        let _local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        self.lock.lock().map_err(failed)?;
        let res = self.locked_cas(expected, token, data);
        if let Err(e) = self.lock.unlock() {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot unlock a head");
        }
        res
    }

    fn locked_cas(
        &self,
        expected: Option<SeqNo>,
        token: &str,
        data: Bytes,
    ) -> Result<CasOutcome, PersistError> {
        let current = self.head()?;
        let (have, want) = (
            current.as_ref().map_or(0, |e| e.seqno),
            expected.unwrap_or(0),
        );
        if have != want {
            return Ok(match current {
                // A retry of a commit that landed.
                Some(env) if env.seqno == want + 1 && env.token == token => CasOutcome::Committed,
                _ => CasOutcome::Mismatch,
            });
        }
        let env = Envelope {
            token: token.to_owned(),
            data,
            seqno: want + 1,
        };
        let tmp = self.path.join("head.tmp");
        let mut file = File::create(&tmp).map_err(failed)?;
        file.write_all(&env.encode_to_vec()).map_err(failed)?;
        file.sync_all().map_err(failed)?;
        drop(file);
        std::fs::rename(&tmp, self.path.join("head")).map_err(in_doubt)?;
        self.dir.sync_all().map_err(in_doubt)?;
        Ok(CasOutcome::Committed)
    }
}

/// A failure before the new head was renamed into place: nothing changed.
fn failed(e: io::Error) -> PersistError {
    ExternalError::determinate("compare_and_set", e).into()
}

/// A failure from the rename on: the new head may be durable.
fn in_doubt(e: io::Error) -> PersistError {
    ExternalError::indeterminate("compare_and_set", e).into()
}

fn read_head(dir: &Path) -> Result<Option<Envelope>, PersistError> {
    let path = dir.join("head");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ExternalError::determinate("head", e).into()),
    };
    let env = Envelope::decode(Bytes::from(bytes)).map_err(|e| CodecError::State {
        key: path.display().to_string(),
        reason: e.to_string(),
    })?;
    if env.seqno == 0 {
        return Err(CodecError::State {
            key: path.display().to_string(),
            reason: "a head without a version number".into(),
        }
        .into());
    }
    Ok(Some(env))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and makes its entry durable in its parent (and the parent's, for a
/// new `shards/`).
fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let mut up = dir.parent();
    for _ in 0..2 {
        if let Some(parent) = up {
            sync_dir(parent)?;
            up = parent.parent();
        }
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    op: &'static str,
    f: impl FnOnce() -> Result<T, PersistError> + Send + 'static,
) -> Result<T, PersistError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(res) => res,
        Err(e) => Err(ExternalError::indeterminate(op, e).into()),
    }
}

impl FileRegister {
    /// The shard's open files, opening (and caching) them on first use.
    async fn files(&self, shard: ShardId) -> Result<Arc<ShardFiles>, PersistError> {
        if let Some(files) = self.cached(shard) {
            return Ok(files);
        }
        let path = self.shard_dir(shard);
        let files = blocking("compare_and_set", move || {
            ShardFiles::open(path).map_err(failed)
        })
        .await?;
        let files = Arc::new(files);
        self.remember(shard, Arc::clone(&files));
        Ok(self.cached(shard).unwrap_or(files))
    }
}

#[async_trait]
impl Consensus for FileRegister {
    async fn head(
        &self,
        shard: ShardId,
        _hint: SeqNo,
    ) -> Result<Option<VersionedData>, PersistError> {
        let env = match self.cached(shard) {
            Some(files) => blocking("head", move || files.head()).await?,
            None => {
                let dir = self.shard_dir(shard);
                blocking("head", move || read_head(&dir)).await?
            }
        };
        Ok(env.map(|env| VersionedData {
            seqno: env.seqno,
            data: env.data,
        }))
    }

    async fn compare_and_set(
        &self,
        shard: ShardId,
        expected: Option<SeqNo>,
        data: Bytes,
        token: &str,
    ) -> Result<CasOutcome, PersistError> {
        let files = self.files(shard).await?;
        let token = token.to_owned();
        blocking("compare_and_set", move || {
            files.compare_and_set(expected, &token, data)
        })
        .await
    }

    /// A register keeps no old versions. What a commit killed between writing
    /// `head.tmp` and renaming it left behind goes here (GC calls this), under the
    /// lock, so a shard that is never written again does not keep it.
    async fn truncate(&self, shard: ShardId, _below: SeqNo) -> Result<usize, PersistError> {
        if self.cached(shard).is_none() && !self.shard_dir(shard).join("head.tmp").exists() {
            return Ok(0);
        }
        let files = self.files(shard).await?;
        blocking("truncate", move || files.remove_stale_tmp().map_err(failed)).await
    }

    fn kind(&self) -> ConsensusKind {
        ConsensusKind::FileRegister {
            root: self.root.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_register_of_one_file_per_shard() -> Result<(), PersistError> {
        let dir = tempfile::tempdir().map_err(|e| ExternalError::determinate("tempdir", e))?;
        let c = FileRegister::new(dir.path().to_owned(), Default::default());
        let s = ShardId::from_bytes([4; 16]);
        assert_eq!(c.head(s, 0).await?, None);
        assert_eq!(
            c.compare_and_set(s, None, Bytes::from("a"), "t1").await?,
            CasOutcome::Committed
        );
        assert_eq!(
            c.compare_and_set(s, None, Bytes::from("b"), "t2").await?,
            CasOutcome::Mismatch
        );
        for e in 1..100 {
            let out = c
                .compare_and_set(s, Some(e), Bytes::from("x"), &format!("t{e}"))
                .await?;
            assert_eq!(out, CasOutcome::Committed);
        }
        assert_eq!(
            c.compare_and_set(s, Some(99), Bytes::from("x"), "t99")
                .await?,
            CasOutcome::Committed,
            "a retry of the last commit"
        );
        assert_eq!(
            c.compare_and_set(s, Some(50), Bytes::from("stale"), "t")
                .await?,
            CasOutcome::Mismatch
        );
        assert_eq!(c.head(s, 0).await?.map(|h| h.seqno), Some(100));
        let mut files: Vec<String> = std::fs::read_dir(c.shard_dir(s))
            .map_err(|e| ExternalError::determinate("list", e))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        files.sort();
        assert_eq!(
            files,
            ["head", "head.lock"],
            "one head file per shard, however many commits"
        );
        Ok(())
    }

    #[tokio::test]
    async fn open_handles_stay_bounded_with_many_shards() -> Result<(), PersistError> {
        let dir = tempfile::tempdir().map_err(|e| ExternalError::determinate("tempdir", e))?;
        let c = FileRegister::new(dir.path().to_owned(), Default::default());
        let shard = |i: usize| {
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
            ShardId::from_bytes(bytes)
        };
        for i in 0..MAX_OPEN_SHARDS + 10 {
            c.compare_and_set(shard(i), None, Bytes::from("a"), "t")
                .await?;
        }
        let open = c.shards.lock().unwrap_or_else(|p| p.into_inner()).len();
        assert_eq!(open, MAX_OPEN_SHARDS);
        // An evicted shard commits again with fresh handles.
        let s0 = ShardId::from_bytes([0; 16]);
        assert_eq!(
            c.compare_and_set(s0, Some(1), Bytes::from("b"), "t2")
                .await?,
            CasOutcome::Committed
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_commit_interrupted_before_its_rename_leaves_nothing_behind()
    -> Result<(), PersistError> {
        let dir = tempfile::tempdir().map_err(|e| ExternalError::determinate("tempdir", e))?;
        let s = ShardId::from_bytes([5; 16]);
        let first = FileRegister::new(dir.path().to_owned(), Default::default());
        first
            .compare_and_set(s, None, Bytes::from("a"), "t1")
            .await?;
        // A process died after writing its next head but before renaming it.
        let tmp = first.shard_dir(s).join("head.tmp");
        std::fs::write(&tmp, b"half a commit")
            .map_err(|e| ExternalError::determinate("write", e))?;
        let next = FileRegister::new(dir.path().to_owned(), Default::default());
        assert_eq!(
            next.head(s, 0).await?.map(|h| h.seqno),
            Some(1),
            "the head is untouched"
        );
        next.compare_and_set(s, Some(1), Bytes::from("b"), "t2")
            .await?;
        assert!(!tmp.exists(), "the leftover went when the shard was opened");
        Ok(())
    }

    #[tokio::test]
    async fn gc_removes_what_an_interrupted_commit_left_on_a_shard_never_written_again()
    -> Result<(), PersistError> {
        let dir = tempfile::tempdir().map_err(|e| ExternalError::determinate("tempdir", e))?;
        let s = ShardId::from_bytes([6; 16]);
        let c = FileRegister::new(dir.path().to_owned(), Default::default());
        assert_eq!(c.truncate(s, 1).await?, 0, "a shard never written");
        c.compare_and_set(s, None, Bytes::from("a"), "t1").await?;
        let tmp = c.shard_dir(s).join("head.tmp");
        std::fs::write(&tmp, b"half a commit")
            .map_err(|e| ExternalError::determinate("write", e))?;
        // Both while this process has the shard open and from a fresh process.
        assert_eq!(c.truncate(s, 1).await?, 1);
        assert!(!tmp.exists());
        std::fs::write(&tmp, b"half a commit")
            .map_err(|e| ExternalError::determinate("write", e))?;
        let fresh = FileRegister::new(dir.path().to_owned(), Default::default());
        fresh.truncate(s, 1).await?;
        assert!(!tmp.exists());
        assert_eq!(c.head(s, 0).await?.map(|h| h.seqno), Some(1));
        Ok(())
    }
}
