//! Writing a snapshot file as a stream: records go through a bounded buffer
//! to the file, and both checks are computed on the way, so the object table
//! is never held in memory.

use std::path::{Path, PathBuf};

use finkfs_seam::FileRef;

use crate::manifest::Manifest;

use super::format::{encode_header, SnapshotHeader, TAG_END, TAG_OBJECT, TAG_UNREFERENCED};
use super::SnapshotError;

/// Bytes buffered before a write to the file.
pub const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// A snapshot file being written.
pub struct SnapshotWriter {
    file: FileRef,
    path: PathBuf,
    buffer: Vec<u8>,
    /// Where the buffer goes in the file.
    offset: u64,
    /// Covers every byte before the trailer (the file check).
    check: blake3::Hasher,
    /// Covers every byte written, trailer included: the file's BLAKE3.
    whole: blake3::Hasher,
    objects: u64,
    unreferenced: u64,
    last_path: Option<String>,
    last_hash: Option<[u8; 32]>,
}

impl SnapshotWriter {
    /// Starts a snapshot in `file` (empty, at `path`) with its header.
    pub fn new(file: FileRef, path: &Path, header: &SnapshotHeader) -> Result<Self, SnapshotError> {
        let mut writer = SnapshotWriter {
            file,
            path: path.to_path_buf(),
            buffer: Vec::with_capacity(WRITE_BUFFER_BYTES),
            offset: 0,
            check: blake3::Hasher::new(),
            whole: blake3::Hasher::new(),
            objects: 0,
            unreferenced: 0,
            last_path: None,
            last_hash: None,
        };
        writer.put(&encode_header(header))?;
        Ok(writer)
    }

    /// Appends an object. Objects come in strictly increasing path order,
    /// before any unreferenced block (asserted: the index yields them so).
    pub fn object(&mut self, path: &str, manifest: &Manifest) -> Result<(), SnapshotError> {
        assert!(self.unreferenced == 0, "objects come before blocks");
        if let Some(last) = &self.last_path {
            assert!(last.as_str() < path, "objects in increasing path order");
        }
        let manifest = manifest.encode();
        let mut head = [0u8; 12];
        head[..4].copy_from_slice(&TAG_OBJECT.to_le_bytes());
        head[4..8].copy_from_slice(&(path.len() as u32).to_le_bytes());
        head[8..].copy_from_slice(&(manifest.len() as u32).to_le_bytes());
        self.put(&head)?;
        self.put(path.as_bytes())?;
        self.put(&manifest)?;
        self.objects += 1;
        self.last_path = Some(path.to_string());
        Ok(())
    }

    /// Appends a block that no object refers to, in increasing hash order.
    pub fn unreferenced(&mut self, hash: &[u8; 32], len: u32) -> Result<(), SnapshotError> {
        if let Some(last) = &self.last_hash {
            assert!(last < hash, "unreferenced blocks in increasing hash order");
        }
        let mut record = [0u8; 40];
        record[..4].copy_from_slice(&TAG_UNREFERENCED.to_le_bytes());
        record[4..8].copy_from_slice(&len.to_le_bytes());
        record[8..].copy_from_slice(hash);
        self.put(&record)?;
        self.unreferenced += 1;
        self.last_hash = Some(*hash);
        Ok(())
    }

    /// Writes the end record and the trailer and syncs the file. Returns
    /// the file's length and the BLAKE3 of the whole file.
    pub fn finish(mut self) -> Result<(u64, [u8; 32]), SnapshotError> {
        let mut end = [0u8; 20];
        end[..4].copy_from_slice(&TAG_END.to_le_bytes());
        end[4..12].copy_from_slice(&self.objects.to_le_bytes());
        end[12..].copy_from_slice(&self.unreferenced.to_le_bytes());
        self.put(&end)?;
        let file_check = *self.check.finalize().as_bytes();
        self.buffer.extend_from_slice(&file_check);
        self.flush()?;
        self.file
            .sync()
            .map_err(|source| SnapshotError::io(&self.path, self.offset, source))?;
        Ok((self.offset, *self.whole.finalize().as_bytes()))
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.check.update(bytes);
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SnapshotError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.file
            .write_at(self.offset, &self.buffer)
            .map_err(|source| SnapshotError::io(&self.path, self.offset, source))?;
        self.whole.update(&self.buffer);
        self.offset += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }
}
