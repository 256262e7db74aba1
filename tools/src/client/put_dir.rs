//! `finkfs put -r DIR PREFIX`: every file under DIR, stored at
//! PREFIX/<its path under DIR>, concurrently, with progress and a summary.
//!
//! The plan (which file goes where, each object path checked) is made
//! before connecting. A file that cannot be read or named is a failure of
//! that file only; the rest go on, and the exit code says some failed.

use std::path::{Path, PathBuf};

use anyhow::Context;
use finkfs_node::check_object_path;

use super::put::PutArgs;
use super::Cluster;
use crate::exit::Outcome;
use crate::format;
use crate::progress::Progress;
use crate::upload::{self, Object, Source};

/// What to upload, and what was refused while listing.
#[derive(Debug, Default)]
pub struct Plan {
    /// The objects, in path order.
    pub objects: Vec<Object>,
    /// Entries that will not be uploaded, and why.
    pub refused: Vec<(PathBuf, String)>,
    /// Bytes of the objects.
    pub bytes: u64,
}

/// Runs `finkfs put -r`.
pub async fn run(cluster: Cluster, args: PutArgs) -> anyhow::Result<Outcome> {
    let plan = plan(&args.local, &args.remote)?;
    let client = cluster.connect().await?;
    let files = plan.objects.len() + plan.refused.len();
    let mut progress = Progress::start("put", files as u64, plan.bytes);
    for (path, reason) in &plan.refused {
        progress.note(&format!("finkfs: skipped {}: {reason}", path.display()));
        progress.record(0, false);
    }
    let jobs = upload::jobs(plan.objects.into_iter());
    upload::run(&client, jobs, usize::from(args.jobs), |report| {
        if let Err(reason) = &report.result {
            let origin = report.origin.as_deref().unwrap_or(Path::new("?"));
            progress.note(&format!(
                "finkfs: put {} -> {} failed: {reason}",
                origin.display(),
                report.remote
            ));
        }
        progress.record(report.size, report.result.is_ok());
    })
    .await;
    let totals = progress.finish();
    outln!(
        "put {} -> {}: {} files, {} in {} ({:.1} MB/s), {} failed",
        args.local.display(),
        args.remote,
        totals.files_ok,
        format::bytes(totals.bytes_ok),
        format::seconds(totals.elapsed),
        totals.mb_per_s(),
        totals.files_failed
    )?;
    Ok(Outcome::problems_if(totals.files_failed > 0))
}

/// Lists `dir` recursively (in name order) into objects under `prefix`.
pub fn plan(dir: &Path, prefix: &str) -> anyhow::Result<Plan> {
    let meta = std::fs::metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    anyhow::ensure!(
        meta.is_dir(),
        "{} is not a directory (put without -r stores one file)",
        dir.display()
    );
    let prefix = prefix.trim_end_matches('/');
    if !prefix.is_empty() {
        check_object_path(prefix)
            .map_err(|problem| anyhow::anyhow!("bad prefix {prefix:?}: {problem}"))?;
    }
    let mut plan = Plan::default();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let here = dir.join(&relative);
        let entries = match sorted_entries(&here) {
            Ok(entries) => entries,
            Err(error) if relative.as_os_str().is_empty() => {
                return Err(error).with_context(|| format!("cannot list {}", dir.display()));
            }
            Err(error) => {
                plan.refused
                    .push((here, format!("cannot list it: {error}")));
                continue;
            }
        };
        // Reversed so that the stack pops subdirectories in name order.
        for name in entries.into_iter().rev() {
            let relative = relative.join(&name);
            match classify(&dir.join(&relative)) {
                Kind::Dir => pending.push(relative),
                Kind::File(size) => add_file(&mut plan, dir, &relative, prefix, size),
                Kind::Skip(reason) => plan.refused.push((dir.join(&relative), reason)),
            }
        }
    }
    plan.objects.sort_by(|a, b| a.remote.cmp(&b.remote));
    Ok(plan)
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<std::ffi::OsString>> {
    let mut names = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

enum Kind {
    Dir,
    File(u64),
    Skip(String),
}

/// Files and links to files are uploaded; links to directories are not
/// followed (they could loop), nor is anything that is not a file.
fn classify(path: &Path) -> Kind {
    let link = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(error) => return Kind::Skip(format!("cannot read it: {error}")),
    };
    if link.is_dir() {
        return Kind::Dir;
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => Kind::File(meta.len()),
        Ok(meta) if meta.is_dir() => Kind::Skip("a link to a directory is not followed".into()),
        Ok(_) => Kind::Skip("not a regular file".into()),
        Err(error) => Kind::Skip(format!("cannot read it: {error}")),
    }
}

fn add_file(plan: &mut Plan, dir: &Path, relative: &Path, prefix: &str, size: u64) {
    let local = dir.join(relative);
    match remote_path(prefix, relative) {
        Ok(remote) => {
            plan.bytes += size;
            plan.objects.push(Object {
                remote,
                size,
                source: Source::File(local),
            });
        }
        Err(reason) => plan.refused.push((local, reason)),
    }
}

/// `prefix/relative` with `/` separators, checked as an object path.
pub fn remote_path(prefix: &str, relative: &Path) -> Result<String, String> {
    let mut parts = Vec::new();
    for component in relative.components() {
        let part = component
            .as_os_str()
            .to_str()
            .ok_or("its name is not UTF-8, which object paths must be")?;
        parts.push(part);
    }
    let joined = parts.join("/");
    let remote = if prefix.is_empty() {
        joined
    } else {
        format!("{prefix}/{joined}")
    };
    check_object_path(&remote).map_err(|problem| format!("object path {remote:?}: {problem}"))?;
    Ok(remote)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_land_under_the_prefix_with_slash_separators() {
        let relative = Path::new("day=14").join("a.avro");
        assert_eq!(
            remote_path("ztf/raw", &relative).unwrap(),
            "ztf/raw/day=14/a.avro"
        );
        assert_eq!(remote_path("", &relative).unwrap(), "day=14/a.avro");
    }

    #[test]
    fn plan_lists_every_file_in_order_and_refuses_none_that_are_fine() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/c")).unwrap();
        std::fs::write(dir.path().join("b/c/x"), b"12345").unwrap();
        std::fs::write(dir.path().join("a"), b"1").unwrap();
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let plan = plan(dir.path(), "p/").unwrap();
        let remotes: Vec<&str> = plan.objects.iter().map(|o| o.remote.as_str()).collect();
        assert_eq!(remotes, ["p/a", "p/b/c/x"]);
        assert_eq!(plan.bytes, 6);
        assert!(plan.refused.is_empty(), "{:?}", plan.refused);
    }

    #[test]
    fn plan_of_a_file_or_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"1").unwrap();
        assert!(plan(&dir.path().join("f"), "p").is_err());
        assert!(plan(&dir.path().join("missing"), "p").is_err());
    }
}
