//! The event log: every operation the store accepted, appended to segment files in order.
//!
//! A segment is `log/<its number, 20 digits>.log`, a run of records. A record is a 4-byte
//! little-endian length, an 8-byte xxh3 of the payload and the payload (an [`Op`](super::op::Op)
//! as JSON). A group of records reaches the file in one `write` (group commit), fdatasync'ed
//! with [`Durability::Fsync`](super::Durability). A crash can leave a torn record at the end of
//! the last segment; reading stops there and the writer cuts it off, since it was never
//! answered. A bad record anywhere else is corruption, and the store refuses to open.
//!
//! Segments roll over at [`SEGMENT_BYTES`]. Those that precede the last snapshot are kept for
//! the retention period (the backtest replays them) and then deleted whole.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// A segment rolls over once it holds this much.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// Length and checksum before each payload.
const HEADER: usize = 12;

/// A place in the log: a segment and a byte offset in it. Positions order as the log does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Why the log cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot read the event log in {dir}: {source}")]
    Io { dir: String, source: io::Error },
    #[error("the event log is damaged: {path} at byte {offset}: {what}")]
    Corrupt {
        path: String,
        offset: u64,
        what: String,
    },
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}.log"))
}

/// The segments in `dir`, in order.
pub fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push(n);
    }
    out.sort_unstable();
    Ok(out)
}

fn checksum(payload: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(payload)
}

/// Reads every record from `from` on, in order, handing each payload to `each`; returns the
/// position after the last good record, where writing continues. A torn tail of the last
/// segment is cut off. `each` may fail (a record that does not decode): that stops the read.
pub fn replay<E>(
    dir: &Path,
    from: Position,
    mut each: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<Result<Position, E>, LogError> {
    let io_err = |source| LogError::Io {
        dir: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io_err)?;
    let all = segments(dir).map_err(io_err)?;
    let todo: Vec<u64> = all.iter().copied().filter(|s| *s >= from.segment).collect();
    let mut end = from;
    for (i, &segment) in todo.iter().enumerate() {
        let last = i + 1 == todo.len();
        let path = segment_path(dir, segment);
        let bytes = std::fs::read(&path).map_err(io_err)?;
        let start = if segment == from.segment {
            from.offset
        } else {
            0
        };
        let corrupt = |offset: u64, what: &str| LogError::Corrupt {
            path: path.display().to_string(),
            offset,
            what: what.to_owned(),
        };
        if start > bytes.len() as u64 {
            return Err(corrupt(
                bytes.len() as u64,
                "the snapshot points past the segment's end",
            ));
        }
        let mut at = start as usize;
        let good_end = loop {
            let rest = &bytes[at..];
            if rest.is_empty() {
                break at;
            }
            let torn = match record(rest) {
                Ok(payload) => {
                    if let Err(e) = each(payload) {
                        return Ok(Err(e));
                    }
                    at += HEADER + payload.len();
                    continue;
                }
                Err(what) => what,
            };
            if !last {
                return Err(corrupt(at as u64, torn));
            }
            tracing::warn!(
                segment = %path.display(), offset = at, reason = torn,
                "the event log ends in a torn record (a write cut off by a crash); cutting it off"
            );
            break at;
        };
        if good_end < bytes.len() {
            let f = OpenOptions::new().write(true).open(&path).map_err(io_err)?;
            f.set_len(good_end as u64).map_err(io_err)?;
            f.sync_all().map_err(io_err)?;
        }
        end = Position {
            segment,
            offset: good_end as u64,
        };
    }
    Ok(Ok(end))
}

/// What a read of the log does after a record.
pub enum Next {
    More,
    Stop,
}

/// Reads the records from `from` on without changing anything (the writer may be appending),
/// handing each payload and the position after it to `each`, until it says stop. A record not
/// yet whole at the end of the last segment (one being written) ends the read quietly; a
/// segment deleted meanwhile (pruned) is skipped. What [`replay`] would refuse as corrupt,
/// this refuses too.
pub fn read(
    dir: &Path,
    from: Position,
    mut each: impl FnMut(Position, &[u8]) -> Next,
) -> Result<(), LogError> {
    use std::io::{BufReader, Seek, SeekFrom};
    let io_err = |source| LogError::Io {
        dir: dir.display().to_string(),
        source,
    };
    let all = match segments(dir) {
        Ok(all) => all,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(e)),
    };
    let todo: Vec<u64> = all.into_iter().filter(|s| *s >= from.segment).collect();
    let mut payload = Vec::new();
    for (i, &segment) in todo.iter().enumerate() {
        let last = i + 1 == todo.len();
        let path = segment_path(dir, segment);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(e)),
        };
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut at = if segment == from.segment {
            from.offset
        } else {
            0
        };
        reader.seek(SeekFrom::Start(at)).map_err(io_err)?;
        loop {
            let mut header = [0u8; HEADER];
            match read_full(&mut reader, &mut header).map_err(io_err)? {
                0 => break,
                n if n < HEADER => {
                    if last {
                        return Ok(());
                    }
                    return Err(corrupt_at(&path, at, "a partial record header"));
                }
                _ => {}
            }
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let mut sum = [0u8; 8];
            sum.copy_from_slice(&header[4..]);
            payload.resize(len, 0);
            let got = read_full(&mut reader, &mut payload).map_err(io_err)?;
            if got < len || checksum(&payload) != u64::from_le_bytes(sum) {
                if last {
                    return Ok(());
                }
                return Err(corrupt_at(&path, at, "a record cut short or damaged"));
            }
            at += (HEADER + len) as u64;
            if let Next::Stop = each(
                Position {
                    segment,
                    offset: at,
                },
                &payload,
            ) {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the file ends; how much was read.
fn read_full(r: &mut impl io::Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn corrupt_at(path: &Path, offset: u64, what: &str) -> LogError {
    LogError::Corrupt {
        path: path.display().to_string(),
        offset,
        what: what.to_owned(),
    }
}

/// The payload of the record at the start of `bytes`, or why there is no whole record.
fn record(bytes: &[u8]) -> Result<&[u8], &'static str> {
    let header = bytes.get(..HEADER).ok_or("a partial record header")?;
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[..4]);
    let mut sum = [0u8; 8];
    sum.copy_from_slice(&header[4..]);
    let len = u32::from_le_bytes(len) as usize;
    let payload = bytes
        .get(HEADER..HEADER + len)
        .ok_or("a record longer than what follows it")?;
    if checksum(payload) != u64::from_le_bytes(sum) {
        return Err("a record whose checksum does not match");
    }
    Ok(payload)
}

/// The current segment's file, shared so that a sync can run beside the writer.
#[derive(Clone)]
pub struct SyncHandle(Arc<Mutex<File>>);

impl SyncHandle {
    /// fdatasyncs what was written to the current segment.
    pub fn sync(&self) -> io::Result<()> {
        super::lock(&self.0).sync_data()
    }
}

/// Appends records; owned by the store's writer (see `turns`).
pub struct LogWriter {
    dir: PathBuf,
    file: File,
    at: Position,
    pending: Vec<u8>,
    fsync: bool,
    shared: SyncHandle,
}

impl LogWriter {
    /// Continues the log at `at` (where [`replay`] ended), creating the segment if needed.
    pub fn open(dir: &Path, at: Position, fsync: bool) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, at.segment))?;
        sync_dir(dir)?;
        let shared = SyncHandle(Arc::new(Mutex::new(file.try_clone()?)));
        Ok(LogWriter {
            dir: dir.to_owned(),
            file,
            at,
            pending: Vec::with_capacity(64 << 10),
            fsync,
            shared,
        })
    }

    /// Where the next record goes once what is pending is committed.
    pub fn position(&self) -> Position {
        self.at
    }

    /// A handle for syncing beside the writer.
    pub fn sync_handle(&self) -> SyncHandle {
        self.shared.clone()
    }

    /// Adds a record to the pending group, its payload written by `write`. Nothing reaches the
    /// file before [`LogWriter::commit`].
    pub fn push<E>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<(), E> {
        let start = self.pending.len();
        self.pending.extend_from_slice(&[0; HEADER]);
        if let Err(e) = write(&mut self.pending) {
            self.pending.truncate(start);
            return Err(e);
        }
        let payload = &self.pending[start + HEADER..];
        let len = (payload.len() as u32).to_le_bytes();
        let sum = checksum(payload).to_le_bytes();
        self.pending[start..start + 4].copy_from_slice(&len);
        self.pending[start + 4..start + HEADER].copy_from_slice(&sum);
        Ok(())
    }

    /// Writes the pending group in one write (and fdatasyncs it with fsync durability), then
    /// rolls over to a new segment if this one is full. On an error the log is left as it is:
    /// the store stops, and a restart cuts off whatever part of the group reached the file.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.file.write_all(&self.pending)?;
        if self.fsync {
            self.file.sync_data()?;
        }
        tocsin_adapters::telemetry::committed(started.elapsed());
        self.at.offset += self.pending.len() as u64;
        self.pending.clear();
        if self.at.offset >= SEGMENT_BYTES {
            self.roll_over()?;
        }
        Ok(())
    }

    fn roll_over(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        let next = Position {
            segment: self.at.segment + 1,
            offset: 0,
        };
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(segment_path(&self.dir, next.segment))?;
        sync_dir(&self.dir)?;
        *super::lock(&self.shared.0) = file.try_clone()?;
        self.file = file;
        self.at = next;
        Ok(())
    }
}

/// The bytes of every segment in `dir` (the log's size on disk).
pub fn size(dir: &Path) -> io::Result<u64> {
    segments(dir)?
        .into_iter()
        .map(|segment| std::fs::metadata(segment_path(dir, segment)).map(|m| m.len()))
        .sum()
}

/// Makes a created or renamed file's directory entry durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Deletes the segments before `keep_from` (which a snapshot made unnecessary for replay) that
/// were last written before `older_than`. Returns how many it deleted and their bytes.
pub fn prune(dir: &Path, keep_from: u64, older_than: SystemTime) -> io::Result<(usize, u64)> {
    let (mut n, mut bytes) = (0, 0);
    for segment in segments(dir)? {
        if segment >= keep_from {
            break;
        }
        let path = segment_path(dir, segment);
        let meta = std::fs::metadata(&path)?;
        if meta.modified()? < older_than {
            std::fs::remove_file(&path)?;
            n += 1;
            bytes += meta.len();
        }
    }
    Ok((n, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(log: &mut LogWriter, payload: &[u8]) {
        log.push(|buf| {
            buf.extend_from_slice(payload);
            Ok::<_, ()>(())
        })
        .expect("pushed");
    }

    fn read_all(dir: &Path, from: Position) -> (Vec<Vec<u8>>, Position) {
        let mut out = Vec::new();
        let end = replay(dir, from, |p| {
            out.push(p.to_vec());
            Ok::<_, ()>(())
        })
        .expect("readable")
        .expect("decoded");
        (out, end)
    }

    #[test]
    fn records_come_back_in_order_from_any_position() {
        let dir = tempfile::tempdir().expect("dir");
        let mut log = LogWriter::open(dir.path(), Position::default(), false).expect("log");
        write(&mut log, b"one");
        write(&mut log, b"two");
        log.commit().expect("committed");
        let middle = log.position();
        write(&mut log, b"three");
        log.commit().expect("committed");
        let (all, end) = read_all(dir.path(), Position::default());
        assert_eq!(all, [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        assert_eq!(end, log.position());
        let (tail, _) = read_all(dir.path(), middle);
        assert_eq!(tail, [b"three".to_vec()]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_writing_continues_after_the_last_whole_record() {
        let dir = tempfile::tempdir().expect("dir");
        let mut log = LogWriter::open(dir.path(), Position::default(), false).expect("log");
        write(&mut log, b"kept");
        log.commit().expect("committed");
        let whole = log.position();
        drop(log);
        // A crash in the middle of a write: half a header, then half a payload.
        let path = segment_path(dir.path(), 0);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, b'x'])
            .expect("torn");
        drop(f);
        let (records, end) = read_all(dir.path(), Position::default());
        assert_eq!((records, end), (vec![b"kept".to_vec()], whole));
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), whole.offset);
        let mut log = LogWriter::open(dir.path(), end, false).expect("log");
        write(&mut log, b"next");
        log.commit().expect("committed");
        let (records, _) = read_all(dir.path(), Position::default());
        assert_eq!(records, [b"kept".to_vec(), b"next".to_vec()]);
    }

    #[test]
    fn a_damaged_record_before_the_last_segment_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let mut log = LogWriter::open(dir.path(), Position::default(), false).expect("log");
        write(&mut log, b"first");
        log.commit().expect("committed");
        log.roll_over().expect("rolled");
        write(&mut log, b"second");
        log.commit().expect("committed");
        let path = segment_path(dir.path(), 0);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, bytes).expect("damaged");
        let err =
            replay(dir.path(), Position::default(), |_| Ok::<_, ()>(())).expect_err("refused");
        assert!(err.to_string().contains("checksum does not match"), "{err}");
    }

    #[test]
    fn pruning_keeps_what_replay_needs_and_what_is_recent() {
        let dir = tempfile::tempdir().expect("dir");
        let mut log = LogWriter::open(dir.path(), Position::default(), false).expect("log");
        for _ in 0..3 {
            write(&mut log, b"r");
            log.commit().expect("committed");
            log.roll_over().expect("rolled");
        }
        // Nothing is old enough yet.
        let recent = SystemTime::now() - std::time::Duration::from_secs(3600);
        assert_eq!(prune(dir.path(), 2, recent).expect("pruned"), (0, 0));
        let future = SystemTime::now() + std::time::Duration::from_secs(3600);
        assert_eq!(prune(dir.path(), 2, future).expect("pruned").0, 2);
        assert_eq!(segments(dir.path()).expect("listed"), [2, 3]);
    }
}
