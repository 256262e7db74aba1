//! The alerts the demo writes: one night of them under
//! `ztf/raw/year=YYYY/month=MM/day=DD/`, synthetic by default, or real
//! alert files from a directory.
//!
//! Synthetic alerts are named `<candid>.avro` like ZTF's, with sizes drawn
//! from the distribution of real ZTF alerts (schema 4.02, one night: 35 to
//! 80 KB, most near 55 KB) and incompressible content, as the gzipped FITS
//! cutouts that make up most of a real alert are. Everything derives from
//! the seed, so a run can be repeated byte for byte.

use std::ops::Range;
use std::path::Path;

use bytes::Bytes;

use crate::client::put_dir;
use crate::upload::{Object, Source};

/// The night the demo's alerts belong to.
pub const NIGHT: (u32, u32, u32) = (2021, 12, 14);
/// First candidate id of the night; each alert gets one past it.
const CANDID_BASE: u64 = 1_810_386_362_015_000_000;
/// Candidate ids of consecutive alerts are this far apart at most.
const CANDID_STRIDE: u64 = 1000;

/// Sizes of real ZTF alerts: (fraction of alerts, size in bytes) at the
/// minimum, 10th, 50th and 90th percentiles and the maximum. Sizes are
/// drawn by interpolating between these points.
const SIZE_QUANTILES: [(f64, u64); 5] = [
    (0.0, 35_030),
    (0.1, 52_572),
    (0.5, 55_101),
    (0.9, 60_745),
    (1.0, 80_100),
];

/// The path prefix of the night's alerts, ending with `/`.
pub fn night_prefix() -> String {
    let (year, month, day) = NIGHT;
    format!("ztf/raw/year={year}/month={month:02}/day={day:02}/")
}

/// The demo's alerts.
#[derive(Debug)]
pub enum Alerts {
    /// `count` synthetic alerts from `seed`.
    Synthetic {
        /// Seed of every random choice.
        seed: u64,
        /// How many.
        count: u64,
    },
    /// Real files, already planned as objects.
    Files(Vec<Object>),
}

impl Alerts {
    /// The files under `dir` (the first `count` in path order, if given).
    pub fn from_dir(dir: &Path, count: Option<u64>) -> anyhow::Result<Alerts> {
        let plan = put_dir::plan(dir, night_prefix().trim_end_matches('/'))?;
        if let Some((path, reason)) = plan.refused.first() {
            anyhow::bail!("cannot use {}: {reason}", path.display());
        }
        let mut objects = plan.objects;
        if let Some(count) = count {
            objects.truncate(usize::try_from(count).unwrap_or(usize::MAX));
        }
        anyhow::ensure!(
            !objects.is_empty(),
            "{} holds no alert files",
            dir.display()
        );
        Ok(Alerts::Files(objects))
    }

    /// How many alerts.
    pub fn len(&self) -> u64 {
        match self {
            Alerts::Synthetic { count, .. } => *count,
            Alerts::Files(objects) => objects.len() as u64,
        }
    }

    /// Bytes of the alerts in `range`.
    pub fn bytes(&self, range: Range<u64>) -> u64 {
        match self {
            Alerts::Synthetic { seed, .. } => range.map(|i| synthetic_size(*seed, i)).sum(),
            Alerts::Files(objects) => slice(objects, range).iter().map(|o| o.size).sum(),
        }
    }

    /// The alerts in `range`, made (or listed) as they are pulled.
    pub fn objects(&self, range: Range<u64>) -> Box<dyn Iterator<Item = Object> + Send + '_> {
        match self {
            Alerts::Synthetic { seed, .. } => {
                let seed = *seed;
                Box::new(range.map(move |i| synthetic(seed, i)))
            }
            Alerts::Files(objects) => Box::new(slice(objects, range).iter().cloned()),
        }
    }

    /// What the alerts are, for the narration.
    pub fn describe(&self) -> String {
        match self {
            Alerts::Synthetic { seed, count } => format!(
                "{count} synthetic alerts sized like real ZTF alerts (35-80 KB, seed {seed})"
            ),
            Alerts::Files(objects) => format!("{} real alert files", objects.len()),
        }
    }
}

fn slice(objects: &[Object], range: Range<u64>) -> &[Object] {
    let end = (range.end as usize).min(objects.len());
    let start = (range.start as usize).min(end);
    &objects[start..end]
}

/// Synthetic alert number `index` of `seed`: its path and bytes.
pub fn synthetic(seed: u64, index: u64) -> Object {
    let mut stream = alert_stream(seed, index);
    let (size, candid) = draw(&mut stream, index);
    let mut data = vec![0u8; size as usize];
    stream.fill(&mut data);
    Object {
        remote: format!("{}{candid}.avro", night_prefix()),
        size,
        source: Source::Bytes(Bytes::from(data)),
    }
}

/// The size of synthetic alert `index`, without making its bytes.
pub fn synthetic_size(seed: u64, index: u64) -> u64 {
    draw(&mut alert_stream(seed, index), index).0
}

/// The random stream of one alert: BLAKE3 in XOF mode, keyed by the seed.
fn alert_stream(seed: u64, index: u64) -> blake3::OutputReader {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..].copy_from_slice(&b"finkfs demo synthetic alerts"[..24]);
    blake3::Hasher::new_keyed(&key)
        .update(&index.to_le_bytes())
        .finalize_xof()
}

/// The size and candidate id of an alert, from the head of its stream.
fn draw(stream: &mut blake3::OutputReader, index: u64) -> (u64, u64) {
    let mut words = [0u8; 16];
    stream.fill(&mut words);
    let size_word = u64::from_le_bytes(words[..8].try_into().expect("8 bytes"));
    let candid_word = u64::from_le_bytes(words[8..].try_into().expect("8 bytes"));
    // 53 random bits make a uniform fraction in [0, 1).
    let fraction = (size_word >> 11) as f64 / (1u64 << 53) as f64;
    let candid = CANDID_BASE + index * CANDID_STRIDE + candid_word % CANDID_STRIDE;
    (size_at(fraction), candid)
}

/// The size at `fraction` of the distribution (piecewise linear between
/// the quantiles).
fn size_at(fraction: f64) -> u64 {
    for pair in SIZE_QUANTILES.windows(2) {
        let ((f0, s0), (f1, s1)) = (pair[0], pair[1]);
        if fraction <= f1 {
            let t = (fraction - f0) / (f1 - f0);
            return (s0 as f64 + t * (s1 as f64 - s0 as f64)).round() as u64;
        }
    }
    SIZE_QUANTILES[SIZE_QUANTILES.len() - 1].1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_of(object: &Object) -> Bytes {
        match &object.source {
            Source::Bytes(bytes) => bytes.clone(),
            Source::File(_) => panic!("synthetic alerts are in memory"),
        }
    }

    #[test]
    fn same_seed_gives_the_same_alerts_and_another_seed_others() {
        let a = synthetic(7, 3);
        let b = synthetic(7, 3);
        let c = synthetic(8, 3);
        assert_eq!(a.remote, b.remote);
        assert_eq!(bytes_of(&a), bytes_of(&b));
        assert_ne!(bytes_of(&a), bytes_of(&c));
        assert_eq!(synthetic_size(7, 3), a.size);
        assert_eq!(bytes_of(&a).len() as u64, a.size);
    }

    #[test]
    fn sizes_stay_within_real_alert_sizes_and_center_near_55_kb() {
        let mut sizes: Vec<u64> = (0..2000).map(|i| synthetic_size(1, i)).collect();
        sizes.sort_unstable();
        assert!(sizes[0] >= 35_030, "{}", sizes[0]);
        assert!(sizes[1999] <= 80_100, "{}", sizes[1999]);
        let median = sizes[1000];
        assert!((53_000..=57_000).contains(&median), "median {median}");
    }

    #[test]
    fn alerts_have_distinct_candid_paths_under_the_night() {
        let paths: std::collections::BTreeSet<String> =
            (0..500).map(|i| synthetic(2, i).remote).collect();
        assert_eq!(paths.len(), 500);
        assert!(paths.iter().all(|p| p.starts_with(&night_prefix())));
        assert!(paths.iter().all(|p| p.ends_with(".avro")));
    }

    #[test]
    fn quantile_interpolation_hits_the_measured_points() {
        assert_eq!(size_at(0.0), 35_030);
        assert_eq!(size_at(0.5), 55_101);
        assert_eq!(size_at(1.0), 80_100);
    }
}
