//! One simulated node across its incarnations: its disk outlives power
//! cuts; each boot opens the group on a fresh [`NodeDisk`] through the
//! daemon's own [`open_group`], inside the node's task group, and each cut
//! ends the incarnation the way a power failure does (section 4 of
//! `docs/design-simulation.md`).

use std::sync::{Arc, Weak};

use finkfs_node::api::{ClientService, MemberAddr};
use finkfs_node::daemon::config::NodeConfig;
use finkfs_node::daemon::unsafe_sync::SkipRaftLogSync;
use finkfs_node::daemon::{open_group, DaemonError};
use finkfs_node::reader::ObjectReader;
use finkfs_node::state_machine::StateMachine;
use finkfs_raft::log_store::VoteBlocker;
use finkfs_raft::network::PeerOptions;
use finkfs_raft::rt::{self, NodeTag};
use finkfs_raft::types::{NodeId, Raft};
use finkfs_simdisk::{CrashPolicy, SimDisk};
use tokio::sync::watch;

use crate::node_disk::{Incarnation, NodeDisk};
use crate::{SimNet, SimTransport};

/// The handles of a running incarnation. Dropping them (after the node's
/// tasks are aborted) must release every reference to its [`NodeDisk`].
pub(crate) struct Live {
    pub tag: NodeTag,
    pub disk: NodeDisk,
    pub raft: Raft<StateMachine>,
    pub reader: ObjectReader,
    pub client: Arc<ClientService<StateMachine>>,
    /// The log store opened with a `JournalDamaged` vote blocker, which
    /// only a repair lifts.
    pub journal_damaged: bool,
    /// Keeps the group's background tasks running (they stop when it is
    /// dropped, and are aborted anyway at a cut).
    _stop: watch::Sender<bool>,
}

/// Why an incarnation ended or did not start.
#[derive(Debug)]
pub(crate) enum BootError {
    /// The power was cut during the boot (the tripwire).
    Tripped(String),
    /// The node refused to open its data (damage found): an operator must
    /// repair it.
    Refused(String),
}

pub(crate) struct SimNode {
    pub id: NodeId,
    pub addr: MemberAddr,
    pub disk: SimDisk,
    pub incarnation: u64,
    pub live: Option<Live>,
}

impl SimNode {
    pub fn new(id: NodeId, disk_seed: u64) -> SimNode {
        let addr = MemberAddr::new(&peer_addr(id), &format!("node-{id}:7001"))
            .expect("simulated addresses are host:port");
        SimNode {
            id,
            addr,
            disk: SimDisk::new(disk_seed),
            incarnation: 0,
            live: None,
        }
    }

    pub fn peer(&self) -> &str {
        &self.addr.peer
    }

    /// Boots the next incarnation; `wire` arms the tripwire: a cut at the
    /// mutating operation under its path prefix that comes after that
    /// many others there, in the boot or after.
    pub async fn boot(
        &mut self,
        net: &SimNet,
        config: &NodeConfig,
        wire: Option<(&str, u64)>,
        bug: Option<super::Bug>,
    ) -> Result<String, BootError> {
        self.incarnation += 1;
        let tag = NodeTag {
            node: self.id,
            incarnation: self.incarnation,
        };
        let disk = NodeDisk::new(self.disk.disk_ref());
        if let Some((prefix, allowed)) = wire {
            disk.arm_tripwire(std::path::Path::new(prefix), allowed);
        }
        let transport = Arc::new(SimTransport::new(
            net.clone(),
            self.peer(),
            PeerOptions::default(),
        ));
        let (stop, stopped) = watch::channel(false);
        let node_disk: finkfs_seam::DiskRef = match bug {
            Some(super::Bug::AckBeforeFsync) => {
                Arc::new(SkipRaftLogSync::new(Arc::new(disk.clone())))
            }
            _ => Arc::new(disk.clone()),
        };
        let opened = rt::in_node(
            tag,
            open_group(config, node_disk, transport, self.addr.clone(), stopped),
        )
        .await;
        let parts = match opened {
            Ok(parts) => parts,
            Err(error) => {
                let tripped = disk.trip().is_some() || disk.is_off();
                // A refusal is the process exiting: its unsynced writes
                // stay in the page cache. A trip is a power cut.
                let policy = if tripped {
                    CrashPolicy::Random
                } else {
                    CrashPolicy::KeepUnsynced
                };
                self.end(&disk, tag, policy).await;
                return Err(describe(error, tripped));
            }
        };
        let opened = {
            let report = &parts.open_report;
            let vote = report.state.vote.map(|v| v.to_string());
            format!(
                "vote {vote:?}, committed {:?}, purged {:?}, blockers {:?}",
                report.state.committed.map(|l| l.index),
                report.state.purged.map(|l| l.index),
                report.vote_blockers
            )
        };
        let journal_damaged = parts
            .open_report
            .vote_blockers
            .iter()
            .any(|b| matches!(b, VoteBlocker::JournalDamaged { .. }));
        net.attach(self.peer(), Arc::new(parts.peer_service), Some(tag));
        net.set_powered(self.peer(), true);
        self.live = Some(Live {
            tag,
            disk,
            raft: parts.raft,
            reader: parts.reader,
            client: Arc::new(parts.client_service),
            journal_damaged,
            _stop: stop,
        });
        Ok(opened)
    }

    /// Cuts the power: the network forgets the node, the disk loses what
    /// `policy` says, every task of the incarnation is aborted and every
    /// handle dropped. Returns the incarnation's weak reference, which must
    /// be dead now (checked by the caller).
    pub async fn cut(&mut self, net: &SimNet, policy: CrashPolicy) -> Option<Weak<Incarnation>> {
        net.set_powered(self.peer(), false);
        let live = self.live.take()?;
        let (disk, tag) = (live.disk.clone(), live.tag);
        let weak = disk.watch();
        drop(live);
        net.detach(self.peer());
        self.end(&disk, tag, policy).await;
        Some(weak)
    }

    async fn end(&self, disk: &NodeDisk, tag: NodeTag, policy: CrashPolicy) {
        disk.power_off();
        self.disk.power_cut_with(policy);
        rt::stop_node(tag).await;
    }
}

/// The peer address of node `id` on the simulated network.
pub(crate) fn peer_addr(id: NodeId) -> String {
    format!("node-{id}:7000")
}

fn describe(error: DaemonError, tripped: bool) -> BootError {
    let text = error.to_string();
    if tripped || text.contains("powered off") {
        BootError::Tripped(text)
    } else {
        BootError::Refused(text)
    }
}
