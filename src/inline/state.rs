//! The state directory: bans (with evidence and expiry), runtime allow/deny entries and failure
//! histories, saved so that a restart, `kill -9` or a reboot loses nothing.
//!
//! One JSON file, replaced atomically (write a temporary file, fsync it, rename over the old
//! one, fsync the directory): a crash leaves the old file or the new one, never half of one.
//! A file that cannot be read is moved aside (`state.json.corrupt-<time>`) and reported; the
//! daemon starts empty rather than not at all. Write errors (a full disk) are returned for the
//! caller to report; the old file stays in place.
//!
//! Beside it, `calls.bin`: the calls in progress (dialogs, the PBX's open requests) as keyed
//! hashes with the key, so that a restart does not cut them, and the credentialed requests
//! awaiting an answer, so that a failure answering one after a restart still counts. Binary
//! and checksummed, renamed into place but not synced (see [`StateDir::save_calls`]); one that
//! cannot be read is ignored.

use crate::engine::{Calls, SavedTxn, Snapshot, Totals};
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const FILE: &str = "state.json";
const FORMAT: u32 = 1;
/// Calls in progress: binary (they can number hundreds of thousands), apart from the bans.
const CALLS_FILE: &str = "calls.bin";
const CALLS_MAGIC: &[u8; 8] = b"SWCALLS2";
/// The first format: dialogs and PBX requests, no transactions (read, never written).
const CALLS_MAGIC_V1: &[u8; 8] = b"SWCALLS1";

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
        self.replace(FILE, &bytes, true)
    }

    pub fn calls_path(&self) -> PathBuf {
        self.dir.join(CALLS_FILE)
    }

    /// The calls an earlier run saved, with the seed their keys were made under; `None` when
    /// there are none (first start). A file that cannot be read is an error to report: it is
    /// replaced by the next save, and calls are then only those seen from now on.
    pub fn load_calls(&self) -> Result<Option<SavedCalls>, String> {
        match fs::read(self.calls_path()) {
            Ok(b) => decode_calls(&b).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Replaces the calls file atomically. Not synced to disk: a crash of sipwall leaves the
    /// old file or the new one (the rename), and a power cut ends the calls it would keep.
    pub fn save_calls(&self, saved: &SavedCalls) -> io::Result<()> {
        self.replace(CALLS_FILE, &encode_calls(saved), false)
    }

    /// Writes `name` as a temporary file renamed over the old one; `durable`: synced to disk,
    /// the file and the directory, before this returns. On error the old file stays.
    fn replace(&self, name: &str, bytes: &[u8], durable: bool) -> io::Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(bytes)?;
            if durable {
                f.sync_all()?;
            }
            fs::rename(&tmp, self.dir.join(name))?;
            if durable {
                File::open(&self.dir)?.sync_all()?;
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }
}

/// Calls saved by a run: the seed of their keys, when, and the calls themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedCalls {
    pub seed: [u64; 4],
    pub saved_ns: u64,
    pub calls: Calls,
}

/// FNV-1a: catches a torn or foreign file; nothing here needs a keyed hash.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The calls file: magic, seed, saved time, three counts, the (key, time) pairs of dialogs and
/// PBX requests, the credentialed transactions, a checksum of all before it; integers little
/// endian. A transaction: key, expiry, source key (16 bytes), address (family 4 or 6, then 16
/// bytes, an IPv4 address in the first 4 and zeros after), user and line lengths (a byte
/// each), then their bytes.
pub fn encode_calls(s: &SavedCalls) -> Vec<u8> {
    let (d, p, t) = (&s.calls.dialogs, &s.calls.pbx_requests, &s.calls.txns);
    let texts: usize = t.iter().map(|t| t.user.len() + t.line.len()).sum();
    let mut b =
        Vec::with_capacity(HEAD + 16 * (d.len() + p.len()) + TXN_FIXED * t.len() + texts + 8);
    b.extend_from_slice(CALLS_MAGIC);
    for w in s.seed.iter().chain([&s.saved_ns]) {
        b.extend_from_slice(&w.to_le_bytes());
    }
    for n in [d.len(), p.len(), t.len()] {
        b.extend_from_slice(&(n as u32).to_le_bytes());
    }
    for &(k, t) in d.iter().chain(p) {
        b.extend_from_slice(&k.to_le_bytes());
        b.extend_from_slice(&t.to_le_bytes());
    }
    for t in t {
        b.extend_from_slice(&t.key.to_le_bytes());
        b.extend_from_slice(&t.expires.to_le_bytes());
        b.extend_from_slice(&t.source.to_le_bytes());
        let mut ip = [0u8; 16];
        let family = match t.ip {
            IpAddr::V4(a) => {
                ip[..4].copy_from_slice(&a.octets());
                4
            }
            IpAddr::V6(a) => {
                ip = a.octets();
                6
            }
        };
        b.push(family);
        b.extend_from_slice(&ip);
        // The tables cut both at 64 and 160 bytes; a longer one is cut here the same way.
        let (user, line) = (
            &t.user[..t.user.len().min(255)],
            &t.line[..t.line.len().min(255)],
        );
        b.extend_from_slice(&[user.len() as u8, line.len() as u8]);
        b.extend_from_slice(user);
        b.extend_from_slice(line);
    }
    let sum = fnv(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

/// Magic, seed, saved time, three counts.
const HEAD: usize = 8 + 32 + 8 + 12;
/// A transaction's bytes before its texts.
const TXN_FIXED: usize = 8 + 8 + 16 + 1 + 16 + 2;

/// Reads a calls file's bytes (fuzzed: `fuzz/control`): exactly what [`encode_calls`] wrote,
/// or an error saying what is wrong. A file of the first format (no transactions) is read too.
pub fn decode_calls(b: &[u8]) -> Result<SavedCalls, String> {
    let head = match b.get(..8) {
        Some(m) if m == CALLS_MAGIC => HEAD,
        Some(m) if m == CALLS_MAGIC_V1 => HEAD - 4,
        _ => return Err("not a sipwall calls file".into()),
    };
    if b.len() < head + 8 {
        return Err("calls file cut short".into());
    }
    let end = b.len() - 8;
    let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
    if fnv(&b[..end]) != u64_at(end) {
        return Err("calls file checksum mismatch".into());
    }
    let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default());
    let (nd, np) = (u32_at(48) as usize, u32_at(52) as usize);
    let nt = if head == HEAD { u32_at(56) as usize } else { 0 };
    // Each count checked against the bytes left before anything is sized by it.
    let pairs_end = head as u64 + 16 * (nd as u64 + np as u64);
    if pairs_end + (TXN_FIXED as u64) * nt as u64 > end as u64 {
        return Err("calls file cut short".into());
    }
    let pairs = |from: usize, n: usize| -> Vec<(u64, u64)> {
        (0..n)
            .map(|i| (u64_at(from + 16 * i), u64_at(from + 16 * i + 8)))
            .collect()
    };
    let mut at = pairs_end as usize;
    let mut txns = Vec::with_capacity(nt);
    for _ in 0..nt {
        let fixed = b.get(at..at + TXN_FIXED).ok_or("calls file cut short")?;
        let source = u128::from_le_bytes(fixed[16..32].try_into().unwrap_or_default());
        let ip: [u8; 16] = fixed[33..49].try_into().unwrap_or_default();
        let ip = match fixed[32] {
            4 if ip[4..] == [0; 12] => IpAddr::from([ip[0], ip[1], ip[2], ip[3]]),
            6 => IpAddr::from(ip),
            _ => return Err("calls file has a bad address".into()),
        };
        let (nu, nl) = (usize::from(fixed[49]), usize::from(fixed[50]));
        let text = b
            .get(at + TXN_FIXED..at + TXN_FIXED + nu + nl)
            .filter(|_| at + TXN_FIXED + nu + nl <= end)
            .ok_or("calls file cut short")?;
        txns.push(SavedTxn {
            key: u64_at(at),
            expires: u64_at(at + 8),
            source,
            ip,
            user: text[..nu].to_vec(),
            line: text[nu..].to_vec(),
        });
        at += TXN_FIXED + nu + nl;
    }
    if at != end {
        return Err("calls file too long".into());
    }
    Ok(SavedCalls {
        seed: [u64_at(8), u64_at(16), u64_at(24), u64_at(32)],
        saved_ns: u64_at(40),
        calls: Calls {
            dialogs: pairs(head, nd),
            pbx_requests: pairs(head + 16 * nd, np),
            txns,
        },
    })
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
    fn calls_read_back_and_a_damaged_file_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = StateDir::open(t.path()).unwrap();
        assert_eq!(dir.load_calls(), Ok(None));
        let saved = SavedCalls {
            seed: [1, 2, 3, u64::MAX],
            saved_ns: 7,
            calls: Calls {
                dialogs: vec![(10, 100), (11, 101)],
                pbx_requests: vec![(12, 102)],
                txns: vec![
                    SavedTxn {
                        key: 13,
                        expires: 103,
                        source: u128::MAX - 1,
                        ip: "198.18.0.9".parse().unwrap(),
                        user: b"1001".to_vec(),
                        line: b"REGISTER sip:sip.example.com SIP/2.0".to_vec(),
                    },
                    SavedTxn {
                        key: 14,
                        expires: 104,
                        source: 5,
                        ip: "2001:db8::9".parse().unwrap(),
                        user: Vec::new(),
                        line: Vec::new(),
                    },
                ],
            },
        };
        dir.save_calls(&saved).unwrap();
        assert_eq!(dir.load_calls(), Ok(Some(saved.clone())));
        let bytes = fs::read(dir.calls_path()).unwrap();
        assert_eq!(bytes.len(), 60 + 3 * 16 + 2 * 51 + 4 + 36 + 8);
        // Every cut and every flipped byte is refused, none read as other calls.
        for n in 0..bytes.len() {
            assert!(decode_calls(&bytes[..n]).is_err(), "cut at {n}");
            let mut b = bytes.clone();
            b[n] ^= 0x40;
            assert!(decode_calls(&b).is_err(), "byte {n} flipped");
        }
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[0; 16]);
        assert!(decode_calls(&longer).is_err());
        // A count that does not fit the length (would overflow if added unchecked), with its
        // checksum made right: refused by the lengths, not only by the checksum.
        for at in [48, 52, 56] {
            let mut b = bytes.clone();
            b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            let end = b.len() - 8;
            let sum = fnv(&b[..end]);
            b[end..].copy_from_slice(&sum.to_le_bytes());
            assert!(decode_calls(&b).is_err(), "count at {at}");
        }
        // A file of the first format (no transactions), as the last version wrote it.
        let mut v1 = Vec::from(&b"SWCALLS1"[..]);
        for w in [1u64, 2, 3, u64::MAX, 7] {
            v1.extend_from_slice(&w.to_le_bytes());
        }
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&0u32.to_le_bytes());
        v1.extend_from_slice(&10u64.to_le_bytes());
        v1.extend_from_slice(&100u64.to_le_bytes());
        let sum = fnv(&v1);
        v1.extend_from_slice(&sum.to_le_bytes());
        let old = decode_calls(&v1).unwrap();
        assert_eq!(
            (old.seed, old.calls.dialogs, old.calls.txns.len()),
            ([1, 2, 3, u64::MAX], vec![(10, 100)], 0)
        );
        fs::write(dir.calls_path(), b"junk").unwrap();
        assert!(dir.load_calls().is_err());
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
