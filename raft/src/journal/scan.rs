//! The physical scan of one segment file: which byte ranges hold records that
//! verify and which do not. Classifying what that means (torn tail, gap,
//! corruption) is the job of `recovery`.

use std::path::{Path, PathBuf};

use finkfs_seam::{DiskFile, FileRef};

use super::record::{self, RecordHeader, Unverified};
use super::segment::{self, HeaderProblem, SegmentHeader};
use super::JournalError;

/// Bytes read from the disk at a time while scanning; bounds memory use
/// whatever lengths a damaged file claims.
const WINDOW_BYTES: u64 = 1 << 20;

/// One run of bytes in a segment, in file order.
#[derive(Debug, Clone)]
pub enum Item {
    /// A record that verifies on its own.
    Record { offset: u64, header: RecordHeader },
    /// Bytes that hold no verifiable record, up to the next one (or the end).
    Invalid {
        offset: u64,
        len: u64,
        reason: String,
    },
    /// Only zero bytes from here to the end of the file.
    ZeroTail { offset: u64 },
}

/// Everything the scan learned about one segment file.
#[derive(Debug)]
pub struct SegmentScan {
    pub path: PathBuf,
    /// The first index the file name encodes.
    pub name_index: u64,
    pub file: FileRef,
    pub len: u64,
    pub header: Result<SegmentHeader, String>,
    pub items: Vec<Item>,
}

/// Reads and verifies every byte of one segment file.
pub fn scan_segment(
    file: FileRef,
    path: PathBuf,
    name_index: u64,
    record_bytes_max: u32,
) -> Result<SegmentScan, JournalError> {
    let len = file.len().map_err(|e| JournalError::io(&path, 0, e))?;
    let mut window = Window {
        file: &*file,
        path: &path,
        len,
        start: 0,
        buf: Vec::new(),
    };
    let header = read_header(&mut window)?;
    let mut items = Vec::new();
    let mut pos = segment::HEADER_BYTES as u64;
    while pos < len {
        match try_record(&mut window, pos, record_bytes_max)? {
            Ok(header) => {
                items.push(Item::Record {
                    offset: pos,
                    header,
                });
                pos += header.record_bytes();
            }
            Err(reason) => {
                if all_zero_from(&mut window, pos)? {
                    items.push(Item::ZeroTail { offset: pos });
                    break;
                }
                let next = next_valid(&mut window, pos + record::ALIGN_BYTES, record_bytes_max)?;
                let end = next.map_or(len, |(at, _)| at);
                items.push(Item::Invalid {
                    offset: pos,
                    len: end - pos,
                    reason,
                });
                pos = end;
            }
        }
    }
    drop(window);
    Ok(SegmentScan {
        path,
        name_index,
        file,
        len,
        header,
        items,
    })
}

fn read_header(window: &mut Window<'_>) -> Result<Result<SegmentHeader, String>, JournalError> {
    let available = window.len.min(segment::HEADER_BYTES as u64);
    let bytes = window.get(0, to_usize(available))?;
    match SegmentHeader::decode(bytes) {
        Ok(header) => Ok(Ok(header)),
        Err(HeaderProblem::Damaged(reason)) => Ok(Err(reason)),
        Err(HeaderProblem::UnsupportedVersion(version)) => Err(JournalError::UnsupportedVersion {
            file: window.path.to_path_buf(),
            version,
            supported: segment::FORMAT_VERSION,
        }),
    }
}

/// Decodes and verifies the record at `pos`. The outer error is I/O, the
/// inner one says why the bytes are not a valid record.
fn try_record(
    window: &mut Window<'_>,
    pos: u64,
    record_bytes_max: u32,
) -> Result<Result<RecordHeader, String>, JournalError> {
    let room = window.len - pos;
    if room < record::HEADER_BYTES as u64 {
        return Ok(Err(format!(
            "record header truncated: {room} bytes before end of file"
        )));
    }
    let unverified = match Unverified::parse(window.get(pos, record::HEADER_BYTES)?) {
        Ok(unverified) => unverified,
        Err(reason) => return Ok(Err(reason)),
    };
    let payload_len = unverified.claimed_payload_len();
    if payload_len > record_bytes_max {
        return Ok(Err(format!(
            "claimed payload length {payload_len} exceeds the ceiling {record_bytes_max}"
        )));
    }
    let bytes = unverified.claimed_record_bytes();
    if bytes > room {
        return Ok(Err(format!(
            "record of {bytes} bytes extends past the end of the file"
        )));
    }
    let mut verifier = unverified.verifier();
    let payload_end = pos + record::HEADER_BYTES as u64 + u64::from(payload_len);
    let mut at = pos + record::HEADER_BYTES as u64;
    while at < payload_end {
        let piece = (payload_end - at).min(WINDOW_BYTES);
        verifier.update(window.get(at, to_usize(piece))?);
        at += piece;
    }
    if let Err(reason) =
        record::check_padding(window.get(payload_end, to_usize(pos + bytes - payload_end))?)
    {
        return Ok(Err(reason));
    }
    Ok(verifier.finish())
}

/// The first aligned offset at or after `from` holding a record that verifies.
fn next_valid(
    window: &mut Window<'_>,
    from: u64,
    record_bytes_max: u32,
) -> Result<Option<(u64, RecordHeader)>, JournalError> {
    let magic = record::MAGIC.to_le_bytes();
    let mut pos = from;
    while pos + record::HEADER_BYTES as u64 <= window.len {
        if window.get(pos, magic.len())? == magic {
            if let Ok(header) = try_record(window, pos, record_bytes_max)? {
                return Ok(Some((pos, header)));
            }
        }
        pos += record::ALIGN_BYTES;
    }
    Ok(None)
}

fn all_zero_from(window: &mut Window<'_>, from: u64) -> Result<bool, JournalError> {
    let mut at = from;
    while at < window.len {
        let piece = (window.len - at).min(WINDOW_BYTES);
        if window.get(at, to_usize(piece))?.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += piece;
    }
    Ok(true)
}

fn to_usize(bytes: u64) -> usize {
    usize::try_from(bytes).expect("scan pieces are bounded by WINDOW_BYTES")
}

/// A read-through cache of one window of a file, so a scan reads the disk in
/// large pieces and a claimed length never drives an allocation.
struct Window<'a> {
    file: &'a dyn DiskFile,
    path: &'a Path,
    len: u64,
    start: u64,
    buf: Vec<u8>,
}

impl Window<'_> {
    /// `n` bytes at `offset`; the caller keeps the range inside the file and
    /// no larger than `WINDOW_BYTES`.
    fn get(&mut self, offset: u64, n: usize) -> Result<&[u8], JournalError> {
        let end = offset + n as u64;
        assert!(end <= self.len, "scan read past end of file");
        assert!(
            n as u64 <= WINDOW_BYTES,
            "scan piece larger than the window"
        );
        if offset < self.start || end > self.start + self.buf.len() as u64 {
            let want = WINDOW_BYTES.min(self.len - offset);
            self.buf.resize(to_usize(want), 0);
            if let Err(source) = self.file.read_at(offset, &mut self.buf) {
                self.buf.clear();
                return Err(JournalError::io(self.path, offset, source));
            }
            self.start = offset;
        }
        let from = to_usize(offset - self.start);
        Ok(&self.buf[from..from + n])
    }
}
