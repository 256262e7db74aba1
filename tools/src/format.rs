//! How numbers read on the terminal: sizes and rates in decimal units
//! (MB = 10^6 bytes, as disks and networks are quoted), durations in
//! seconds.

use std::time::Duration;

/// Bytes as `123 B`, `57.3 KB`, `114.4 MB`, `2.10 GB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [(&str, f64); 4] = [("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)];
    for (name, unit) in UNITS {
        let value = count as f64 / unit;
        if value >= 1.0 {
            return if value >= 100.0 {
                format!("{value:.0} {name}")
            } else {
                format!("{value:.1} {name}")
            };
        }
    }
    format!("{count} B")
}

/// A throughput in MB/s (10^6 bytes per second).
pub fn mb_per_s(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return 0.0;
    }
    count as f64 / 1e6 / seconds
}

/// Seconds with two decimals: `1.62 s`.
pub fn seconds(elapsed: Duration) -> String {
    format!("{:.2} s", elapsed.as_secs_f64())
}

/// A BLAKE3 hash in lowercase hex.
pub fn hash(hash: &[u8; 32]) -> String {
    finkfs_node::hex(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_decimal_units() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(57_300), "57.3 KB");
        assert_eq!(bytes(114_400_000), "114 MB");
        assert_eq!(bytes(2_100_000_000), "2.1 GB");
    }

    #[test]
    fn rates_are_megabytes_per_second() {
        assert_eq!(mb_per_s(10_000_000, Duration::from_secs(2)), 5.0);
        assert_eq!(mb_per_s(1, Duration::ZERO), 0.0);
    }
}
