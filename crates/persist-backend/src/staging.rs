//! Staging files that a local file store leaves behind.
//!
//! `object_store`'s local file system writes each put to `{key}#{n}` and renames that
//! file over the key. A process killed between the two leaves the staging file behind.
//! Listings never show such names (the store hides `#`-and-digits names), so GC of
//! parts cannot see them; this sweep finds them on the file system itself.
//!
//! A staging file younger than the grace period may belong to a put in flight in
//! another process, and is kept.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// Whether `name` is a staging file's name: `{name}#{digits}`.
pub(crate) fn is_staging_name(name: &str) -> bool {
    match name.rsplit_once('#') {
        Some((base, suffix)) => {
            !base.is_empty() && !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// Deletes every staging file under `dir` (recursively) last modified at least `grace`
/// before `now`; returns how many went. A missing `dir` has none.
pub(crate) fn sweep(dir: &Path, grace: Duration, now: SystemTime) -> io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut deleted = 0;
    for entry in entries {
        let entry = entry?;
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_dir() {
            deleted += sweep(&path, grace, now)?;
            continue;
        }
        if !kind.is_file() || !entry.file_name().to_str().is_some_and(is_staging_name) {
            continue;
        }
        let modified = entry.metadata()?.modified()?;
        let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
        if age < grace {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => deleted += 1,
            // Renamed into place or swept by someone else meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names() {
        let cases = [
            ("0123#1", true),
            ("head#42", true),
            ("a#b#7", true),
            ("0123", false),
            ("0123#", false),
            ("#1", false),
            ("0123#x1", false),
            ("notes#v2", false),
            ("head.tmp", false),
        ];
        for (name, expected) in cases {
            assert_eq!(is_staging_name(name), expected, "{name}");
        }
    }

    #[test]
    fn sweeps_old_staging_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("shards/s1/parts/w1");
        std::fs::create_dir_all(&nested).unwrap();
        for name in ["p1#1", "p1", "p2#17", "README"] {
            std::fs::write(nested.join(name), b"x").unwrap();
        }
        std::fs::write(dir.path().join("strata-format#3"), b"x").unwrap();
        let now = SystemTime::now();
        // Too young: kept.
        assert_eq!(sweep(dir.path(), Duration::from_secs(600), now).unwrap(), 0);
        let later = now + Duration::from_secs(601);
        assert_eq!(
            sweep(dir.path(), Duration::from_secs(600), later).unwrap(),
            3
        );
        let mut left: Vec<_> = std::fs::read_dir(&nested)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["README", "p1"]);
        assert_eq!(
            sweep(&dir.path().join("missing"), Duration::ZERO, now).unwrap(),
            0
        );
    }
}
