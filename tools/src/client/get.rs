//! `finkfs get REMOTE [LOCAL] [--range A-B]`: reads an object.
//!
//! A whole object is checked against its BLAKE3 before any byte is kept:
//! to stdout it is read into memory and checked before it is written; to
//! a file it is streamed into a temporary file beside LOCAL, checked, then
//! renamed over LOCAL, so LOCAL never holds a partial or unverified object.
//! A byte range cannot be checked against the hash of the whole object;
//! the node verified the BLAKE3 of every block the range comes from.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use finkfs_node::client::{Client, ClientError};

use super::{is_not_found, Cluster};
use crate::exit::Outcome;

const EXAMPLES: &str = "\
Examples:
  finkfs get ztf/raw/year=2021/month=12/day=14/1810386362015015011.avro alert.avro
  finkfs get ztf/raw/year=2021/month=12/day=14/1810386362015015011.avro | avro-tools tojson -
  finkfs get ztf/raw/part-0001.parquet --range 0-1023 > head.bin    # the first 1024 bytes
  finkfs get ztf/raw/part-0001.parquet --range 4096- tail.bin       # from byte 4096 to the end";

/// Flags of `finkfs get`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct GetArgs {
    /// The object path in the cluster.
    pub remote: String,
    /// Where to write it: a file (written whole, then renamed into place),
    /// a directory (the object's last path segment inside it), or `-` or
    /// nothing for stdout.
    pub local: Option<PathBuf>,
    /// Only bytes A to B, both included (`0-1023` is the first KiB); `A-`
    /// reads from A to the end.
    #[arg(long, value_name = "A-B", value_parser = parse_range)]
    pub range: Option<ByteRange>,
}

/// A range of bytes, its end included; `None` runs to the object's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub first: u64,
    /// Last byte, included.
    pub last: Option<u64>,
}

/// Parses `A-B` or `A-` (a clap value parser).
pub fn parse_range(text: &str) -> Result<ByteRange, String> {
    let bad = || format!("{text:?} is not a byte range such as 0-1023 or 4096-");
    let (first, last) = text.trim().split_once('-').ok_or_else(bad)?;
    let first: u64 = first.trim().parse().map_err(|_| bad())?;
    let last = match last.trim() {
        "" => None,
        last => Some(last.parse::<u64>().map_err(|_| bad())?),
    };
    if let Some(last) = last {
        if last < first {
            return Err(format!(
                "range {text:?} ends before it starts (A-B includes both A and B)"
            ));
        }
    }
    Ok(ByteRange { first, last })
}

/// Runs `finkfs get`.
pub async fn run(cluster: Cluster, args: GetArgs) -> anyhow::Result<Outcome> {
    let target = Target::of(args.local.as_deref(), &args.remote)?;
    let client = cluster.connect().await?;
    let result = match (args.range, &target) {
        (None, Target::Stdout) => whole_to_stdout(&client, &args.remote).await,
        (None, Target::File(path)) => whole_to_file(&client, &args.remote, path).await,
        (Some(range), target) => range_to(&client, &args.remote, range, target).await,
    };
    match result {
        Ok(()) => Ok(Outcome::Clean),
        Err(Failure::Missing) => {
            eprintln!("finkfs: no object at {}", args.remote);
            Ok(Outcome::Problems)
        }
        Err(Failure::Client(error)) if is_not_found(&error) => {
            eprintln!("finkfs: no object at {}", args.remote);
            Ok(Outcome::Problems)
        }
        Err(Failure::Client(error @ ClientError::Corrupt { .. })) => {
            eprintln!("finkfs: {error}; nothing was written");
            Ok(Outcome::Problems)
        }
        Err(Failure::Client(error)) => {
            Err(error).with_context(|| format!("cannot read {}", args.remote))
        }
        Err(Failure::Local(error)) => Err(error),
    }
}

/// Where the bytes go.
enum Target {
    Stdout,
    File(PathBuf),
}

impl Target {
    fn of(local: Option<&Path>, remote: &str) -> anyhow::Result<Target> {
        let Some(local) = local.filter(|l| l.as_os_str() != "-") else {
            return Ok(Target::Stdout);
        };
        if !local.is_dir() {
            return Ok(Target::File(local.to_path_buf()));
        }
        let name = remote
            .rsplit('/')
            .next()
            .filter(|n| !n.is_empty())
            .with_context(|| format!("object path {remote:?} has no name to give the file"))?;
        Ok(Target::File(local.join(name)))
    }
}

/// A cluster error (some mean "found a problem") or a local one.
enum Failure {
    Missing,
    Client(ClientError),
    Local(anyhow::Error),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure::Client(error)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Failure {
        Failure::Local(error)
    }
}

async fn whole_to_stdout(client: &Client, remote: &str) -> Result<(), Failure> {
    // `get` checks the BLAKE3 before it returns the bytes.
    let data = client.get(remote).await?;
    write_stdout(&data)?;
    Ok(())
}

async fn whole_to_file(client: &Client, remote: &str, path: &Path) -> Result<(), Failure> {
    let temp = temp_beside(path)?;
    let mut file = tokio::fs::File::from_std(
        temp.as_file()
            .try_clone()
            .context("cannot open the temporary file")?,
    );
    // `get_to` checks the BLAKE3 of what it wrote; on a mismatch the
    // temporary file is dropped (removed) and `path` is untouched.
    client.get_to(remote, &mut file).await?;
    drop(file);
    keep(temp, path)?;
    Ok(())
}

async fn range_to(
    client: &Client,
    remote: &str,
    range: ByteRange,
    target: &Target,
) -> Result<(), Failure> {
    let (start, len) = match range.last {
        Some(last) => (range.first, last - range.first + 1),
        None => {
            let info = client.stat(remote).await?.ok_or(Failure::Missing)?;
            if range.first >= info.size {
                return Err(Failure::Local(anyhow::anyhow!(
                    "range starts at byte {}, past the end of the {}-byte object",
                    range.first,
                    info.size
                )));
            }
            (range.first, info.size - range.first)
        }
    };
    let data = client.get_range(remote, start, len).await?;
    match target {
        Target::Stdout => write_stdout(&data)?,
        Target::File(path) => {
            let mut temp = temp_beside(path)?;
            temp.write_all(&data)
                .context("cannot write the temporary file")?;
            keep(temp, path)?;
        }
    }
    Ok(())
}

fn write_stdout(data: &Bytes) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(data).context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")
}

/// A temporary file in the directory of `path`, so the final rename
/// stays on one file system.
fn temp_beside(path: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Made as any new file is (0666 less the umask), not tempfile's 0600.
    tempfile::Builder::new()
        .prefix(".finkfs-get-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
}

/// Flushes the finished temporary file to disk and renames it to `path`.
fn keep(temp: tempfile::NamedTempFile, path: &Path) -> anyhow::Result<()> {
    temp.as_file()
        .sync_all()
        .with_context(|| format!("cannot flush {}", path.display()))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_include_both_ends_or_run_to_the_end() {
        assert_eq!(
            parse_range("0-1023"),
            Ok(ByteRange {
                first: 0,
                last: Some(1023)
            })
        );
        assert_eq!(
            parse_range("4096-"),
            Ok(ByteRange {
                first: 4096,
                last: None
            })
        );
        assert_eq!(
            parse_range("7-7"),
            Ok(ByteRange {
                first: 7,
                last: Some(7)
            })
        );
    }

    #[test]
    fn malformed_or_backward_ranges_are_refused() {
        for bad in ["", "-", "-5", "a-b", "5", "1-2-3", "10-2", "1.5-2"] {
            assert!(parse_range(bad).is_err(), "{bad:?} parsed");
        }
        assert!(parse_range("10-2").unwrap_err().contains("ends before"));
    }

    #[test]
    fn a_directory_target_takes_the_object_name() {
        let dir = tempfile::tempdir().unwrap();
        let Target::File(path) = Target::of(Some(dir.path()), "a/b/c.avro").unwrap() else {
            panic!("a directory is a file target");
        };
        assert_eq!(path, dir.path().join("c.avro"));
        assert!(matches!(Target::of(None, "x").unwrap(), Target::Stdout));
        assert!(matches!(
            Target::of(Some(Path::new("-")), "x").unwrap(),
            Target::Stdout
        ));
    }
}
