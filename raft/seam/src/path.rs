//! Validation of the relative paths every [`crate::Disk`] accepts.

use std::fmt;
use std::io;
use std::path::{Component, Path};

/// Why a path was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    Absolute,
    ParentComponent,
    EmptySegment,
    Nul,
    NotUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self {
            PathError::Absolute => "is absolute",
            PathError::ParentComponent => "contains '..'",
            PathError::EmptySegment => "contains an empty or '.' segment",
            PathError::Nul => "contains a NUL byte",
            PathError::NotUtf8 => "is not UTF-8",
        };
        f.write_str(why)
    }
}

/// Checks that `path` is a relative path of plain UTF-8 segments. The empty
/// path names the root directory.
pub fn check_relative_path(path: &Path) -> Result<(), PathError> {
    let text = path.to_str().ok_or(PathError::NotUtf8)?;
    if text.contains('\0') {
        return Err(PathError::Nul);
    }
    if text.is_empty() {
        return Ok(());
    }
    if text.starts_with('/') {
        return Err(PathError::Absolute);
    }
    if text.split('/').any(|s| s.is_empty() || s == ".") {
        return Err(PathError::EmptySegment);
    }
    for component in path.components() {
        match component {
            Component::Normal(_) => {}
            Component::ParentDir => return Err(PathError::ParentComponent),
            Component::CurDir => return Err(PathError::EmptySegment),
            Component::RootDir | Component::Prefix(_) => return Err(PathError::Absolute),
        }
    }
    Ok(())
}

pub(crate) fn checked(path: &Path) -> io::Result<&Path> {
    check_relative_path(path).map_err(|why| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("path {:?} {why}", path.display().to_string()),
        )
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_relative_paths_are_accepted() {
        for ok in ["", "a", "journal/seg-1", "blocks/ab/cdef"] {
            assert_eq!(check_relative_path(Path::new(ok)), Ok(()), "{ok}");
        }
    }

    #[test]
    fn escaping_or_malformed_paths_are_refused() {
        let cases = [
            ("/etc/passwd", PathError::Absolute),
            ("a/../b", PathError::ParentComponent),
            ("..", PathError::ParentComponent),
            ("a//b", PathError::EmptySegment),
            ("a/", PathError::EmptySegment),
            ("./a", PathError::EmptySegment),
            ("a\0b", PathError::Nul),
        ];
        for (bad, why) in cases {
            assert_eq!(check_relative_path(Path::new(bad)), Err(why), "{bad:?}");
        }
    }
}
