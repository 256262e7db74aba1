//! Objects to store: synthetic alerts (deterministic from a seed, sized
//! like ZTF alerts) and, when present, real ZTF alert files.

use std::path::PathBuf;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

/// Smallest synthetic alert, in bytes.
pub const ALERT_BYTES_MIN: usize = 35_000;
/// Largest synthetic alert, in bytes.
pub const ALERT_BYTES_MAX: usize = 80_000;
/// Environment variable naming a directory of real alert files.
pub const ALERTS_DIR_ENV: &str = "FINKFS_ALERTS_DIR";
/// Where real alerts are looked for, relative to the repository root.
pub const ALERTS_DIR_DEFAULT: &str = "../shared/fixtures/alerts/ztf-v4.02";
/// Most real alert files loaded.
pub const REAL_ALERTS_MAX: usize = 2_000;

/// One object to store and the bytes it must read back as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Where it is stored.
    pub path: String,
    /// Its bytes.
    pub data: Bytes,
}

/// `len` bytes, the same for the same `seed`, different for others.
pub fn random_bytes(seed: u64, len: usize) -> Bytes {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    Bytes::from(data)
}

/// Alert number `index` of the synthetic night `seed`: 35–80 KB of
/// deterministic random bytes under a ZTF-like path below `prefix`.
pub fn synthetic_alert(prefix: &str, seed: u64, index: u64) -> Alert {
    let mix = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut rng = SmallRng::seed_from_u64(mix);
    let len = rng.gen_range(ALERT_BYTES_MIN..=ALERT_BYTES_MAX);
    let candid = 1_800_000_000_000_000_000u64 + seed * 1_000_000 + index;
    Alert {
        path: format!("{prefix}/year=2021/month=12/day=14/{candid}.avro"),
        data: random_bytes(mix ^ 0xA5A5_A5A5, len),
    }
}

/// `count` synthetic alerts of night `seed` under `prefix`.
pub fn synthetic_night(prefix: &str, seed: u64, count: u64) -> Vec<Alert> {
    (0..count)
        .map(|index| synthetic_alert(prefix, seed, index))
        .collect()
}

/// The directory of real alerts: `FINKFS_ALERTS_DIR`, else the shared
/// fixtures next to the repository.
pub fn real_alerts_dir() -> PathBuf {
    match std::env::var_os(ALERTS_DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(ALERTS_DIR_DEFAULT),
    }
}

/// The real alert files (`*.avro`, at most [`REAL_ALERTS_MAX`], in name
/// order) as objects under `prefix`; `None`, after saying so plainly, when
/// there are none.
pub fn real_alerts(prefix: &str) -> Option<Vec<Alert>> {
    let dir = real_alerts_dir();
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "avro"))
            .collect(),
        Err(_) => Vec::new(),
    };
    if files.is_empty() {
        println!(
            "skipping real-alert variant: no fixtures at {}",
            dir.display()
        );
        return None;
    }
    files.sort();
    files.truncate(REAL_ALERTS_MAX);
    let alerts = files
        .iter()
        .map(|file| {
            let data = std::fs::read(file)
                .unwrap_or_else(|e| panic!("read fixture {}: {e}", file.display()));
            let name = file
                .file_name()
                .expect("a file read from a directory has a name")
                .to_string_lossy();
            Alert {
                path: format!("{prefix}/{name}"),
                data: Bytes::from(data),
            }
        })
        .collect();
    Some(alerts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_alerts_are_deterministic_sized_like_alerts_and_distinct() {
        let night = synthetic_night("p", 7, 50);
        assert_eq!(night, synthetic_night("p", 7, 50));
        for alert in &night {
            assert!((ALERT_BYTES_MIN..=ALERT_BYTES_MAX).contains(&alert.data.len()));
        }
        let mut paths: Vec<&str> = night.iter().map(|a| a.path.as_str()).collect();
        paths.dedup();
        assert_eq!(paths.len(), night.len());
        assert_ne!(night[0].data, night[1].data);
        assert_ne!(synthetic_alert("p", 8, 0).data, night[0].data);
    }
}
