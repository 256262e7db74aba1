//! Where a node installing a snapshot gets the blocks it lacks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use finkfs_raft::network::BlockSource;

/// Why a fetch failed as a whole (no peer reachable, ...).
pub type FetchError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The blocks a fetch found: (hash, data), in any order.
pub type Fetched = Vec<([u8; 32], Bytes)>;

/// The future a [`BlockFetcher`] returns.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Fetched, FetchError>> + Send + 'a>>;

/// The future of [`BlockFetcher::confirm_lost`]: the hashes confirmed lost.
pub type LostFuture<'a> = Pin<Box<dyn Future<Output = Vec<[u8; 32]>> + Send + 'a>>;

/// Fetches blocks by hash from wherever they can be had (the peers of the
/// group, over FetchBlock). A fetcher may return fewer blocks than asked —
/// those no peer holds — and need not verify them: the state machine checks
/// every block against its hash and refuses the install if any block it
/// needs is missing or damaged.
pub trait BlockFetcher: Send + Sync + 'static {
    /// The blocks of `hashes` that could be found.
    fn fetch<'a>(&'a self, hashes: &'a [[u8; 32]]) -> FetchFuture<'a>;

    /// Of `hashes`, blocks a fetch did not find intact, those that every
    /// other member of the group answered for without an intact copy
    /// (holding none, or a damaged one): lost on every replica. A block
    /// some member did not answer for (unreachable, timed out) is not
    /// confirmed. The default asks no one and confirms nothing, so that
    /// an install missing blocks fails as before.
    fn confirm_lost<'a>(&'a self, _hashes: &'a [[u8; 32]]) -> LostFuture<'a> {
        Box::pin(async { Vec::new() })
    }
}

/// A fetcher with nowhere to fetch from: installs succeed only when this
/// node already holds every block the snapshot refers to.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoFetcher;

impl BlockFetcher for NoFetcher {
    fn fetch<'a>(&'a self, _hashes: &'a [[u8; 32]]) -> FetchFuture<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// A fetcher reading an in-process [`BlockSource`] (another store on this
/// machine, a backup being restored), off the async threads.
#[derive(Clone)]
pub struct LocalFetcher {
    source: Arc<dyn BlockSource>,
}

impl LocalFetcher {
    pub fn new(source: Arc<dyn BlockSource>) -> LocalFetcher {
        LocalFetcher { source }
    }
}

impl BlockFetcher for LocalFetcher {
    fn fetch<'a>(&'a self, hashes: &'a [[u8; 32]]) -> FetchFuture<'a> {
        let source = self.source.clone();
        let hashes = hashes.to_vec();
        Box::pin(async move {
            let read = finkfs_raft::rt::blocking(move || {
                let mut found = Vec::with_capacity(hashes.len());
                for hash in hashes {
                    if let Some(data) = source.read_block(hash)? {
                        found.push((hash, data));
                    }
                }
                Ok::<_, FetchError>(found)
            });
            read.await.map_err(|e| Box::new(e) as FetchError)?
        })
    }
}
