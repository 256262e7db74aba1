//! The state machine's answer to a command: the bytes of an `AppResponse`.
//!
//! ```text
//! offset  size  field
//!      0     4  magic           b"FRSP"
//!      4     4  version u32     RESPONSE_VERSION (1)
//!      8     4  shape u32       1: one command, 2: a batch
//!     12     4  count u32       outcomes that follow (1 for one command)
//!     16     …  outcomes        count × outcome
//!
//! outcome := tag u32, then by tag:
//!   1 Put        object_len u64, object_hash [32], replaced u32 (0 or 1)
//!   2 Blocks     new u32, known u32
//!   3 Deleted    object_len u64
//!   4 NotFound   (nothing)
//!   5 Rejected   kind u32, reason_len u32, reason (UTF-8)
//! ```
//!
//! A response lives only in memory (the leader hands it to the client
//! call that proposed the command), so it carries no checksum; decode still
//! checks every field and bounds every count by the input.

use crate::hex::Hex;

/// Version of the response encoding.
pub const RESPONSE_VERSION: u32 = 1;
const MAGIC: [u8; 4] = *b"FRSP";
const HEADER_BYTES: usize = 16;
const SHAPE_SINGLE: u32 = 1;
const SHAPE_BATCH: u32 = 2;
const TAG_PUT: u32 = 1;
const TAG_BLOCKS: u32 = 2;
const TAG_DELETED: u32 = 3;
const TAG_NOT_FOUND: u32 = 4;
const TAG_REJECTED: u32 = 5;
/// The smallest encoded outcome (NotFound: its tag).
const OUTCOME_BYTES_MIN: usize = 4;

/// Why a command was refused. The same on every replica: it depends only on
/// the command and the replicated state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectKind {
    /// The object path breaks the path rules.
    BadPath,
    /// The object refers to blocks neither inline nor stored before.
    MissingBlocks,
    /// An object or block over the cluster's limits.
    TooLarge,
    /// Inline blocks that do not match the manifest.
    InlineMismatch,
}

impl RejectKind {
    fn code(self) -> u32 {
        match self {
            RejectKind::BadPath => 1,
            RejectKind::MissingBlocks => 2,
            RejectKind::TooLarge => 3,
            RejectKind::InlineMismatch => 4,
        }
    }

    fn from_code(code: u32) -> Option<RejectKind> {
        Some(match code {
            1 => RejectKind::BadPath,
            2 => RejectKind::MissingBlocks,
            3 => RejectKind::TooLarge,
            4 => RejectKind::InlineMismatch,
            _ => return None,
        })
    }
}

/// A refusal: its kind and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub kind: RejectKind,
    pub reason: String,
}

/// What one command (or one element of a batch) did.
#[derive(Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The object is stored; `replaced` if the path held one before.
    Put {
        object_len: u64,
        object_hash: [u8; 32],
        replaced: bool,
    },
    /// Blocks stored: `new` written now, `known` already held.
    Blocks { new: u32, known: u32 },
    /// The object at the path was removed.
    Deleted { object_len: u64 },
    /// A delete found no object at the path.
    NotFound,
    /// The command was refused and changed nothing.
    Rejected(Rejection),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Put {
                object_len,
                object_hash,
                replaced,
            } => write!(
                f,
                "Put({object_len} bytes, {}, replaced: {replaced})",
                Hex(object_hash)
            ),
            Outcome::Blocks { new, known } => write!(f, "Blocks(new: {new}, known: {known})"),
            Outcome::Deleted { object_len } => write!(f, "Deleted({object_len} bytes)"),
            Outcome::NotFound => f.write_str("NotFound"),
            Outcome::Rejected(r) => write!(f, "Rejected({:?}: {})", r.kind, r.reason),
        }
    }
}

/// The answer to one entry's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The outcome of a single command.
    Single(Outcome),
    /// One outcome per element of a batch, in order.
    Batch(Vec<Outcome>),
}

/// Why bytes are not a valid response. Offsets are within the response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseDecodeError {
    #[error("response of {len} bytes is shorter than its {HEADER_BYTES}-byte header")]
    TooShort { len: u64 },
    #[error("bad response magic at offset 0")]
    BadMagic,
    #[error(
        "response version {version} at offset 4 is not supported (expected {RESPONSE_VERSION})"
    )]
    UnsupportedVersion { version: u32 },
    #[error("response shape {shape} with {count} outcomes at offset 8 is invalid")]
    BadShape { shape: u32, count: u64 },
    #[error("count {count} at offset 12 cannot fit in the {left} bytes that remain")]
    CountTooLarge { count: u64, left: u64 },
    #[error("field at offset {offset} needs {needed} bytes, only {left} remain")]
    Truncated { offset: u64, needed: u64, left: u64 },
    #[error("outcome tag {tag} at offset {offset} is unknown")]
    UnknownTag { offset: u64, tag: u32 },
    #[error("value {value} at offset {offset} is invalid: {what}")]
    BadValue {
        offset: u64,
        value: u64,
        what: &'static str,
    },
    #[error("{extra} unexpected bytes after the outcomes at offset {offset}")]
    TrailingBytes { offset: u64, extra: u64 },
}

impl Response {
    /// The outcomes, one per command element.
    pub fn outcomes(&self) -> &[Outcome] {
        match self {
            Response::Single(outcome) => std::slice::from_ref(outcome),
            Response::Batch(outcomes) => outcomes,
        }
    }

    /// Encodes the response.
    pub fn encode(&self) -> Vec<u8> {
        let (shape, outcomes) = match self {
            Response::Single(outcome) => (SHAPE_SINGLE, std::slice::from_ref(outcome)),
            Response::Batch(outcomes) => (SHAPE_BATCH, outcomes.as_slice()),
        };
        let mut out = Vec::with_capacity(HEADER_BYTES + outcomes.len() * 48);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&RESPONSE_VERSION.to_le_bytes());
        out.extend_from_slice(&shape.to_le_bytes());
        put_u32(&mut out, outcomes.len());
        for outcome in outcomes {
            encode_outcome(&mut out, outcome);
        }
        debug_assert_eq!(Response::decode(&out).as_ref(), Ok(self));
        out
    }

    /// Decodes a response, checking every field.
    pub fn decode(bytes: &[u8]) -> Result<Response, ResponseDecodeError> {
        if bytes.len() < HEADER_BYTES {
            return Err(ResponseDecodeError::TooShort {
                len: bytes.len() as u64,
            });
        }
        let mut reader = Reader { bytes, pos: 0 };
        if reader.take(4)? != MAGIC {
            return Err(ResponseDecodeError::BadMagic);
        }
        let version = reader.u32()?;
        if version != RESPONSE_VERSION {
            return Err(ResponseDecodeError::UnsupportedVersion { version });
        }
        let shape = reader.u32()?;
        let count = reader.u32()? as usize;
        let left = bytes.len() - reader.pos;
        if count > left / OUTCOME_BYTES_MIN {
            return Err(ResponseDecodeError::CountTooLarge {
                count: count as u64,
                left: left as u64,
            });
        }
        let mut outcomes = Vec::with_capacity(count);
        for _ in 0..count {
            outcomes.push(reader.outcome()?);
        }
        if reader.pos != bytes.len() {
            return Err(ResponseDecodeError::TrailingBytes {
                offset: reader.pos as u64,
                extra: (bytes.len() - reader.pos) as u64,
            });
        }
        match (shape, outcomes.len()) {
            (SHAPE_SINGLE, 1) => Ok(Response::Single(outcomes.remove(0))),
            (SHAPE_BATCH, _) => Ok(Response::Batch(outcomes)),
            (shape, count) => Err(ResponseDecodeError::BadShape {
                shape,
                count: count as u64,
            }),
        }
    }
}

fn put_u32(out: &mut Vec<u8>, value: usize) {
    let value = u32::try_from(value).expect("response field fits in u32");
    out.extend_from_slice(&value.to_le_bytes());
}

fn encode_outcome(out: &mut Vec<u8>, outcome: &Outcome) {
    match outcome {
        Outcome::Put {
            object_len,
            object_hash,
            replaced,
        } => {
            out.extend_from_slice(&TAG_PUT.to_le_bytes());
            out.extend_from_slice(&object_len.to_le_bytes());
            out.extend_from_slice(object_hash);
            out.extend_from_slice(&u32::from(*replaced).to_le_bytes());
        }
        Outcome::Blocks { new, known } => {
            out.extend_from_slice(&TAG_BLOCKS.to_le_bytes());
            out.extend_from_slice(&new.to_le_bytes());
            out.extend_from_slice(&known.to_le_bytes());
        }
        Outcome::Deleted { object_len } => {
            out.extend_from_slice(&TAG_DELETED.to_le_bytes());
            out.extend_from_slice(&object_len.to_le_bytes());
        }
        Outcome::NotFound => out.extend_from_slice(&TAG_NOT_FOUND.to_le_bytes()),
        Outcome::Rejected(rejection) => {
            out.extend_from_slice(&TAG_REJECTED.to_le_bytes());
            out.extend_from_slice(&rejection.kind.code().to_le_bytes());
            put_u32(out, rejection.reason.len());
            out.extend_from_slice(rejection.reason.as_bytes());
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], ResponseDecodeError> {
        let left = self.bytes.len() - self.pos;
        if len > left {
            return Err(ResponseDecodeError::Truncated {
                offset: self.pos as u64,
                needed: len as u64,
                left: left as u64,
            });
        }
        let out = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, ResponseDecodeError> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(word))
    }

    fn u64(&mut self) -> Result<u64, ResponseDecodeError> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(word))
    }

    fn outcome(&mut self) -> Result<Outcome, ResponseDecodeError> {
        let offset = self.pos as u64;
        Ok(match self.u32()? {
            TAG_PUT => {
                let object_len = self.u64()?;
                let mut object_hash = [0u8; 32];
                object_hash.copy_from_slice(self.take(32)?);
                let replaced = self.flag()?;
                Outcome::Put {
                    object_len,
                    object_hash,
                    replaced,
                }
            }
            TAG_BLOCKS => Outcome::Blocks {
                new: self.u32()?,
                known: self.u32()?,
            },
            TAG_DELETED => Outcome::Deleted {
                object_len: self.u64()?,
            },
            TAG_NOT_FOUND => Outcome::NotFound,
            TAG_REJECTED => Outcome::Rejected(self.rejection()?),
            tag => return Err(ResponseDecodeError::UnknownTag { offset, tag }),
        })
    }

    fn flag(&mut self) -> Result<bool, ResponseDecodeError> {
        let offset = self.pos as u64;
        match self.u32()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(ResponseDecodeError::BadValue {
                offset,
                value: u64::from(value),
                what: "a flag must be 0 or 1",
            }),
        }
    }

    fn rejection(&mut self) -> Result<Rejection, ResponseDecodeError> {
        let offset = self.pos as u64;
        let code = self.u32()?;
        let kind = RejectKind::from_code(code).ok_or(ResponseDecodeError::BadValue {
            offset,
            value: u64::from(code),
            what: "unknown rejection kind",
        })?;
        let len = self.u32()? as usize;
        let reason_offset = self.pos as u64;
        let reason =
            std::str::from_utf8(self.take(len)?).map_err(|_| ResponseDecodeError::BadValue {
                offset: reason_offset,
                value: len as u64,
                what: "rejection reason is not UTF-8",
            })?;
        Ok(Rejection {
            kind,
            reason: reason.to_string(),
        })
    }
}
