//! What a run saw: the coverage counters, the violations, and the digest of
//! its trace.

use std::collections::BTreeMap;
use std::fmt;

use crate::node_disk::Structure;

/// How many nodes a power cut took down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CutScope {
    /// One node.
    One,
    /// Fewer than half (and more than one).
    Minority,
    /// At least half but not all.
    Majority,
    /// Every node at once.
    All,
}

/// A fault injected on a disk at rest (the node powered off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiskFaultKind {
    /// One bit flipped.
    BitFlip,
    /// One 512-byte sector zeroed.
    ZeroedSector,
    /// An I/O error on the next read, write or fsync of a running node.
    Eio,
    /// The disk full on the next write or create of a running node.
    Enospc,
    /// The next write lands whole sectors away from where it was aimed.
    MisdirectedWrite,
    /// The next write reports success and never becomes durable.
    LostWrite,
    /// A power cut tore an unsynced write sector by sector.
    TornWrite,
    /// A power cut lost an unsynced write or length change.
    LostUnsynced,
    /// A power cut undid a create, rename or remove whose directory was
    /// not synced.
    MetadataReverted,
    /// A failed fsync dropped pending writes.
    FailedSync,
}

impl DiskFaultKind {
    /// The kind of a fault the simulated disk logged, if counted.
    pub fn of(kind: &finkfs_simdisk::FaultKind) -> Option<DiskFaultKind> {
        use finkfs_simdisk::FaultKind as K;
        Some(match kind {
            K::BitFlip => DiskFaultKind::BitFlip,
            K::ZeroedSector => DiskFaultKind::ZeroedSector,
            K::Eio { .. } => DiskFaultKind::Eio,
            K::Enospc { .. } => DiskFaultKind::Enospc,
            K::Misdirected { .. } => DiskFaultKind::MisdirectedWrite,
            K::LostWrite => DiskFaultKind::LostWrite,
            K::TornWrite => DiskFaultKind::TornWrite,
            K::LostUnsynced => DiskFaultKind::LostUnsynced,
            K::MetadataReverted { .. } => DiskFaultKind::MetadataReverted,
            K::FailedSync => DiskFaultKind::FailedSync,
            _ => return None,
        })
    }
}

/// Counters of what one run (or a range of runs) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Runs summed.
    pub runs: u64,
    /// Steps run.
    pub steps: u64,
    /// Power cuts by scope.
    pub cuts: BTreeMap<CutScope, u64>,
    /// Cuts that landed while a node was booting (the tripwire).
    pub cuts_during_recovery: u64,
    /// Cuts that landed in the middle of a running node's operation (its
    /// tripwire fired after the boot).
    pub cuts_mid_operation: u64,
    /// Node incarnations ended by a cut.
    pub node_power_cuts: u64,
    /// Runs whose damage hit two nodes (a minority of five), not one.
    pub runs_damaging_two_nodes: u64,
    /// Objects damaged on every replica (the halt check).
    pub objects_damaged_on_every_replica: u64,
    /// Reads of such an object refused with `DATA_LOSS`.
    pub halted_reads_refused: u64,
    /// Journal records of a settled object damaged on every replica.
    pub journal_records_damaged_on_every_replica: u64,
    /// Times every snapshot of every replica was damaged.
    pub snapshots_damaged_on_every_replica: u64,
    /// Times one vote copy of every replica was damaged.
    pub vote_copies_damaged_on_every_replica: u64,
    /// Times the index of every replica was damaged.
    pub indexes_damaged_on_every_replica: u64,
    /// Boots that started without a vote over journal damage, after which
    /// the operator stopped and repaired the node.
    pub boots_blocked_on_journal_damage: u64,
    /// Boots that succeeded.
    pub boots: u64,
    /// Boots refused because the node found damage it would not start on.
    pub boots_refused: u64,
    /// Boots an injected EIO or ENOSPC failed (started again, no repair).
    pub boots_failed_on_io: u64,
    /// Cuts a tripwire made inside a snapshot write (a build, or an
    /// install being received), at boot or later.
    pub cuts_in_snapshot_writes: u64,
    /// Offline repairs run on refusing nodes.
    pub repairs: u64,
    /// Nodes wiped and started again with `--rejoin`, as their refusal
    /// asked.
    pub rejoins: u64,
    /// Disk faults that fired (the simulated disks' own logs), by structure
    /// and kind.
    pub disk_faults: BTreeMap<(Structure, DiskFaultKind), u64>,
    /// Nodes restarted because their Raft node stopped (a storage error it
    /// cannot go on from), as a supervisor would.
    pub process_restarts: u64,
    /// Network partitions made.
    pub partitions: u64,
    /// Periods of lossy links.
    pub lossy_periods: u64,
    /// Writes acknowledged.
    pub acknowledged: u64,
    /// Writes rejected (no effect).
    pub rejected: u64,
    /// Writes in doubt.
    pub in_doubt: u64,
    /// Reads checked against the model (during the run).
    pub reads_checked: u64,
    /// Reads refused loudly.
    pub reads_refused: u64,
    /// Acknowledged paths read back at the end, from every healthy node.
    pub final_reads: u64,
    /// Leaders seen (distinct terms).
    pub terms_with_leader: u64,
    /// Messages sent on the simulated network.
    pub messages: u64,
    /// Messages lost (link faults and partitions).
    pub messages_lost: u64,
}

impl Coverage {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Coverage) {
        self.runs += other.runs;
        self.steps += other.steps;
        for (k, v) in &other.cuts {
            *self.cuts.entry(*k).or_default() += v;
        }
        self.cuts_during_recovery += other.cuts_during_recovery;
        self.cuts_mid_operation += other.cuts_mid_operation;
        self.node_power_cuts += other.node_power_cuts;
        self.boots += other.boots;
        self.runs_damaging_two_nodes += other.runs_damaging_two_nodes;
        self.objects_damaged_on_every_replica += other.objects_damaged_on_every_replica;
        self.halted_reads_refused += other.halted_reads_refused;
        self.journal_records_damaged_on_every_replica +=
            other.journal_records_damaged_on_every_replica;
        self.snapshots_damaged_on_every_replica += other.snapshots_damaged_on_every_replica;
        self.vote_copies_damaged_on_every_replica += other.vote_copies_damaged_on_every_replica;
        self.indexes_damaged_on_every_replica += other.indexes_damaged_on_every_replica;
        self.boots_blocked_on_journal_damage += other.boots_blocked_on_journal_damage;
        self.boots_refused += other.boots_refused;
        self.boots_failed_on_io += other.boots_failed_on_io;
        self.rejoins += other.rejoins;
        self.cuts_in_snapshot_writes += other.cuts_in_snapshot_writes;
        self.repairs += other.repairs;
        for (k, v) in &other.disk_faults {
            *self.disk_faults.entry(*k).or_default() += v;
        }
        self.process_restarts += other.process_restarts;
        self.partitions += other.partitions;
        self.lossy_periods += other.lossy_periods;
        self.acknowledged += other.acknowledged;
        self.rejected += other.rejected;
        self.in_doubt += other.in_doubt;
        self.reads_checked += other.reads_checked;
        self.reads_refused += other.reads_refused;
        self.final_reads += other.final_reads;
        self.terms_with_leader += other.terms_with_leader;
        self.messages += other.messages;
        self.messages_lost += other.messages_lost;
    }

    /// Power cuts of any scope.
    pub fn cuts_total(&self) -> u64 {
        self.cuts.values().sum()
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cuts = |s| self.cuts.get(&s).copied().unwrap_or(0);
        writeln!(
            f,
            "runs {}  steps {}  runs damaging two nodes {}",
            self.runs, self.steps, self.runs_damaging_two_nodes
        )?;
        writeln!(
            f,
            "power cuts {} (one {}, minority {}, majority {}, all nodes {}), during recovery {}, mid-operation {}, in a snapshot write {}, node incarnations ended {}",
            self.cuts_total(),
            cuts(CutScope::One),
            cuts(CutScope::Minority),
            cuts(CutScope::Majority),
            cuts(CutScope::All),
            self.cuts_during_recovery,
            self.cuts_mid_operation,
            self.cuts_in_snapshot_writes,
            self.node_power_cuts
        )?;
        writeln!(
            f,
            "boots {}, refused on damage {} (of them started without a vote over journal damage {}), offline repairs {}, wiped and rejoined {}, failed on an I/O error {}",
            self.boots,
            self.boots_refused,
            self.boots_blocked_on_journal_damage,
            self.repairs,
            self.rejoins,
            self.boots_failed_on_io
        )?;
        writeln!(
            f,
            "objects damaged on every replica {}, reads of them refused as data loss {}; on every replica also: journal records {}, snapshots {}, a vote copy {}, the index {}",
            self.objects_damaged_on_every_replica,
            self.halted_reads_refused,
            self.journal_records_damaged_on_every_replica,
            self.snapshots_damaged_on_every_replica,
            self.vote_copies_damaged_on_every_replica,
            self.indexes_damaged_on_every_replica
        )?;
        writeln!(
            f,
            "restarts after a fatal storage error {}",
            self.process_restarts
        )?;
        write!(f, "disk faults:")?;
        if self.disk_faults.is_empty() {
            write!(f, " none")?;
        }
        for ((structure, kind), n) in &self.disk_faults {
            write!(f, " {structure:?}/{kind:?} {n}")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "network: partitions {}, lossy periods {}, messages {} ({} lost)",
            self.partitions, self.lossy_periods, self.messages, self.messages_lost
        )?;
        writeln!(
            f,
            "writes: acknowledged {}, rejected {}, in doubt {}; reads checked {} (refused {}); final read-backs {}; terms with a leader {}",
            self.acknowledged,
            self.rejected,
            self.in_doubt,
            self.reads_checked,
            self.reads_refused,
            self.final_reads,
            self.terms_with_leader
        )
    }
}

/// One run's outcome.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// What it covered.
    pub coverage: Coverage,
    /// Broken invariants, each with the step it was seen at.
    pub violations: Vec<String>,
    /// BLAKE3 of the run's event trace, hex.
    pub digest: String,
}
