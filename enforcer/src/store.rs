//! The decision-event log: an append-only JSON-lines file, the source of truth, and a bounded
//! in-memory ring of the most recent records that answers almost every query.
//!
//! On disk, `<data-dir>/events.jsonl` holds one record per line:
//!
//! ```json
//! {"seq":42,"received_unix_ms":1718000000123,"event":{"decision_id":"…", …}}
//! ```
//!
//! The event is wrapped rather than flattened so the enforcer's own fields (`seq`, the receive
//! time, and later the audit receipt) can never collide with a field the filter adds to
//! [`DecisionEvent`]. `seq` starts at 1 and grows by one per accepted event, across restarts.
//!
//! Durability: a batch is written with one `write` and made durable with one `fdatasync` before
//! the caller is told it was accepted. A crash can therefore leave only the tail of the last
//! batch half-written; [`EventStore::open`] drops such a torn last line (and truncates the file
//! back to the last whole record so the next append starts on a line of its own). Anything else
//! that does not parse is corruption and refuses to start, naming the line: silently skipping
//! records would break the promise that events are never lost unnoticed.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use interlock_policies::DecisionEvent;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;

/// File name of the event log inside the data directory.
pub const EVENTS_FILE: &str = "events.jsonl";

/// Records kept in memory. At roughly 1 KiB per record this is about 10 MiB.
pub const DEFAULT_RING_CAPACITY: usize = 10_000;

/// One record of the log, as stored and as served by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredEvent {
    /// Assigned by the enforcer: 1, 2, 3, … in the order events were made durable.
    pub seq: u64,
    /// When the enforcer accepted the batch (its clock, not the filter's).
    pub received_unix_ms: u64,
    /// The event as the filter sent it, re-serialised from [`DecisionEvent`].
    pub event: DecisionEvent,
}

/// A record ready to serve: its serialised form is kept so queries never re-serialise, and the
/// bytes served are the bytes on disk.
#[derive(Debug, Clone)]
pub struct StoredLine {
    pub seq: u64,
    pub decision_id: Arc<str>,
    /// The record's JSON object, without the trailing newline.
    pub json: Arc<str>,
}

/// Why the log cannot be opened, read or appended to.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot open the event log {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read the event log {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "the event log {path} is corrupt at line {line} (byte offset {offset}): {reason}; it was edited or damaged, move it aside to start a new log"
    )]
    Corrupt { path: PathBuf, line: u64, offset: u64, reason: String },
    #[error("cannot append to the event log {path}: {source}")]
    Append { path: PathBuf, source: io::Error },
    #[error(
        "the event log {path} is unusable until the enforcer restarts: an append failed and could not be rolled back ({reason})"
    )]
    Broken { path: PathBuf, reason: String },
    #[error("cannot encode an event record: {0}")]
    Encode(#[source] serde_json::Error),
    #[error("event store task failed: {0}")]
    Task(String),
    #[error("event store lock poisoned by an earlier failure")]
    Poisoned,
}

/// A final line that was dropped at start because a write was cut short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornLine {
    /// 1-based line number in the file.
    pub line: u64,
    /// Byte offset where it started; the file was truncated to this length.
    pub offset: u64,
    /// Its length in bytes.
    pub len: u64,
    /// Why it was considered torn.
    pub reason: String,
}

/// What [`EventStore::open`] found in an existing log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub path: PathBuf,
    /// Whole records read.
    pub records: u64,
    /// Highest seq on disk (0 for a new log).
    pub last_seq: u64,
    pub torn: Option<TornLine>,
}

/// The event log. Cheap to clone; all clones share one file and one ring.
#[derive(Debug, Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// Serialises appends, so seq order is file order. Held across the write and fsync: batches
    /// are durable one after another, which is what a single log file can offer anyway.
    writer: Mutex<Writer>,
    ring: RwLock<Ring>,
    /// Highest durable seq. Long polls wait on it; it only moves after the ring holds the records.
    committed: watch::Sender<u64>,
}

#[derive(Debug)]
struct Writer {
    file: File,
    /// File length after the last whole record: where a failed append is rolled back to.
    len: u64,
    last_seq: u64,
    /// Set when a failed append could not be rolled back; from then on appends are refused
    /// rather than written after a half record.
    broken: Option<String>,
}

#[derive(Debug)]
struct Ring {
    entries: VecDeque<StoredLine>,
    capacity: usize,
    /// First seq in the file, to tell whether records older than the ring exist on disk.
    file_first_seq: Option<u64>,
}

impl Ring {
    fn push(&mut self, line: StoredLine) {
        if self.file_first_seq.is_none() {
            self.file_first_seq = Some(line.seq);
        }
        while self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        self.entries.push_back(line);
    }

    /// Whether every record with seq > `after` that exists is in the ring.
    fn covers(&self, after: u64) -> bool {
        match (self.entries.front(), self.file_first_seq) {
            (None, _) | (_, None) => true,
            (Some(front), Some(first)) => first >= front.seq || after.saturating_add(1) >= front.seq,
        }
    }

    fn after(&self, after: u64, limit: usize) -> Vec<StoredLine> {
        // Seqs in the ring are strictly increasing, so the start is a binary search.
        let start = self.entries.partition_point(|e| e.seq <= after);
        self.entries.range(start..).take(limit).cloned().collect()
    }
}

/// Fields read back from the file when a query reaches past the ring; the rest of the record is
/// served as stored.
#[derive(Deserialize)]
struct RecordKey {
    seq: u64,
    event: EventKey,
}

#[derive(Deserialize)]
struct EventKey {
    decision_id: String,
}

impl EventStore {
    /// Opens (creating if needed) the log in `dir`, recovering the next seq and the most recent
    /// `capacity` records. Blocking: call before the runtime serves, or from `spawn_blocking`.
    pub fn open(dir: &Path, capacity: usize) -> Result<(Self, Recovery), StoreError> {
        let path = dir.join(EVENTS_FILE);
        let open_err = |source| StoreError::Open { path: path.clone(), source };
        std::fs::create_dir_all(dir).map_err(open_err)?;
        let created = !path.exists();
        let file = OpenOptions::new().read(true).append(true).create(true).open(&path).map_err(open_err)?;
        if created {
            // A new file's directory entry is only durable once the directory is synced.
            File::open(dir).and_then(|d| d.sync_all()).map_err(open_err)?;
        }

        let mut ring = Ring { entries: VecDeque::new(), capacity: capacity.max(1), file_first_seq: None };
        let scan = recover(&path, &mut ring)?;
        if let Some(torn) = &scan.torn {
            file.set_len(torn.offset)
                .and_then(|()| file.sync_data())
                .map_err(|source| StoreError::Open { path: path.clone(), source })?;
        }
        let recovery = Recovery { path: path.clone(), records: scan.records, last_seq: scan.last_seq, torn: scan.torn };
        let writer = Writer { file, len: scan.good_len, last_seq: scan.last_seq, broken: None };
        let (committed, _) = watch::channel(scan.last_seq);
        let inner = Inner { path, writer: Mutex::new(writer), ring: RwLock::new(ring), committed };
        Ok((Self { inner: Arc::new(inner) }, recovery))
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Highest seq that is durable (0 when the log is empty).
    pub fn last_seq(&self) -> u64 {
        *self.inner.committed.borrow()
    }

    /// A receiver that sees [`Self::last_seq`] change; subscribe before querying so an append
    /// between the query and the wait is not missed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.committed.subscribe()
    }

    /// Appends a batch and makes it durable; returns the seqs assigned (first, last), or `None`
    /// for an empty batch.
    pub async fn append(&self, events: Vec<DecisionEvent>) -> Result<Option<(u64, u64)>, StoreError> {
        let inner = Arc::clone(&self.inner);
        let received_unix_ms = now_unix_ms();
        tokio::task::spawn_blocking(move || inner.append_blocking(events, received_unix_ms))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Records with seq > `after`, oldest first, at most `limit`.
    pub async fn after(&self, after: u64, limit: usize) -> Result<Vec<StoredLine>, StoreError> {
        {
            let ring = self.inner.ring.read().map_err(|_| StoreError::Poisoned)?;
            if ring.covers(after) {
                return Ok(ring.after(after, limit));
            }
        }
        // Older than the ring: read the file. Rare (a consumer far behind), so a scan is
        // acceptable; an offset index can replace it if it ever is not.
        let inner = Arc::clone(&self.inner);
        let until = self.last_seq();
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            scan_file(&inner.path, until, |line| {
                if line.seq > after {
                    found.push(line);
                }
                found.len() < limit
            })?;
            Ok(found)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// The record of a decision. Should a decision have been delivered twice, the most recent
    /// record in memory is returned, else the first on disk.
    pub async fn find(&self, decision_id: &str) -> Result<Option<StoredLine>, StoreError> {
        {
            let ring = self.inner.ring.read().map_err(|_| StoreError::Poisoned)?;
            if let Some(hit) = ring.entries.iter().rev().find(|e| &*e.decision_id == decision_id) {
                return Ok(Some(hit.clone()));
            }
            if ring.covers(0) {
                return Ok(None);
            }
        }
        let inner = Arc::clone(&self.inner);
        let until = self.last_seq();
        let wanted = decision_id.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut found = None;
            scan_file(&inner.path, until, |line| {
                if *line.decision_id == *wanted {
                    found = Some(line);
                    return false;
                }
                true
            })?;
            Ok(found)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

impl Inner {
    fn append_blocking(
        &self,
        events: Vec<DecisionEvent>,
        received_unix_ms: u64,
    ) -> Result<Option<(u64, u64)>, StoreError> {
        if events.is_empty() {
            return Ok(None);
        }
        let mut writer = self.writer.lock().map_err(|_| StoreError::Poisoned)?;
        if let Some(reason) = &writer.broken {
            return Err(StoreError::Broken { path: self.path.clone(), reason: reason.clone() });
        }
        let first = writer.last_seq.saturating_add(1);
        let mut seq = writer.last_seq;
        let mut buf = Vec::new();
        let mut lines = Vec::with_capacity(events.len());
        for event in events {
            seq = seq.saturating_add(1);
            let decision_id: Arc<str> = Arc::from(event.decision_id.as_str());
            let record = StoredEvent { seq, received_unix_ms, event };
            let json = serde_json::to_string(&record).map_err(StoreError::Encode)?;
            buf.extend_from_slice(json.as_bytes());
            buf.push(b'\n');
            lines.push(StoredLine { seq, decision_id, json: Arc::from(json) });
        }

        if let Err(source) = writer.file.write_all(&buf).and_then(|()| writer.file.sync_data()) {
            // Take back whatever part of the batch reached the file, so the log never holds a
            // record the sender was told failed, nor a half line before the next batch.
            let rollback_to = writer.len;
            if let Err(e) = writer.file.set_len(rollback_to).and_then(|()| writer.file.sync_data()) {
                writer.broken =
                    Some(format!("append failed ({source}), truncating back to {rollback_to} bytes failed ({e})"));
            }
            return Err(StoreError::Append { path: self.path.clone(), source });
        }
        writer.len = writer.len.saturating_add(buf.len() as u64);
        writer.last_seq = seq;

        let mut ring = self.ring.write().map_err(|_| StoreError::Poisoned)?;
        for line in lines {
            ring.push(line);
        }
        drop(ring);
        // Still under the writer lock, so `committed` only ever increases.
        self.committed.send_replace(seq);
        Ok(Some((first, seq)))
    }
}

struct Scan {
    records: u64,
    last_seq: u64,
    /// Length of the file up to and including the last whole record.
    good_len: u64,
    torn: Option<TornLine>,
}

/// Reads the whole log, checking every record, filling the ring with the most recent ones.
fn recover(path: &Path, ring: &mut Ring) -> Result<Scan, StoreError> {
    let read_err = |source| StoreError::Read { path: path.to_owned(), source };
    let mut reader = BufReader::new(File::open(path).map_err(read_err)?);
    let mut scan = Scan { records: 0, last_seq: 0, good_len: 0, torn: None };
    let mut offset: u64 = 0;
    let mut line_no: u64 = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        line_no = line_no.saturating_add(1);
        // A line that failed to parse is only forgivable as the very last one.
        if let Some(torn) = scan.torn.take() {
            return Err(StoreError::Corrupt {
                path: path.to_owned(),
                line: torn.line,
                offset: torn.offset,
                reason: torn.reason,
            });
        }
        let parsed = if buf.last() == Some(&b'\n') {
            parse_record(buf.strip_suffix(b"\n").unwrap_or(&buf))
        } else {
            Err("the line has no terminating newline".to_owned())
        };
        match parsed {
            Ok(line) => {
                if line.seq <= scan.last_seq {
                    return Err(StoreError::Corrupt {
                        path: path.to_owned(),
                        line: line_no,
                        offset,
                        reason: format!("seq {} does not follow seq {}", line.seq, scan.last_seq),
                    });
                }
                scan.last_seq = line.seq;
                scan.records = scan.records.saturating_add(1);
                scan.good_len = offset.saturating_add(n as u64);
                ring.push(line);
            }
            Err(reason) => scan.torn = Some(TornLine { line: line_no, offset, len: n as u64, reason }),
        }
        offset = offset.saturating_add(n as u64);
    }
    Ok(scan)
}

/// A stored line, fully validated: recovery is the one time every record is checked.
fn parse_record(bytes: &[u8]) -> Result<StoredLine, String> {
    let record: StoredEvent = serde_json::from_slice(bytes).map_err(|e| format!("not a record: {e}"))?;
    let json = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    Ok(StoredLine { seq: record.seq, decision_id: Arc::from(record.event.decision_id.as_str()), json: Arc::from(json) })
}

/// Streams the records on disk with seq <= `until` to `visit` until it returns false. Records
/// past `until` are being appended (not yet durable) and are not served.
fn scan_file(path: &Path, until: u64, mut visit: impl FnMut(StoredLine) -> bool) -> Result<(), StoreError> {
    let read_err = |source| StoreError::Read { path: path.to_owned(), source };
    let mut reader = BufReader::new(File::open(path).map_err(read_err)?);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).map_err(read_err)? == 0 {
            return Ok(());
        }
        let Some(bytes) = buf.strip_suffix(b"\n") else {
            return Ok(()); // a record still being written
        };
        // Checked at start and written by us since: a line that does not parse here is one
        // being written concurrently, which can only be past `until`.
        let (Ok(key), Ok(json)) = (serde_json::from_slice::<RecordKey>(bytes), std::str::from_utf8(bytes)) else {
            return Ok(());
        };
        if key.seq > until {
            return Ok(());
        }
        let line = StoredLine { seq: key.seq, decision_id: Arc::from(key.event.decision_id), json: Arc::from(json) };
        if !visit(line) {
            return Ok(());
        }
    }
}

fn now_unix_ms() -> u64 {
    // A clock before 1970 is a broken host; recording 0 beats refusing the event.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "interlock-enforcer-{name}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn event(id: &str) -> DecisionEvent {
        serde_json::from_value(serde_json::json!({
            "decision_id": id,
            "time_unix_ms": 1_718_000_000_000u64,
            "policy_version": "v1",
            "rule": "deny-admin",
            "action": "deny",
            "status": 403,
            "mode": "enforce",
            "reason": "admin API",
            "identity": {"agent": "triage-bot", "user": "alice", "session": "s1"},
            "request": {"method": "GET", "authority": "crm.local", "path": "/api/admin/x"},
            "worker": "node/0"
        }))
        .unwrap()
    }

    fn ids(lines: &[StoredLine]) -> Vec<(u64, String)> {
        lines.iter().map(|l| (l.seq, l.decision_id.to_string())).collect()
    }

    #[tokio::test]
    async fn appends_are_durable_and_seq_continues_across_restart() {
        let dir = TempDir::new("restart");
        {
            let (store, rec) = EventStore::open(&dir.0, 100).unwrap();
            assert_eq!(rec.last_seq, 0);
            assert_eq!(store.append(vec![event("a"), event("b")]).await.unwrap(), Some((1, 2)));
            assert_eq!(store.append(vec![event("c")]).await.unwrap(), Some((3, 3)));
            assert_eq!(store.append(vec![]).await.unwrap(), None);
            assert_eq!(store.last_seq(), 3);
        }
        let (store, rec) = EventStore::open(&dir.0, 100).unwrap();
        assert_eq!((rec.records, rec.last_seq, rec.torn.clone()), (3, 3, None));
        assert_eq!(store.append(vec![event("d")]).await.unwrap(), Some((4, 4)));
        let all = store.after(0, 100).await.unwrap();
        assert_eq!(ids(&all), vec![(1, "a".into()), (2, "b".into()), (3, "c".into()), (4, "d".into())]);

        // Each line on disk is a whole record carrying the event as sent.
        let text = std::fs::read_to_string(store.path()).unwrap();
        let records: Vec<StoredEvent> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(records.len(), 4);
        assert_eq!(records[3].seq, 4);
        assert_eq!(records[3].event, event("d"));
    }

    #[tokio::test]
    async fn torn_last_line_is_dropped_and_the_next_append_starts_on_its_own_line() {
        let dir = TempDir::new("torn");
        {
            let (store, _) = EventStore::open(&dir.0, 100).unwrap();
            store.append(vec![event("a"), event("b")]).await.unwrap();
        }
        let path = dir.0.join(EVENTS_FILE);
        let whole = std::fs::metadata(&path).unwrap().len();
        // A crash in the middle of writing the third record.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"seq":3,"received_unix_ms":1,"event":{"decision_id":"c","#).unwrap();
        drop(f);

        let (store, rec) = EventStore::open(&dir.0, 100).unwrap();
        let torn = rec.torn.expect("torn line reported");
        assert_eq!((torn.line, torn.offset), (3, whole));
        assert_eq!(rec.last_seq, 2);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), whole, "file truncated to the last whole record");

        assert_eq!(store.append(vec![event("c")]).await.unwrap(), Some((3, 3)));
        drop(store);
        let (store, rec) = EventStore::open(&dir.0, 100).unwrap();
        assert_eq!((rec.records, rec.last_seq, rec.torn), (3, 3, None));
        assert_eq!(ids(&store.after(1, 10).await.unwrap()), vec![(2, "b".into()), (3, "c".into())]);
    }

    #[tokio::test]
    async fn a_whole_but_unparsable_last_line_counts_as_torn() {
        let dir = TempDir::new("torn-nl");
        {
            let (store, _) = EventStore::open(&dir.0, 100).unwrap();
            store.append(vec![event("a")]).await.unwrap();
        }
        let path = dir.0.join(EVENTS_FILE);
        // Zeros after a crash: the file grew but the data never landed.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0u8; 32]).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        let (_, rec) = EventStore::open(&dir.0, 100).unwrap();
        assert_eq!(rec.last_seq, 1);
        assert_eq!(rec.torn.map(|t| t.line), Some(2));
    }

    #[tokio::test]
    async fn a_bad_line_before_the_end_refuses_to_start() {
        let dir = TempDir::new("corrupt");
        {
            let (store, _) = EventStore::open(&dir.0, 100).unwrap();
            store.append(vec![event("a")]).await.unwrap();
        }
        let path = dir.0.join(EVENTS_FILE);
        let good = std::fs::read_to_string(&path).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"garbage\n").unwrap();
        f.write_all(good.replace("\"seq\":1", "\"seq\":2").as_bytes()).unwrap();
        drop(f);
        let err = EventStore::open(&dir.0, 100).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { line: 2, .. }), "{err}");
    }

    #[tokio::test]
    async fn seq_going_backwards_is_corruption() {
        let dir = TempDir::new("backwards");
        {
            let (store, _) = EventStore::open(&dir.0, 100).unwrap();
            store.append(vec![event("a")]).await.unwrap();
        }
        let path = dir.0.join(EVENTS_FILE);
        let good = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{good}{good}")).unwrap();
        let err = EventStore::open(&dir.0, 100).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { line: 2, .. }), "{err}");
    }

    #[tokio::test]
    async fn queries_older_than_the_ring_read_the_file() {
        let dir = TempDir::new("ring");
        let (store, _) = EventStore::open(&dir.0, 3).unwrap();
        let batch: Vec<_> = (1..=10).map(|i| event(&format!("e{i}"))).collect();
        store.append(batch).await.unwrap();

        // Served from memory.
        assert_eq!(ids(&store.after(8, 10).await.unwrap()), vec![(9, "e9".into()), (10, "e10".into())]);
        // Reaches past the ring (which holds 8..=10): the file answers, limit applies.
        assert_eq!(
            ids(&store.after(0, 4).await.unwrap()),
            vec![(1, "e1".into()), (2, "e2".into()), (3, "e3".into()), (4, "e4".into())]
        );
        assert_eq!(store.after(10, 10).await.unwrap().len(), 0);

        assert_eq!(store.find("e9").await.unwrap().map(|l| l.seq), Some(9));
        assert_eq!(store.find("e2").await.unwrap().map(|l| l.seq), Some(2));
        assert!(store.find("nope").await.unwrap().is_none());

        // After a restart the ring is refilled with the most recent records.
        drop(store);
        let (store, rec) = EventStore::open(&dir.0, 3).unwrap();
        assert_eq!(rec.records, 10);
        assert_eq!(ids(&store.after(7, 1).await.unwrap()), vec![(8, "e8".into())]);
        assert_eq!(ids(&store.after(1, 1).await.unwrap()), vec![(2, "e2".into())]);
    }

    #[tokio::test]
    async fn subscribers_see_the_committed_seq() {
        let dir = TempDir::new("watch");
        let (store, _) = EventStore::open(&dir.0, 10).unwrap();
        let mut rx = store.subscribe();
        let waiter = tokio::spawn(async move { *rx.wait_for(|&s| s >= 2).await.unwrap() });
        store.append(vec![event("a"), event("b")]).await.unwrap();
        assert_eq!(waiter.await.unwrap(), 2);
    }
}
