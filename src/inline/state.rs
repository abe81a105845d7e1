//! The state directory: bans (with evidence and expiry), runtime allow/deny entries and failure
//! histories, saved so that a restart, `kill -9` or a reboot loses nothing.
//!
//! One JSON file, replaced atomically (write a temporary file, fsync it, rename over the old
//! one, fsync the directory): a crash leaves the old file or the new one, never half of one.
//! A file that cannot be read is moved aside (`state.json.corrupt-<time>`) and reported; the
//! daemon starts empty rather than not at all. Write errors (a full disk) are returned for the
//! caller to report; the old file stays in place.

use crate::engine::{Snapshot, Totals};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const FILE: &str = "state.json";
const FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct OnDisk {
    format: u32,
    saved_ns: u64,
    /// Counters since the first start.
    #[serde(default)]
    counters: Totals,
    #[serde(flatten)]
    snapshot: Snapshot,
}

pub struct StateDir {
    dir: PathBuf,
}

/// What loading found.
pub enum Loaded {
    /// No state yet (first start).
    Empty,
    State {
        snapshot: Snapshot,
        saved_ns: u64,
        counters: Totals,
    },
    /// The file was unreadable; it now sits at `moved_to`.
    Corrupt { error: String, moved_to: PathBuf },
}

impl StateDir {
    /// Opens (creating, mode 0700) the directory.
    pub fn open(dir: &Path) -> io::Result<StateDir> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    pub fn load(&self, now_ns: u64) -> io::Result<Loaded> {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Loaded::Empty),
            Err(e) => return Err(e),
        };
        let error = match decode(&text) {
            Ok(state) => return Ok(state),
            Err(e) => e,
        };
        let moved_to = self
            .dir
            .join(format!("{FILE}.corrupt-{}", now_ns / 1_000_000_000));
        fs::rename(&path, &moved_to)?;
        Ok(Loaded::Corrupt { error, moved_to })
    }

    /// Replaces the state file atomically.
    pub fn save(&self, snapshot: Snapshot, counters: Totals, now_ns: u64) -> io::Result<()> {
        let d = OnDisk {
            format: FORMAT,
            saved_ns: now_ns,
            counters,
            snapshot,
        };
        let bytes = serde_json::to_vec(&d).map_err(io::Error::other)?;
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, self.path())?;
            File::open(&self.dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

/// Reads a state file's bytes (fuzzed: `fuzz/control`).
pub fn decode(bytes: &[u8]) -> Result<Loaded, String> {
    match serde_json::from_slice::<OnDisk>(bytes) {
        Ok(d) if d.format == FORMAT => Ok(Loaded::State {
            snapshot: d.snapshot,
            saved_ns: d.saved_ns,
            counters: d.counters,
        }),
        Ok(d) => Err(format!("unknown state format {}", d.format)),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Ban, Evidence};

    fn snapshot() -> Snapshot {
        Snapshot {
            bans: vec![Ban {
                source: "198.18.0.77".into(),
                since_ns: 1,
                until_ns: None,
                tier: "tier-2".into(),
                reason: "auth failures".into(),
                evidence: Evidence {
                    failures: 12,
                    users: vec!["100".into()],
                    ..Default::default()
                },
            }],
            ..Default::default()
        }
    }

    #[test]
    fn saves_loads_and_moves_a_corrupt_file_aside() {
        let t = tempfile::tempdir().unwrap();
        let dir = StateDir::open(&t.path().join("state")).unwrap();
        assert!(matches!(dir.load(0).unwrap(), Loaded::Empty));
        let mut counters = Totals::default();
        counters.reasons.insert("scanner".into(), 41);
        dir.save(snapshot(), counters.clone(), 5).unwrap();
        match dir.load(6).unwrap() {
            Loaded::State {
                snapshot,
                saved_ns,
                counters: c,
            } => {
                assert_eq!(saved_ns, 5);
                assert_eq!(c, counters);
                assert_eq!(snapshot.bans, super::tests::snapshot().bans);
            }
            _ => panic!("state not read back"),
        }
        // A torn or hand-edited file: reported, moved aside, and the next load starts empty.
        fs::write(dir.path(), b"{\"format\":1,\"bans\":[").unwrap();
        match dir.load(7_000_000_000).unwrap() {
            Loaded::Corrupt { moved_to, error } => {
                assert!(moved_to.ends_with("state.json.corrupt-7"), "{moved_to:?}");
                assert!(moved_to.exists());
                assert!(error.contains("EOF"), "{error}");
            }
            _ => panic!("corrupt file not reported"),
        }
        assert!(matches!(dir.load(8).unwrap(), Loaded::Empty));
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let t = tempfile::tempdir().unwrap();
        let dir = StateDir::open(t.path()).unwrap();
        dir.save(snapshot(), Totals::default(), 1).unwrap();
        // A directory where the temporary file goes makes the write fail, like a full disk.
        fs::create_dir(t.path().join("state.json.tmp")).unwrap();
        assert!(dir.save(Snapshot::default(), Totals::default(), 2).is_err());
        assert!(matches!(
            dir.load(3).unwrap(),
            Loaded::State { saved_ns: 1, .. }
        ));
    }
}
