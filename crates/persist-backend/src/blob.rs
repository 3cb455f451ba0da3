//! Thin, typed helpers over `ObjectStore`: get-or-none, create-if-absent, delete, list.
//!
//! Read failures are Determinate (nothing changed); write failures are Indeterminate
//! (the object may exist now). `AlreadyExists` and `NotFound` are answers, not errors.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::ExternalError;

/// The answer of a create-if-absent put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Created {
    /// This call created the object.
    Yes,
    /// An object was already there.
    AlreadyExists,
}

pub(crate) async fn get(
    store: &dyn ObjectStore,
    key: &Path,
) -> Result<Option<Bytes>, ExternalError> {
    match store.get_opts(key, Default::default()).await {
        Ok(result) => match result.bytes().await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(ExternalError::determinate("get", e)),
        },
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(ExternalError::determinate("get", e)),
    }
}

/// Bytes `range` of `key`, or `None` if it does not exist.
pub(crate) async fn get_range(
    store: &dyn ObjectStore,
    key: &Path,
    range: std::ops::Range<u64>,
) -> Result<Option<Bytes>, ExternalError> {
    match store.get_range(key, range).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(ExternalError::determinate("get_range", e)),
    }
}

/// Whether `key` exists (a HEAD request: no body is transferred).
pub(crate) async fn head(store: &dyn ObjectStore, key: &Path) -> Result<bool, ExternalError> {
    let opts = object_store::GetOptions {
        head: true,
        ..Default::default()
    };
    match store.get_opts(key, opts).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(ExternalError::determinate("head", e)),
    }
}

pub(crate) async fn create(
    store: &dyn ObjectStore,
    key: &Path,
    data: Bytes,
) -> Result<Created, ExternalError> {
    let opts = PutOptions::from(PutMode::Create);
    match store
        .put_opts(key, PutPayload::from_bytes(data), opts)
        .await
    {
        Ok(_) => Ok(Created::Yes),
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(Created::AlreadyExists),
        Err(e) => Err(ExternalError::indeterminate("create", e)),
    }
}

pub(crate) async fn put(
    store: &dyn ObjectStore,
    key: &Path,
    data: Bytes,
) -> Result<(), ExternalError> {
    store
        .put_opts(key, PutPayload::from_bytes(data), PutOptions::default())
        .await
        .map(|_| ())
        .map_err(|e| ExternalError::indeterminate("put", e))
}

pub(crate) async fn delete(store: &dyn ObjectStore, key: &Path) -> Result<(), ExternalError> {
    delete_many(store, vec![key.clone()]).await
}

/// Deletes every key with one `delete_stream` (batched requests where the store has
/// them, such as S3's DeleteObjects). Absent keys are not errors.
pub(crate) async fn delete_many(
    store: &dyn ObjectStore,
    keys: Vec<Path>,
) -> Result<(), ExternalError> {
    if keys.is_empty() {
        return Ok(());
    }
    let keys: futures::stream::BoxStream<'static, object_store::Result<Path>> =
        Box::pin(futures::stream::iter(keys.into_iter().map(Ok)));
    let mut out = store.delete_stream(keys);
    while let Some(res) = futures::StreamExt::next(&mut out).await {
        match res {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(ExternalError::indeterminate("delete", e)),
        }
    }
    Ok(())
}

pub(crate) async fn list(
    store: &dyn ObjectStore,
    prefix: &Path,
) -> Result<Vec<ObjectMeta>, ExternalError> {
    store
        .list(Some(prefix))
        .try_collect()
        .await
        .map_err(|e| ExternalError::determinate("list", e))
}

pub(crate) async fn list_after(
    store: &dyn ObjectStore,
    prefix: &Path,
    offset: &Path,
) -> Result<Vec<ObjectMeta>, ExternalError> {
    store
        .list_with_offset(Some(prefix), offset)
        .try_collect()
        .await
        .map_err(|e| ExternalError::determinate("list", e))
}
