//! Validation of object paths (`ztf/raw/year=2021/.../part-0001.parquet`).

use std::fmt;

/// The longest object path accepted, in bytes.
pub const OBJECT_PATH_BYTES_MAX: usize = 1024;

/// What is wrong with an object path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PathProblem {
    Empty,
    TooLong { len_bytes: usize },
    Nul,
    LeadingSlash,
    EmptySegment,
    DotSegment,
    DotDotSegment,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathProblem::Empty => f.write_str("the path is empty"),
            PathProblem::TooLong { len_bytes } => {
                write!(
                    f,
                    "the path is {len_bytes} bytes, over the maximum of {OBJECT_PATH_BYTES_MAX}"
                )
            }
            PathProblem::Nul => f.write_str("the path contains a NUL byte"),
            PathProblem::LeadingSlash => f.write_str("the path starts with '/'"),
            PathProblem::EmptySegment => {
                f.write_str("the path has an empty segment ('//' or a trailing '/')")
            }
            PathProblem::DotSegment => f.write_str("the path has a '.' segment"),
            PathProblem::DotDotSegment => f.write_str("the path has a '..' segment"),
        }
    }
}

/// Checks an object path: non-empty, at most [`OBJECT_PATH_BYTES_MAX`]
/// bytes, no NUL, no leading `/`, and no empty, `.` or `..` segments.
pub fn check_object_path(path: &str) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.len() > OBJECT_PATH_BYTES_MAX {
        return Err(PathProblem::TooLong {
            len_bytes: path.len(),
        });
    }
    if path.contains('\0') {
        return Err(PathProblem::Nul);
    }
    if path.starts_with('/') {
        return Err(PathProblem::LeadingSlash);
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err(PathProblem::EmptySegment),
            "." => return Err(PathProblem::DotSegment),
            ".." => return Err(PathProblem::DotDotSegment),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_paths_are_accepted() {
        for ok in [
            "a",
            "ztf/raw/year=2021/month=12/day=14/part-0001.parquet",
            "a/.hidden",
            "x..y",
        ] {
            assert_eq!(check_object_path(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            check_object_path(&"a".repeat(OBJECT_PATH_BYTES_MAX)),
            Ok(())
        );
    }
}
