//! Where an offline repair gets intact copies: a running peer named by its
//! peer address, or a backup target's block files.

use std::path::PathBuf;

use bytes::Bytes;
use finkfs_raft::network::{BlockSource, BlockSourceError, PeerChannels, PeerClient};
use finkfs_raft::types::GroupId;
use finkfs_seam::DiskRef;

use crate::backup::BackupTarget;
use crate::state_machine::{BlockFetcher, FetchError, FetchFuture, Fetched};

/// Fetches blocks over FetchBlock from peers at fixed addresses (`finkfs
/// fsck --repair --peer ADDR`), one block at a time, each peer in turn: a
/// peer whose own copy is damaged answers with an error for that block
/// only, and the next peer is asked.
#[derive(Debug, Clone)]
pub struct PeerAddrFetcher {
    client: PeerClient,
    addrs: Vec<String>,
    group: GroupId,
}

impl PeerAddrFetcher {
    /// A fetcher asking the peer services at `addrs` (host:port, as the
    /// peers advertise them) for blocks of `group`.
    pub fn new(addrs: Vec<String>, group: GroupId) -> PeerAddrFetcher {
        let channels = PeerChannels::new(finkfs_raft::network::PeerOptions::default());
        PeerAddrFetcher {
            client: PeerClient::new(channels),
            addrs,
            group,
        }
    }

    async fn fetch_one(&self, hash: [u8; 32]) -> Option<Bytes> {
        for addr in &self.addrs {
            match self.client.fetch_block(addr, self.group, hash).await {
                Ok(Some(data)) => return Some(data),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%addr, block = %crate::hex::hex(&hash), %error, "peer could not supply a block");
                }
            }
        }
        None
    }
}

impl BlockFetcher for PeerAddrFetcher {
    fn fetch<'a>(&'a self, hashes: &'a [[u8; 32]]) -> FetchFuture<'a> {
        Box::pin(async move {
            if self.addrs.is_empty() {
                return Err::<Fetched, FetchError>("no peer address to fetch from".into());
            }
            let mut found = Vec::with_capacity(hashes.len());
            for hash in hashes {
                if let Some(data) = self.fetch_one(*hash).await {
                    found.push((*hash, data));
                }
            }
            Ok(found)
        })
    }
}

/// The blocks of a backup target (`finkfs fsck --repair --backup DIR`), by
/// hash: each block file is read whole and checked against its name. Use
/// through [`crate::state_machine::LocalFetcher`].
#[derive(Debug, Clone)]
pub struct BackupBlockSource {
    disk: DiskRef,
}

impl BackupBlockSource {
    /// The blocks of the backup target whose root is `disk`.
    pub fn new(disk: DiskRef) -> BackupBlockSource {
        BackupBlockSource { disk }
    }
}

impl BlockSource for BackupBlockSource {
    fn read_block(&self, hash: [u8; 32]) -> Result<Option<Bytes>, BlockSourceError> {
        let path: PathBuf = BackupTarget::block_path(&hash);
        if !self.disk.exists(&path)? {
            return Ok(None);
        }
        let data = finkfs_seam::read_file(&*self.disk, &path)?;
        if blake3::hash(&data).as_bytes() != &hash {
            tracing::error!(file = %path.display(), "backup block does not match its hash; not used");
            return Ok(None);
        }
        Ok(Some(Bytes::from(data)))
    }
}
