//! The objects the benchmark writes. Blocks are addressed by their BLAKE3
//! and deduplicate, so writing the same bytes twice would cost the cluster
//! almost nothing: every object gets a 16-byte stamp (its number and the
//! block's) at the end of each 1 MiB block, so no two blocks are alike.
//! Templates are made once and shared; an object is one copy of its
//! template plus the stamps.

use std::path::Path;

use anyhow::Context;
use bytes::{Bytes, BytesMut};

use super::limit::incompressible;
use crate::demo::alerts::{self, Alerts};
use crate::upload::Source;

/// Size of a block (objects are split into blocks of this size).
const BLOCK_BYTES: usize = finkfs_node::api::BLOCK_BYTES as usize;
/// Bytes of the stamp that makes each block unique.
const STAMP_BYTES: usize = 16;
/// Synthetic alert templates when no alert directory is given.
const SYNTHETIC_TEMPLATES: u64 = 512;
/// Seed of the synthetic alerts.
const SYNTHETIC_SEED: u64 = 14;

/// What kind of object a workload writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// Alert-sized objects (real alerts, or synthetic ones sized like them).
    Alerts,
    /// Objects of a fixed size.
    Fixed(u64),
}

/// Templates of the objects of one kind.
#[derive(Debug, Clone)]
pub struct Payloads {
    templates: Vec<Bytes>,
}

impl Payloads {
    /// Alert templates: the files of `dir`, or synthetic alerts.
    pub fn alerts(dir: Option<&Path>) -> anyhow::Result<Payloads> {
        let found = match dir {
            Some(dir) => Alerts::from_dir(dir, None)?,
            None => Alerts::Synthetic {
                seed: SYNTHETIC_SEED,
                count: SYNTHETIC_TEMPLATES,
            },
        };
        let mut templates = Vec::new();
        for object in found.objects(0..found.len()) {
            let bytes = match object.source {
                Source::Bytes(bytes) => bytes,
                Source::File(path) => std::fs::read(&path)
                    .with_context(|| format!("cannot read alert {}", path.display()))?
                    .into(),
            };
            anyhow::ensure!(
                bytes.len() >= STAMP_BYTES,
                "alert {} is shorter than {STAMP_BYTES} bytes",
                object.remote
            );
            templates.push(bytes);
        }
        Ok(Payloads { templates })
    }

    /// One incompressible template of `size` bytes.
    pub fn fixed(size: u64) -> anyhow::Result<Payloads> {
        let size = usize::try_from(size)?;
        anyhow::ensure!(
            size >= STAMP_BYTES,
            "objects must hold at least {STAMP_BYTES} bytes"
        );
        Ok(Payloads {
            templates: vec![incompressible(size).into()],
        })
    }

    /// The templates' mean size in bytes.
    pub fn mean_bytes(&self) -> f64 {
        let total: usize = self.templates.iter().map(Bytes::len).sum();
        total as f64 / self.templates.len() as f64
    }

    /// How many distinct templates.
    pub fn templates(&self) -> usize {
        self.templates.len()
    }

    /// Object number `n`: its template, stamped in every block.
    pub fn object(&self, n: u64) -> Bytes {
        let template = &self.templates[(n % self.templates.len() as u64) as usize];
        let mut bytes = BytesMut::from(&template[..]);
        let blocks = bytes.len().div_ceil(BLOCK_BYTES);
        for block in 0..blocks {
            let end = ((block + 1) * BLOCK_BYTES).min(bytes.len());
            if end - block * BLOCK_BYTES < STAMP_BYTES {
                // A tail shorter than a stamp differs by its offset anyway:
                // the previous block's stamp names the object.
                continue;
            }
            let stamp = &mut bytes[end - STAMP_BYTES..end];
            stamp[..8].copy_from_slice(&n.to_le_bytes());
            stamp[8..].copy_from_slice(&(block as u64).to_le_bytes());
        }
        bytes.freeze()
    }
}

/// The path of object `n` of client `client` in workload `label`.
pub fn object_path(label: &str, client: usize, n: u64) -> String {
    format!("{}bench/{label}/c{client}/{n}", alerts::night_prefix())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_block_of_every_object_is_distinct() {
        let payloads = Payloads::fixed(3 * BLOCK_BYTES as u64 + 100).expect("template");
        let mut hashes = std::collections::HashSet::new();
        for n in 0..3 {
            let object = payloads.object(n);
            assert_eq!(object.len(), 3 * BLOCK_BYTES + 100);
            for block in object.chunks(BLOCK_BYTES).take(3) {
                assert!(
                    hashes.insert(blake3::hash(block)),
                    "object {n}: a repeated block"
                );
            }
        }
    }

    #[test]
    fn synthetic_alert_templates_are_alert_sized() {
        let payloads = Payloads::alerts(None).expect("synthetic alerts");
        assert_eq!(payloads.templates(), SYNTHETIC_TEMPLATES as usize);
        let mean = payloads.mean_bytes();
        assert!((50_000.0..60_000.0).contains(&mean), "{mean}");
        assert_ne!(payloads.object(0), payloads.object(SYNTHETIC_TEMPLATES));
    }
}
