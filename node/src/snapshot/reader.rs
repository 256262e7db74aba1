//! Reading a snapshot file as a stream of records, in bounded memory.
//!
//! The header is verified by its own check when the reader opens. Records
//! are checked for framing, bounds and order as they come, and the file
//! check at the end covers them all: a caller must not make anything it
//! built from the records visible before [`SnapshotReader::next_record`]
//! returned `None` (which it does only once the file check verified).

use std::path::{Path, PathBuf};

use finkfs_seam::FileRef;

use crate::manifest::{Manifest, MANIFEST_BYTES_MIN};
use crate::object_path::{check_object_path, OBJECT_PATH_BYTES_MAX};

use super::format::{
    decode_header, membership_len, read_u32, read_u64, SnapshotHeader, CHECK_BYTES, END_BODY_BYTES,
    HEADER_FIXED_BYTES, MANIFEST_BYTES_MAX, TAG_END, TAG_OBJECT, TAG_UNREFERENCED,
    UNREFERENCED_BODY_BYTES,
};
use super::SnapshotError;

/// Bytes read from the file at a time.
pub const READ_STEP_BYTES: usize = 1 << 20;

/// One record of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotRecord {
    /// An object and its manifest.
    Object { path: String, manifest: Manifest },
    /// A block the index holds that no object refers to.
    Unreferenced { hash: [u8; 32], len: u32 },
}

/// Reads the records of one snapshot file in order.
pub struct SnapshotReader {
    file: FileRef,
    path: PathBuf,
    /// Where the records end and the trailer starts.
    records_end: u64,
    /// File offset of the next byte to read into the buffer.
    file_pos: u64,
    buf: Vec<u8>,
    buf_pos: usize,
    /// Offset of the next unread byte, for error reports.
    offset: u64,
    check: blake3::Hasher,
    header: SnapshotHeader,
    objects: u64,
    unreferenced: u64,
    last_path: Option<String>,
    last_hash: Option<[u8; 32]>,
    done: bool,
}

impl SnapshotReader {
    /// Opens the snapshot in `file` (at `path`) and verifies its header.
    pub fn open(file: FileRef, path: &Path) -> Result<SnapshotReader, SnapshotError> {
        let len = file
            .len()
            .map_err(|source| SnapshotError::io(path, 0, source))?;
        let smallest = (HEADER_FIXED_BYTES + CHECK_BYTES + 4 + END_BODY_BYTES + CHECK_BYTES) as u64;
        if len < smallest {
            return Err(SnapshotError::corrupt(
                path,
                len,
                format!("file of {len} bytes is shorter than the smallest snapshot ({smallest})"),
            ));
        }
        let mut reader = SnapshotReader {
            file,
            path: path.to_path_buf(),
            records_end: len - CHECK_BYTES as u64,
            file_pos: 0,
            buf: Vec::new(),
            buf_pos: 0,
            offset: 0,
            check: blake3::Hasher::new(),
            header: SnapshotHeader {
                last_log_id: None,
                membership: Default::default(),
            },
            objects: 0,
            unreferenced: 0,
            last_path: None,
            last_hash: None,
            done: false,
        };
        let fixed = reader.take(HEADER_FIXED_BYTES)?;
        let membership_len = membership_len(&fixed).map_err(|r| reader.corrupt_at(0, r))?;
        let rest = reader.take(membership_len + CHECK_BYTES)?;
        reader.header = decode_header(&fixed, &rest).map_err(|r| reader.corrupt_at(0, r))?;
        Ok(reader)
    }

    /// What the snapshot covers.
    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// The next record, or `None` at the end once the file check verified.
    pub fn next_record(&mut self) -> Result<Option<SnapshotRecord>, SnapshotError> {
        if self.done {
            return Ok(None);
        }
        let at = self.offset;
        let tag = self.u32()?;
        match tag {
            TAG_OBJECT => self.object(at).map(Some),
            TAG_UNREFERENCED => self.unreferenced_block(at).map(Some),
            TAG_END => {
                self.end(at)?;
                Ok(None)
            }
            tag => Err(self.corrupt_at(at, format!("unknown record tag {tag}"))),
        }
    }

    fn object(&mut self, at: u64) -> Result<SnapshotRecord, SnapshotError> {
        if self.unreferenced > 0 {
            return Err(self.corrupt_at(at, "an object after unreferenced blocks".to_string()));
        }
        let path_len = self.u32()? as usize;
        let manifest_len = self.u32()? as usize;
        if path_len > OBJECT_PATH_BYTES_MAX
            || !(MANIFEST_BYTES_MIN..=MANIFEST_BYTES_MAX).contains(&manifest_len)
        {
            let reason = format!("object record of path {path_len} bytes and manifest {manifest_len} bytes is out of bounds");
            return Err(self.corrupt_at(at, reason));
        }
        let path = self.take(path_len)?;
        let path = String::from_utf8(path)
            .map_err(|_| self.corrupt_at(at, "object path is not UTF-8".to_string()))?;
        if let Err(problem) = check_object_path(&path) {
            return Err(self.corrupt_at(at, format!("object path {path:?}: {problem}")));
        }
        if self
            .last_path
            .as_deref()
            .is_some_and(|last| last >= path.as_str())
        {
            return Err(self.corrupt_at(at, format!("object {path:?} out of path order")));
        }
        let manifest = self.take(manifest_len)?;
        let manifest = Manifest::decode(&manifest)
            .map_err(|e| self.corrupt_at(at, format!("manifest of {path:?}: {e}")))?;
        self.objects += 1;
        self.last_path = Some(path.clone());
        Ok(SnapshotRecord::Object { path, manifest })
    }

    fn unreferenced_block(&mut self, at: u64) -> Result<SnapshotRecord, SnapshotError> {
        let body = self.take(UNREFERENCED_BODY_BYTES)?;
        let len = read_u32(&body, 0);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&body[4..]);
        if self.last_hash.is_some_and(|last| last >= hash) {
            return Err(self.corrupt_at(at, "unreferenced block out of hash order".to_string()));
        }
        self.unreferenced += 1;
        self.last_hash = Some(hash);
        Ok(SnapshotRecord::Unreferenced { hash, len })
    }

    fn end(&mut self, at: u64) -> Result<(), SnapshotError> {
        let body = self.take(END_BODY_BYTES)?;
        let (objects, unreferenced) = (read_u64(&body, 0), read_u64(&body, 8));
        if (objects, unreferenced) != (self.objects, self.unreferenced) {
            let reason = format!(
                "end record counts {objects} objects and {unreferenced} blocks, the file holds {} and {}",
                self.objects, self.unreferenced
            );
            return Err(self.corrupt_at(at, reason));
        }
        if self.offset != self.records_end {
            let reason = format!(
                "{} bytes after the end record",
                self.records_end - self.offset
            );
            return Err(self.corrupt_at(self.offset, reason));
        }
        let mut trailer = [0u8; CHECK_BYTES];
        self.file
            .read_at(self.records_end, &mut trailer)
            .map_err(|source| SnapshotError::io(&self.path, self.records_end, source))?;
        if self.check.finalize().as_bytes() != &trailer {
            let reason = "file check mismatch: the records are damaged".to_string();
            return Err(self.corrupt_at(self.records_end, reason));
        }
        self.done = true;
        Ok(())
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(read_u32(&self.take(4)?, 0))
    }

    /// The next `len` bytes of the records, hashed into the file check.
    fn take(&mut self, len: usize) -> Result<Vec<u8>, SnapshotError> {
        let left = self.records_end - self.offset;
        if len as u64 > left {
            let reason = format!("a field of {len} bytes runs past the end ({left} bytes left)");
            return Err(self.corrupt_at(self.offset, reason));
        }
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if self.buf_pos == self.buf.len() {
                self.refill()?;
            }
            let step = (len - out.len()).min(self.buf.len() - self.buf_pos);
            out.extend_from_slice(&self.buf[self.buf_pos..self.buf_pos + step]);
            self.buf_pos += step;
        }
        self.check.update(&out);
        self.offset += len as u64;
        Ok(out)
    }

    fn refill(&mut self) -> Result<(), SnapshotError> {
        let step = (self.records_end - self.file_pos).min(READ_STEP_BYTES as u64) as usize;
        assert!(step > 0, "take() checked the bytes are there");
        self.buf.resize(step, 0);
        self.file
            .read_at(self.file_pos, &mut self.buf)
            .map_err(|source| SnapshotError::io(&self.path, self.file_pos, source))?;
        self.file_pos += step as u64;
        self.buf_pos = 0;
        Ok(())
    }

    fn corrupt_at(&self, offset: u64, reason: String) -> SnapshotError {
        SnapshotError::corrupt(&self.path, offset, reason)
    }
}
