//! Concurrent uploads of many objects: small ones share PutMany streams
//! (the leader packs them into shared log entries: no Raft round trip per
//! alert), large ones are streamed one Put each. Used by `put -r` and the
//! demo.
//!
//! Every object is hashed on this side first and sent with its expected
//! BLAKE3, so the cluster stores it only if what arrived is what was read.
//! The failure of one object is reported and the others go on.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;

use bytes::Bytes;
use finkfs_node::client::{Client, PutItem, PutOutcome, PutSource};
use futures_util::StreamExt;
use tokio::io::AsyncRead;

/// Objects up to this size go through PutMany batches; larger ones are
/// streamed (they are read from disk in chunks, never held whole).
pub const SMALL_OBJECT_BYTES_MAX: u64 = 1 << 20;
/// Most objects in one PutMany batch.
pub const BATCH_OBJECTS_MAX: usize = 64;
/// Most bytes in one PutMany batch (all of them are in memory at once).
pub const BATCH_BYTES_MAX: u64 = 8 << 20;
/// Most jobs (batches or large objects) in flight at once.
pub const JOBS_IN_FLIGHT_MAX: usize = 64;

const _: () = assert!(SMALL_OBJECT_BYTES_MAX <= BATCH_BYTES_MAX);
const _: () = assert!(SMALL_OBJECT_BYTES_MAX <= finkfs_node::api::PUT_MANY_OBJECT_BYTES_MAX);

/// Where the bytes of an object come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A local file, read when the object's job runs.
    File(PathBuf),
    /// Bytes in memory.
    Bytes(Bytes),
}

/// One object to store.
#[derive(Debug, Clone)]
pub struct Object {
    /// Its path in the cluster.
    pub remote: String,
    /// Its size as planned (a file's size when it was listed).
    pub size: u64,
    /// Its bytes.
    pub source: Source,
}

/// A unit of work: several small objects over one stream, or one large one.
#[derive(Debug)]
pub enum Job {
    /// Small whole objects over one PutMany stream.
    Batch(Vec<Object>),
    /// One object streamed with Put.
    Single(Object),
}

/// What became of one object.
#[derive(Debug, Clone)]
pub struct Report {
    /// Its path in the cluster.
    pub remote: String,
    /// Where it came from (the local file), for messages.
    pub origin: Option<PathBuf>,
    /// Bytes sent (the planned size when reading failed).
    pub size: u64,
    /// BLAKE3 of the bytes read on this side, when they could be read.
    pub blake3: Option<[u8; 32]>,
    /// What the cluster stored, or why not.
    pub result: Result<PutOutcome, String>,
}

/// Groups `objects` into jobs, lazily and in order: runs of small objects
/// become batches within [`BATCH_OBJECTS_MAX`] and [`BATCH_BYTES_MAX`].
pub fn jobs(objects: impl Iterator<Item = Object>) -> impl Iterator<Item = Job> {
    let mut objects = objects.peekable();
    std::iter::from_fn(move || {
        let first = objects.next()?;
        if first.size > SMALL_OBJECT_BYTES_MAX {
            return Some(Job::Single(first));
        }
        let mut bytes = first.size;
        let mut batch = vec![first];
        while let Some(next) = objects.peek() {
            let fits = next.size <= SMALL_OBJECT_BYTES_MAX
                && batch.len() < BATCH_OBJECTS_MAX
                && bytes + next.size <= BATCH_BYTES_MAX;
            if !fits {
                break;
            }
            bytes += next.size;
            batch.extend(objects.next());
        }
        Some(Job::Batch(batch))
    })
}

/// Runs `jobs` with at most `in_flight` at once; `each` sees every
/// object's report as soon as its job ends.
pub async fn run(
    client: &Client,
    jobs: impl Iterator<Item = Job>,
    in_flight: usize,
    mut each: impl FnMut(Report),
) {
    let in_flight = in_flight.clamp(1, JOBS_IN_FLIGHT_MAX);
    let mut done = futures_util::stream::iter(jobs)
        .map(|job| run_job(client.clone(), job))
        .buffer_unordered(in_flight);
    while let Some(reports) = done.next().await {
        reports.into_iter().for_each(&mut each);
    }
}

async fn run_job(client: Client, job: Job) -> Vec<Report> {
    match job {
        Job::Batch(objects) => put_batch(&client, objects).await,
        Job::Single(object) => vec![put_single(&client, object).await],
    }
}

/// One object read and hashed, ready to send in a batch.
struct Loaded {
    remote: String,
    origin: Option<PathBuf>,
    data: Bytes,
    blake3: [u8; 32],
}

async fn put_batch(client: &Client, objects: Vec<Object>) -> Vec<Report> {
    let mut reports = Vec::with_capacity(objects.len());
    let mut loaded = Vec::with_capacity(objects.len());
    for object in objects {
        let origin = object.origin();
        match read_small(&object.source).await {
            Ok(data) => loaded.push(Loaded {
                blake3: *blake3::hash(&data).as_bytes(),
                remote: object.remote,
                origin,
                data,
            }),
            Err(error) => reports.push(Report {
                result: Err(format!("cannot read it: {error}")),
                remote: object.remote,
                origin,
                size: object.size,
                blake3: None,
            }),
        }
    }
    let items = loaded
        .iter()
        .map(|l| PutItem {
            path: l.remote.clone(),
            data: l.data.clone(),
            expected_blake3: Some(l.blake3),
        })
        .collect();
    let results = match client.put_many(items).await {
        Ok(results) => results
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect(),
        Err(error) => vec![Err(error.to_string()); loaded.len()],
    };
    for (object, result) in loaded.into_iter().zip(results) {
        reports.push(Report {
            remote: object.remote,
            origin: object.origin,
            size: object.data.len() as u64,
            blake3: Some(object.blake3),
            result,
        });
    }
    reports
}

async fn read_small(source: &Source) -> io::Result<Bytes> {
    match source {
        Source::Bytes(bytes) => Ok(bytes.clone()),
        Source::File(path) => tokio::fs::read(path).await.map(Bytes::from),
    }
}

async fn put_single(client: &Client, object: Object) -> Report {
    let origin = object.origin();
    let mut report = Report {
        remote: object.remote.clone(),
        origin,
        size: object.size,
        blake3: None,
        result: Err(String::new()),
    };
    let outcome = match object.source {
        Source::Bytes(data) => {
            let blake3 = *blake3::hash(&data).as_bytes();
            report.blake3 = Some(blake3);
            report.size = data.len() as u64;
            client.put_checked(&object.remote, data, Some(blake3)).await
        }
        Source::File(path) => match FileSource::hashed(path).await {
            Ok((source, blake3)) => {
                report.blake3 = Some(blake3);
                report.size = source.size;
                client
                    .put_source(&object.remote, &source, Some(blake3))
                    .await
            }
            Err(error) => {
                report.result = Err(format!("cannot read it: {error}"));
                return report;
            }
        },
    };
    report.result = outcome.map_err(|e| e.to_string());
    report
}

impl Object {
    fn origin(&self) -> Option<PathBuf> {
        match &self.source {
            Source::File(path) => Some(path.clone()),
            Source::Bytes(_) => None,
        }
    }
}

/// A local file uploaded in chunks, re-read from the start if the upload
/// is retried (after a leader change).
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    size: u64,
}

impl FileSource {
    /// Reads `path` once to hash it; the source and its BLAKE3. The size
    /// is the bytes hashed: if the file changes before it is sent, the
    /// cluster refuses the mismatch and stores nothing.
    pub async fn hashed(path: PathBuf) -> io::Result<(FileSource, [u8; 32])> {
        tokio::task::spawn_blocking(move || {
            let mut hasher = blake3::Hasher::new();
            hasher.update_reader(std::fs::File::open(&path)?)?;
            let size = hasher.count();
            Ok((FileSource { path, size }, *hasher.finalize().as_bytes()))
        })
        .await
        .map_err(io::Error::other)?
    }
}

impl PutSource for FileSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn open(&self) -> io::Result<Pin<Box<dyn AsyncRead + Send>>> {
        let file = std::fs::File::open(&self.path)?;
        Ok(Box::pin(tokio::fs::File::from_std(file)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(size: u64) -> Object {
        Object {
            remote: format!("o/{size}"),
            size,
            source: Source::Bytes(Bytes::new()),
        }
    }

    fn shape(jobs: impl Iterator<Item = Job>) -> Vec<(char, usize)> {
        jobs.map(|job| match job {
            Job::Batch(objects) => ('b', objects.len()),
            Job::Single(_) => ('s', 1),
        })
        .collect()
    }

    #[test]
    fn small_objects_share_batches_and_large_ones_go_alone() {
        let sizes = [10, 20, SMALL_OBJECT_BYTES_MAX + 1, 30];
        let got = shape(jobs(sizes.into_iter().map(object)));
        assert_eq!(got, vec![('b', 2), ('s', 1), ('b', 1)]);
    }

    #[test]
    fn batches_respect_their_count_and_byte_ceilings() {
        let many = (0..BATCH_OBJECTS_MAX + 1).map(|_| object(1));
        assert_eq!(shape(jobs(many)), vec![('b', BATCH_OBJECTS_MAX), ('b', 1)]);
        let per_batch = (BATCH_BYTES_MAX / SMALL_OBJECT_BYTES_MAX) as usize;
        let big = (0..per_batch + 1).map(|_| object(SMALL_OBJECT_BYTES_MAX));
        assert_eq!(shape(jobs(big)), vec![('b', per_batch), ('b', 1)]);
    }
}
