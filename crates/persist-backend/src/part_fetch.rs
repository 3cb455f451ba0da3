//! Reading a large part in two halves: its footer first, then the first and the second
//! half of its row groups concurrently, each half one row group at a time (a ranged GET,
//! then decoding on a blocking thread). The two halves' fetches (a copy out of the page
//! cache, or a transfer from S3) overlap with each other's decoding, a fetch buffer is
//! one row group, and no decoding runs on an async worker.
//!
//! Anything unexpected about the part (too short, no footer where its size says,
//! one row group) makes [`fetch_halves`] answer `None`, and the caller reads the part
//! whole, which reports what is wrong with it as a typed error.

use std::ops::Range;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaDataReader;
use parquet::file::reader::{ChunkReader, Length};
use strata_controller_api::RelationDesc;

use crate::error::{CodecError, PersistError, Result};
use crate::machine::Machine;
use crate::part::{CodedUpdate, append_checked, decode_row_groups, rows_in};
use crate::state::PartRef;

/// How much of a part's end is fetched to find its footer; a larger footer makes the
/// part be read whole.
const FOOTER_FETCH_BYTES: u64 = 256 << 10;

/// Bytes `[offset, offset + bytes.len())` of a part that is `len` bytes long.
#[derive(Debug, Clone)]
struct PartSlice {
    offset: u64,
    len: u64,
    bytes: Bytes,
}

impl PartSlice {
    fn slice(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let out_of_range = || {
            ParquetError::General(format!(
                "bytes {start}+{length} are outside the fetched range {}+{}",
                self.offset,
                self.bytes.len()
            ))
        };
        let from = usize::try_from(start.checked_sub(self.offset).ok_or_else(out_of_range)?)
            .map_err(|_| out_of_range())?;
        let to = from.checked_add(length).ok_or_else(out_of_range)?;
        if to > self.bytes.len() {
            return Err(out_of_range());
        }
        Ok(self.bytes.slice(from..to))
    }
}

impl Length for PartSlice {
    fn len(&self) -> u64 {
        self.len
    }
}

impl ChunkReader for PartSlice {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let end = self.offset.saturating_add(self.bytes.len() as u64);
        let length = usize::try_from(end.saturating_sub(start)).unwrap_or(0);
        Ok(self.slice(start, length)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, length)
    }
}

/// The byte range covering row groups `groups` of a part.
fn span(meta: &ArrowReaderMetadata, groups: Range<usize>) -> Option<Range<u64>> {
    let columns = meta.metadata().row_groups()[groups]
        .iter()
        .flat_map(|g| g.columns());
    let (mut lo, mut hi) = (u64::MAX, 0u64);
    for column in columns {
        let (start, length) = column.byte_range();
        lo = lo.min(start);
        hi = hi.max(start.checked_add(length)?);
    }
    (lo < hi).then_some(lo..hi)
}

/// Reads `part` in two halves into `out` (see the module doc); `None` if the part is
/// to be read whole instead, with `out` untouched. The answer is as
/// `decode_part_into`'s.
pub(crate) async fn fetch_halves(
    machine: &Machine,
    desc: &RelationDesc,
    part: &PartRef,
    as_of: Option<u64>,
    out: &mut Vec<CodedUpdate>,
) -> Result<Option<bool>> {
    let len = part.bytes;
    let tail_start = len.saturating_sub(FOOTER_FETCH_BYTES);
    let Ok(Some(tail)) = machine.get_blob_range(&part.key, tail_start..len).await else {
        return Ok(None);
    };
    let footer = PartSlice {
        offset: tail_start,
        len,
        bytes: tail,
    };
    let Ok(metadata) = ParquetMetaDataReader::new().parse_and_finish(&footer) else {
        return Ok(None);
    };
    let Ok(meta) = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new())
    else {
        return Ok(None);
    };
    let groups = meta.metadata().num_row_groups();
    let half = groups / 2;
    let Some(ranges) = (0..groups)
        .map(|g| span(&meta, g..g + 1))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(None);
    };
    // Each half fetches and decodes its row groups one at a time, so its fetch buffer
    // is one row group's bytes, reused, rather than half the part in fresh memory.
    let half_of = |groups: Range<usize>, capacity: usize| {
        let (meta, desc, key) = (meta.clone(), desc.clone(), part.key.clone());
        let ranges = &ranges;
        async move {
            let mut rows = Vec::with_capacity(capacity);
            let mut consolidated = as_of.is_some();
            for g in groups {
                let bytes = ranges[g].clone();
                let Some(fetched) = machine.get_blob_range(&key, bytes.clone()).await? else {
                    return Err(PersistError::Codec(CodecError::Part {
                        key,
                        reason: "part is missing".into(),
                    }));
                };
                let slice = PartSlice {
                    offset: bytes.start,
                    len,
                    bytes: fetched,
                };
                let (meta, desc, key) = (meta.clone(), desc.clone(), key.clone());
                let decoded = tokio::task::spawn_blocking(move || {
                    decode_row_groups(&key, &desc, slice, &meta, g..g + 1, as_of, &mut rows)
                        .map(|consolidated| (rows, consolidated))
                })
                .await
                .map_err(|e| {
                    PersistError::Codec(CodecError::Part {
                        key: part.key.clone(),
                        reason: format!("decoding thread failed: {e}"),
                    })
                })?;
                let (decoded, ok) = decoded?;
                rows = decoded;
                consolidated &= ok;
            }
            Ok::<_, PersistError>((rows, consolidated))
        }
    };
    let (all, second_half) = (rows_in(&meta, 0..groups), rows_in(&meta, half..groups));
    let ((head, head_ok), (tail, tail_ok)) =
        futures::try_join!(half_of(0..half, all), half_of(half..groups, second_half))?;
    let head_ok = append_checked(out, true, head, head_ok);
    Ok(Some(append_checked(out, head_ok, tail, tail_ok)))
}
