//! The quarantine table: every damaged block copy this node found, where it
//! lies and what was wrong with it. The damaged bytes themselves are never
//! deleted or overwritten; the record says where they are, so an operator
//! (or a later compaction) can tell dead damaged space from live data, and
//! so that an object that could not be repaired stays listed.
//!
//! Key (48 bytes): block hash (32), pack sequence (u64 LE), record offset
//! (u64 LE) — one record per damaged copy, so a copy found damaged again is
//! recorded once.
//!
//! Value (sealed with the index's keyed check, see `values.rs`):
//!
//! ```text
//! offset  size  field
//!      0     4  version (u32 LE) = QUARANTINE_RECORD_VERSION
//!      4     4  block length in bytes (u32 LE)
//!      8     4  status (u32 LE): 0 awaiting an intact copy, 1 repaired
//!     12     8  when the damage was found, Unix ms (u64 LE)
//!     20     8  when the status last changed, Unix ms (u64 LE)
//!     28     4  reason length R (u32 LE), at most QUARANTINE_REASON_BYTES_MAX
//!     32     R  reason (UTF-8)
//!   32+R    16  check
//! ```

use redb::{ReadableTable, TableDefinition};

use super::values::{seal, unseal};
use super::{Index, IndexError, IndexTxn};
use crate::hex::hex;
use crate::le::{read_u32, read_u64};

pub(super) const QUARANTINE_NAME: &str = "quarantine";
const QUARANTINE: TableDefinition<&[u8; QUARANTINE_KEY_BYTES], &[u8]> =
    TableDefinition::new(QUARANTINE_NAME);

/// Version of a quarantine record's value.
pub const QUARANTINE_RECORD_VERSION: u32 = 1;
/// Bytes of a quarantine key: hash, pack, offset.
pub const QUARANTINE_KEY_BYTES: usize = 32 + 8 + 8;
/// The longest reason kept; longer ones are cut at a character boundary.
pub const QUARANTINE_REASON_BYTES_MAX: usize = 1024;
/// Most records [`Index::quarantined`] returns.
pub const QUARANTINE_LIST_MAX: usize = 100_000;

const VERSION_AT: usize = 0;
const LEN_AT: usize = VERSION_AT + 4;
const STATUS_AT: usize = LEN_AT + 4;
const FOUND_AT: usize = STATUS_AT + 4;
const CHANGED_AT: usize = FOUND_AT + 8;
const REASON_LEN_AT: usize = CHANGED_AT + 8;
const REASON_AT: usize = REASON_LEN_AT + 4;
const _: () = assert!(REASON_AT == 32);

/// Where a damaged copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineStatus {
    /// No intact copy was found yet: the block is not served.
    AwaitingCopy,
    /// An intact copy was written elsewhere and the index points to it.
    Repaired,
}

impl QuarantineStatus {
    fn code(self) -> u32 {
        match self {
            QuarantineStatus::AwaitingCopy => 0,
            QuarantineStatus::Repaired => 1,
        }
    }

    fn from_code(code: u32) -> Option<QuarantineStatus> {
        match code {
            0 => Some(QuarantineStatus::AwaitingCopy),
            1 => Some(QuarantineStatus::Repaired),
            _ => None,
        }
    }
}

/// One damaged copy of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    pub hash: [u8; 32],
    /// The pack holding the damaged copy.
    pub pack: u64,
    /// The offset of its record in the pack.
    pub offset: u64,
    pub len: u32,
    pub status: QuarantineStatus,
    pub found_unix_ms: u64,
    pub changed_unix_ms: u64,
    /// What was wrong with it.
    pub reason: String,
}

fn key(hash: &[u8; 32], pack: u64, offset: u64) -> [u8; QUARANTINE_KEY_BYTES] {
    let mut key = [0u8; QUARANTINE_KEY_BYTES];
    key[..32].copy_from_slice(hash);
    key[32..40].copy_from_slice(&pack.to_le_bytes());
    key[40..].copy_from_slice(&offset.to_le_bytes());
    key
}

fn encode(record: &QuarantineRecord) -> Vec<u8> {
    let mut reason = record.reason.as_str();
    while reason.len() > QUARANTINE_REASON_BYTES_MAX {
        let mut cut = QUARANTINE_REASON_BYTES_MAX;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason = &reason[..cut];
    }
    let mut body = Vec::with_capacity(REASON_AT + reason.len());
    body.extend_from_slice(&QUARANTINE_RECORD_VERSION.to_le_bytes());
    body.extend_from_slice(&record.len.to_le_bytes());
    body.extend_from_slice(&record.status.code().to_le_bytes());
    body.extend_from_slice(&record.found_unix_ms.to_le_bytes());
    body.extend_from_slice(&record.changed_unix_ms.to_le_bytes());
    body.extend_from_slice(&(reason.len() as u32).to_le_bytes());
    body.extend_from_slice(reason.as_bytes());
    let k = key(&record.hash, record.pack, record.offset);
    seal(QUARANTINE_NAME, &k, body)
}

fn decode(key: &[u8; QUARANTINE_KEY_BYTES], value: &[u8]) -> Result<QuarantineRecord, IndexError> {
    let corrupt = |reason: String| IndexError::Corrupt {
        table: QUARANTINE_NAME,
        key: hex(key),
        reason,
    };
    let body = unseal(QUARANTINE_NAME, key, value).map_err(corrupt)?;
    if body.len() < REASON_AT {
        return Err(corrupt(format!("record of {} bytes", body.len())));
    }
    let version = read_u32(body, VERSION_AT);
    if version != QUARANTINE_RECORD_VERSION {
        return Err(corrupt(format!("unsupported record version {version}")));
    }
    let reason_len = read_u32(body, REASON_LEN_AT) as usize;
    if body.len() != REASON_AT + reason_len {
        return Err(corrupt(format!(
            "reason of {reason_len} bytes in a record of {} bytes",
            body.len()
        )));
    }
    let status = read_u32(body, STATUS_AT);
    let status = QuarantineStatus::from_code(status)
        .ok_or_else(|| corrupt(format!("unknown status {status}")))?;
    let reason = std::str::from_utf8(&body[REASON_AT..])
        .map_err(|e| corrupt(format!("reason is not UTF-8: {e}")))?;
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&key[..32]);
    Ok(QuarantineRecord {
        hash,
        pack: read_u64(key, 32),
        offset: read_u64(key, 40),
        len: read_u32(body, LEN_AT),
        status,
        found_unix_ms: read_u64(body, FOUND_AT),
        changed_unix_ms: read_u64(body, CHANGED_AT),
        reason: reason.to_string(),
    })
}

impl IndexTxn<'_> {
    /// Records (or updates) the quarantine record of one damaged copy. A
    /// copy already recorded keeps the time it was first found.
    pub fn quarantine(&mut self, record: &QuarantineRecord) -> Result<(), IndexError> {
        let k = key(&record.hash, record.pack, record.offset);
        self.run("quarantine block", |index, txn| {
            let mut table = txn
                .open_table(QUARANTINE)
                .map_err(|e| index.redb_error(e))?;
            let old = match table.get(&k).map_err(|e| index.redb_error(e))? {
                Some(value) => decode(&k, value.value()).ok(),
                None => None,
            };
            let mut record = record.clone();
            if let Some(old) = old {
                record.found_unix_ms = old.found_unix_ms;
            }
            let value = encode(&record);
            table
                .insert(&k, value.as_slice())
                .map_err(|e| index.redb_error(e))?;
            Ok(())
        })
    }
}

impl Index {
    /// Every quarantine record, in key order (at most
    /// [`QUARANTINE_LIST_MAX`]), each verified.
    pub fn quarantined(&self) -> Result<Vec<QuarantineRecord>, IndexError> {
        self.read("list quarantine", |txn| {
            let table = match txn.open_table(QUARANTINE) {
                Ok(table) => table,
                // An index that never quarantined anything has no table.
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(self.redb_error(e)),
            };
            let mut records = Vec::new();
            for item in table.iter().map_err(|e| self.redb_error(e))? {
                let (k, v) = item.map_err(|e| self.redb_error(e))?;
                records.push(decode(k.value(), v.value())?);
                if records.len() >= QUARANTINE_LIST_MAX {
                    break;
                }
            }
            Ok(records)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> QuarantineRecord {
        QuarantineRecord {
            hash: [7; 32],
            pack: 3,
            offset: 4096,
            len: 1000,
            status: QuarantineStatus::AwaitingCopy,
            found_unix_ms: 11,
            changed_unix_ms: 12,
            reason: "block data does not hash to its address".to_string(),
        }
    }

    #[test]
    fn record_round_trips_and_a_flipped_bit_is_refused() {
        let r = record();
        let k = key(&r.hash, r.pack, r.offset);
        let mut value = encode(&r);
        assert_eq!(decode(&k, &value).expect("decodes"), r);
        value[REASON_AT] ^= 1;
        assert!(matches!(
            decode(&k, &value),
            Err(IndexError::Corrupt { .. })
        ));
    }

    #[test]
    fn record_under_another_key_is_refused() {
        let r = record();
        let value = encode(&r);
        let other = key(&r.hash, r.pack, r.offset + 1);
        assert!(decode(&other, &value).is_err());
    }

    #[test]
    fn long_reason_is_cut_to_the_maximum() {
        let mut r = record();
        r.reason = "é".repeat(QUARANTINE_REASON_BYTES_MAX);
        let k = key(&r.hash, r.pack, r.offset);
        let back = decode(&k, &encode(&r)).expect("decodes");
        assert!(back.reason.len() <= QUARANTINE_REASON_BYTES_MAX);
        assert!(r.reason.starts_with(&back.reason));
    }
}
