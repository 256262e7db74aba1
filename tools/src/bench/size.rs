//! Byte sizes on the command line: `4096`, `64KiB`, `1MiB`, `2GiB` (also
//! `KB`/`MB`/`GB` as powers of ten).

use std::fmt;

/// A number of bytes, displayed in binary units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        for (name, unit) in UNITS {
            if self.0 >= unit && self.0.is_multiple_of(unit) {
                return write!(f, "{} {name}", self.0 / unit);
            }
        }
        write!(f, "{} B", self.0)
    }
}

/// Parses a size such as `64KiB`; used as a clap value parser.
pub fn parse_size(text: &str) -> Result<ByteSize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size such as 4096, 64KiB or 1MiB"))?;
    let multiplier: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown unit {other:?} in {text:?}")),
    };
    number
        .checked_mul(multiplier)
        .map(ByteSize)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_units_parse() {
        assert_eq!(parse_size("4096"), Ok(ByteSize(4096)));
        assert_eq!(parse_size("64KiB"), Ok(ByteSize(64 << 10)));
        assert_eq!(parse_size("1MiB"), Ok(ByteSize(1 << 20)));
        assert_eq!(parse_size("2MB"), Ok(ByteSize(2_000_000)));
    }

    #[test]
    fn garbage_sizes_are_refused_with_a_reason() {
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn sizes_display_in_binary_units() {
        assert_eq!(ByteSize(1 << 20).to_string(), "1 MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000 B");
    }
}
