//! Guards against a state machine that breaks openraft's storage contract
//! (applied state and membership, snapshot metadata, snapshot transfer
//! between machines): openraft's own suite, with the journal log store, on
//! the real disk and on the simulated one.

mod sm_support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use finkfs_node::state_machine::{NoFetcher, StateMachine};
use finkfs_raft::log_store::{JournalLogStore, LogStoreOptions};
use finkfs_raft::types::{StorageError, TypeConfig};
use finkfs_seam::{DiskRef, RealDisk};
use finkfs_simdisk::SimDisk;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb};
use sm_support::{options, GROUP_DIR};

fn build(disk: DiskRef) -> Result<(JournalLogStore, StateMachine), StorageError> {
    let to_storage =
        |e: std::io::Error| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Read, e);
    let (store, _) = JournalLogStore::open(
        disk.clone(),
        Path::new(GROUP_DIR),
        LogStoreOptions::default(),
    )
    .map_err(|e| to_storage(e.into()))?;
    let sm = StateMachine::open(
        disk,
        PathBuf::from(GROUP_DIR),
        options(),
        Arc::new(NoFetcher),
    )
    .map_err(|e| to_storage(e.into()))?;
    Ok((store, sm))
}

struct RealDiskBuilder;

impl StoreBuilder<TypeConfig, JournalLogStore, StateMachine, tempfile::TempDir>
    for RealDiskBuilder
{
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, JournalLogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let disk: DiskRef = Arc::new(RealDisk::open(dir.path()).expect("real disk"));
        let (store, sm) = build(disk)?;
        Ok((dir, store, sm))
    }
}

struct SimDiskBuilder {
    next_seed: AtomicU64,
}

impl StoreBuilder<TypeConfig, JournalLogStore, StateMachine, SimDisk> for SimDiskBuilder {
    async fn build(&self) -> Result<(SimDisk, JournalLogStore, StateMachine), StorageError> {
        let disk = SimDisk::new(self.next_seed.fetch_add(1, Ordering::Relaxed));
        let (store, sm) = build(disk.disk_ref())?;
        Ok((disk, store, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_passes_on_real_disk() {
    Suite::test_all(RealDiskBuilder)
        .await
        .expect("openraft storage suite on RealDisk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_suite_passes_on_sim_disk() {
    let builder = SimDiskBuilder {
        next_seed: AtomicU64::new(0x5eed),
    };
    Suite::test_all(builder)
        .await
        .expect("openraft storage suite on SimDisk");
}
