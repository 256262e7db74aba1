//! The settings of a `finkfs-node` process: command-line flags, an optional
//! TOML file (`--config`), and defaults, in that order of precedence.
//!
//! The TOML file takes the same names as the flags (with `_` for `-`), the
//! Raft timings under `[raft]`, the apply knobs under `[apply]`:
//!
//! ```toml
//! id = 1
//! data_dir = "/var/lib/finkfs"
//! peer_listen = "0.0.0.0:7001"
//! peer_advertise = "node1.example:7001"
//! client_listen = "0.0.0.0:7002"
//! client_advertise = "node1.example:7002"
//! metrics_listen = "127.0.0.1:9101"
//! initial_members = ["1=node1.example:7001,node1.example:7002", "2=node2.example:7001,node2.example:7002"]
//! object_bytes_max = 1073741824
//!
//! [raft]
//! heartbeat_ms = 100
//! election_timeout_min_ms = 1000
//! election_timeout_max_ms = 2000
//! snapshot_every_entries = 50000
//! journal_segment_bytes = 67108864
//!
//! [apply]
//! sync_entries = 1024
//! sync_ms = 1000
//!
//! [backup]
//! dir = "/mnt/backup/finkfs"
//! interval_s = 3600
//! archive_interval_ms = 2000
//! keep_last = 24
//! keep_daily = 7
//! keep_weekly = 4
//!
//! [scrub]
//! period_s = 86400
//! rate_mib = 100
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use finkfs_raft::types::NodeId;
use serde::Deserialize;

use super::backup::{BackupSettings, ARCHIVE_INTERVAL_DEFAULT, BACKUP_INTERVAL_DEFAULT};
use crate::api::{MemberAddr, OBJECT_BYTES_MAX_DEFAULT, WRITE_TIMEOUT_DEFAULT};
use crate::backup::Retention;
use crate::scrub::{ScrubSettings, SCRUB_PERIOD_DEFAULT};

/// Default interval of leader heartbeats.
pub const HEARTBEAT_MS_DEFAULT: u64 = 100;
/// Default shortest election timeout.
pub const ELECTION_TIMEOUT_MIN_MS_DEFAULT: u64 = 1000;
/// Default longest election timeout.
pub const ELECTION_TIMEOUT_MAX_MS_DEFAULT: u64 = 2000;
/// Default size at which the journal starts a new segment (64 MiB).
pub const JOURNAL_SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// Smallest segment size accepted: a segment header and a small record.
pub const JOURNAL_SEGMENT_BYTES_MIN: u64 = 4096;
/// Default number of entries applied between two snapshots.
pub const SNAPSHOT_EVERY_ENTRIES_DEFAULT: u64 = 50_000;
/// Default entries applied between two durable syncs of the state machine.
pub const APPLY_SYNC_ENTRIES_DEFAULT: u64 = 1024;
/// Default longest time between two durable syncs of the state machine.
pub const APPLY_SYNC_MS_DEFAULT: u64 = 1000;
/// Largest configuration file read.
const CONFIG_FILE_BYTES_MAX: u64 = 1 << 20;

/// Command-line flags of `finkfs-node`.
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "finkfs-node", version, about = "A finkfs storage node")]
pub struct Flags {
    /// TOML file with the same settings (flags take precedence).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's id: unique in the cluster, stable for its data directory.
    #[arg(long)]
    pub id: Option<NodeId>,
    /// Directory holding this node's data.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address the peer (Raft) service listens on.
    #[arg(long, value_name = "HOST:PORT")]
    pub peer_listen: Option<String>,
    /// Peer address other nodes use to reach this one (default: the bound
    /// address; required when listening on 0.0.0.0 or [::]).
    #[arg(long, value_name = "HOST:PORT")]
    pub peer_advertise: Option<String>,
    /// Address the client service listens on.
    #[arg(long, value_name = "HOST:PORT")]
    pub client_listen: Option<String>,
    /// Client address followers send clients to (default: the bound address).
    #[arg(long, value_name = "HOST:PORT")]
    pub client_advertise: Option<String>,
    /// Address of the Prometheus /metrics endpoint (none if absent).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_listen: Option<String>,
    /// A member of the first cluster, `ID=PEER_ADDR,CLIENT_ADDR`; repeat for
    /// each. On its first start, the listed node with the smallest id
    /// initializes the cluster; the others wait to be contacted.
    #[arg(long = "initial-member", value_name = "ID=PEER,CLIENT")]
    pub initial_members: Vec<String>,
    /// This node was a member of its cluster and lost its data directory
    /// (a new disk, a wiped directory): started empty with this flag, it
    /// does not vote until it has followed a leader and caught up with the
    /// commit index that leader announced, so it never helps elect a leader
    /// on a vote or a log it lost. Without it an empty node counts as new.
    #[arg(long)]
    pub rejoin: bool,
    /// Largest object accepted, in bytes.
    #[arg(long)]
    pub object_bytes_max: Option<u64>,
    /// Leader heartbeat interval, in milliseconds.
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Shortest election timeout, in milliseconds.
    #[arg(long)]
    pub election_timeout_min_ms: Option<u64>,
    /// Longest election timeout, in milliseconds.
    #[arg(long)]
    pub election_timeout_max_ms: Option<u64>,
    /// Entries applied between two snapshots.
    #[arg(long)]
    pub snapshot_every_entries: Option<u64>,
    /// Size at which the journal starts a new segment, in bytes (a record
    /// larger than this gets a segment of its own). Purging frees whole
    /// segments, so smaller segments give disk space back sooner.
    #[arg(long)]
    pub journal_segment_bytes: Option<u64>,
    /// Entries applied between two durable syncs of the state machine.
    #[arg(long)]
    pub apply_sync_entries: Option<u64>,
    /// Longest time between two durable syncs of the state machine, in ms.
    #[arg(long)]
    pub apply_sync_ms: Option<u64>,
    /// Back up to this directory (another disk, a network mount) while this
    /// node leads: automatic backups are off without it.
    #[arg(long, value_name = "DIR")]
    pub backup_dir: Option<PathBuf>,
    /// Seconds between two automatic backups (default 3600).
    #[arg(long, value_name = "SECONDS")]
    pub backup_interval_s: Option<u64>,
    /// Milliseconds between two journal archive chunks written to the
    /// backup target (default 2000): the data-loss window of a restore.
    #[arg(long, value_name = "MS")]
    pub backup_archive_interval_ms: Option<u64>,
    /// Backups kept: the newest N (default 24).
    #[arg(long, value_name = "N")]
    pub backup_keep_last: Option<u32>,
    /// Backups kept: the newest of each of the last N days (default 7).
    #[arg(long, value_name = "N")]
    pub backup_keep_daily: Option<u32>,
    /// Backups kept: the newest of each of the last N weeks (default 4).
    #[arg(long, value_name = "N")]
    pub backup_keep_weekly: Option<u32>,
    /// A full scrub pass (every block and journal record read and
    /// verified, damage repaired from the peers) completes within this
    /// many seconds (default 86400); 0 turns the scrubber off.
    #[arg(long, value_name = "SECONDS")]
    pub scrub_period_s: Option<u64>,
    /// Cap on the scrub read rate, MiB per second (default: no cap beyond
    /// the built-in ceiling of 256 MiB/s).
    #[arg(long, value_name = "MIB")]
    pub scrub_rate_mib: Option<u64>,
    /// TEST ONLY, hidden: the fsyncs of the Raft log (journal and meta) do
    /// nothing, so the node acknowledges writes that a power cut loses.
    /// Exists so that the power-cut harness can show it catches that bug;
    /// never use it on data.
    #[arg(long, hide = true)]
    pub test_unsafe_skip_journal_fsync: bool,
}

/// The TOML file: every setting optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    id: Option<NodeId>,
    data_dir: Option<PathBuf>,
    peer_listen: Option<String>,
    peer_advertise: Option<String>,
    client_listen: Option<String>,
    client_advertise: Option<String>,
    metrics_listen: Option<String>,
    #[serde(default)]
    initial_members: Vec<String>,
    object_bytes_max: Option<u64>,
    #[serde(default)]
    raft: FileRaft,
    #[serde(default)]
    apply: FileApply,
    #[serde(default)]
    backup: FileBackup,
    #[serde(default)]
    scrub: FileScrub,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileScrub {
    period_s: Option<u64>,
    rate_mib: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBackup {
    dir: Option<PathBuf>,
    interval_s: Option<u64>,
    archive_interval_ms: Option<u64>,
    keep_last: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRaft {
    heartbeat_ms: Option<u64>,
    election_timeout_min_ms: Option<u64>,
    election_timeout_max_ms: Option<u64>,
    snapshot_every_entries: Option<u64>,
    journal_segment_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileApply {
    sync_entries: Option<u64>,
    sync_ms: Option<u64>,
}

/// Raft timings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftSettings {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Shortest election timeout.
    pub election_timeout_min_ms: u64,
    /// Longest election timeout.
    pub election_timeout_max_ms: u64,
    /// Entries applied between two snapshots.
    pub snapshot_every_entries: u64,
    /// The journal starts a new segment when the next record would take
    /// the current one past this many bytes.
    pub journal_segment_bytes: u64,
}

/// How often the state machine makes what it applied durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplySettings {
    /// Entries applied between two syncs.
    pub sync_entries: u64,
    /// Longest time between two syncs.
    pub sync_interval: Duration,
}

/// One member of the first cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    /// Its id.
    pub id: NodeId,
    /// Its addresses.
    pub addr: MemberAddr,
}

/// The checked settings of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// This node's id.
    pub id: NodeId,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// Where the peer service listens.
    pub peer_listen: SocketAddr,
    /// The peer address advertised, if not the bound one.
    pub peer_advertise: Option<String>,
    /// Where the client service listens.
    pub client_listen: SocketAddr,
    /// The client address advertised, if not the bound one.
    pub client_advertise: Option<String>,
    /// Where /metrics is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The members of the first cluster (empty: initialize by hand).
    pub initial_members: Vec<InitialMember>,
    /// Started empty after losing its data: no vote until caught up.
    pub rejoin: bool,
    /// Largest object accepted.
    pub object_bytes_max: u64,
    /// Longest wait for a write to commit.
    pub write_timeout: Duration,
    /// Raft timings.
    pub raft: RaftSettings,
    /// Apply sync knobs.
    pub apply: ApplySettings,
    /// Automatic backups, if on.
    pub backup: Option<BackupSettings>,
    /// The scrubber.
    pub scrub: ScrubSettings,
}

/// Why the settings are not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("cannot read config file {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for these settings.
    #[error("config file {}: {source}", file.display())]
    Parse {
        /// The file.
        file: PathBuf,
        /// What the parser said.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A required setting is missing.
    #[error("missing setting {0} (flag --{1} or key {0} in the config file)")]
    Missing(&'static str, &'static str),
    /// A setting has a bad value.
    #[error("setting {name}: {reason}")]
    Invalid {
        /// The setting.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl NodeConfig {
    /// The settings from `flags`, the file they name, and defaults.
    pub fn from_flags(flags: Flags) -> Result<NodeConfig, ConfigError> {
        let file = match &flags.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        merge(flags, file)
    }

    /// The advertised addresses of this node once its listeners are bound.
    pub fn member_addr(
        &self,
        peer_bound: SocketAddr,
        client_bound: SocketAddr,
    ) -> Result<MemberAddr, ConfigError> {
        let peer = advertised("peer_advertise", &self.peer_advertise, peer_bound)?;
        let client = advertised("client_advertise", &self.client_advertise, client_bound)?;
        MemberAddr::new(&peer, &client).map_err(|e| ConfigError::Invalid {
            name: "peer_advertise/client_advertise",
            reason: e.to_string(),
        })
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let read = |source| ConfigError::Read {
        file: path.to_path_buf(),
        source,
    };
    // The config file is operator input, not durable data of the store.
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.len() > CONFIG_FILE_BYTES_MAX {
        return Err(ConfigError::Invalid {
            name: "config",
            reason: format!(
                "{} is larger than {CONFIG_FILE_BYTES_MAX} bytes",
                path.display()
            ),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    parse_file(&text).map_err(|source| ConfigError::Parse {
        file: path.to_path_buf(),
        source: Box::new(source),
    })
}

fn parse_file(text: &str) -> Result<FileConfig, toml::de::Error> {
    toml::from_str(text)
}

fn merge(flags: Flags, file: FileConfig) -> Result<NodeConfig, ConfigError> {
    let flags_backup = FileBackup {
        dir: flags.backup_dir.clone(),
        interval_s: flags.backup_interval_s,
        archive_interval_ms: flags.backup_archive_interval_ms,
        keep_last: flags.backup_keep_last,
        keep_daily: flags.backup_keep_daily,
        keep_weekly: flags.backup_keep_weekly,
    };
    let id = flags
        .id
        .or(file.id)
        .ok_or(ConfigError::Missing("id", "id"))?;
    let data_dir = flags
        .data_dir
        .or(file.data_dir)
        .ok_or(ConfigError::Missing("data_dir", "data-dir"))?;
    let peer_listen = flags.peer_listen.or(file.peer_listen);
    let peer_listen = socket("peer_listen", "peer-listen", peer_listen)?;
    let client_listen = flags.client_listen.or(file.client_listen);
    let client_listen = socket("client_listen", "client-listen", client_listen)?;
    let metrics_listen = match flags.metrics_listen.or(file.metrics_listen) {
        Some(addr) => Some(socket("metrics_listen", "metrics-listen", Some(addr))?),
        None => None,
    };
    let members = if flags.initial_members.is_empty() {
        file.initial_members
    } else {
        flags.initial_members
    };
    let raft = RaftSettings {
        heartbeat_ms: flags
            .heartbeat_ms
            .or(file.raft.heartbeat_ms)
            .unwrap_or(HEARTBEAT_MS_DEFAULT),
        election_timeout_min_ms: flags
            .election_timeout_min_ms
            .or(file.raft.election_timeout_min_ms)
            .unwrap_or(ELECTION_TIMEOUT_MIN_MS_DEFAULT),
        election_timeout_max_ms: flags
            .election_timeout_max_ms
            .or(file.raft.election_timeout_max_ms)
            .unwrap_or(ELECTION_TIMEOUT_MAX_MS_DEFAULT),
        snapshot_every_entries: flags
            .snapshot_every_entries
            .or(file.raft.snapshot_every_entries)
            .unwrap_or(SNAPSHOT_EVERY_ENTRIES_DEFAULT),
        journal_segment_bytes: flags
            .journal_segment_bytes
            .or(file.raft.journal_segment_bytes)
            .unwrap_or(JOURNAL_SEGMENT_BYTES_DEFAULT),
    };
    let apply = ApplySettings {
        sync_entries: flags
            .apply_sync_entries
            .or(file.apply.sync_entries)
            .unwrap_or(APPLY_SYNC_ENTRIES_DEFAULT),
        sync_interval: Duration::from_millis(
            flags
                .apply_sync_ms
                .or(file.apply.sync_ms)
                .unwrap_or(APPLY_SYNC_MS_DEFAULT),
        ),
    };
    let config = NodeConfig {
        id,
        data_dir,
        peer_listen,
        peer_advertise: flags.peer_advertise.or(file.peer_advertise),
        client_listen,
        client_advertise: flags.client_advertise.or(file.client_advertise),
        metrics_listen,
        initial_members: members
            .iter()
            .map(|m| initial_member(m))
            .collect::<Result<_, _>>()?,
        rejoin: flags.rejoin,
        object_bytes_max: flags
            .object_bytes_max
            .or(file.object_bytes_max)
            .unwrap_or(OBJECT_BYTES_MAX_DEFAULT),
        write_timeout: WRITE_TIMEOUT_DEFAULT,
        raft,
        apply,
        backup: backup_settings(&flags_backup, file.backup),
        scrub: ScrubSettings {
            period: flags
                .scrub_period_s
                .or(file.scrub.period_s)
                .map_or(SCRUB_PERIOD_DEFAULT, Duration::from_secs),
            rate_cap_bytes_per_s: flags
                .scrub_rate_mib
                .or(file.scrub.rate_mib)
                .map(|mib| mib.saturating_mul(1 << 20)),
        },
    };
    check(&config)?;
    Ok(config)
}

/// Backup settings from flags over the file over defaults; none without a
/// directory.
fn backup_settings(flags: &FileBackup, file: FileBackup) -> Option<BackupSettings> {
    let defaults = Retention::default();
    Some(BackupSettings {
        dir: flags.dir.clone().or(file.dir)?,
        interval: flags
            .interval_s
            .or(file.interval_s)
            .map_or(BACKUP_INTERVAL_DEFAULT, Duration::from_secs),
        archive_interval: flags
            .archive_interval_ms
            .or(file.archive_interval_ms)
            .map_or(ARCHIVE_INTERVAL_DEFAULT, Duration::from_millis),
        retention: Retention {
            keep_last: flags
                .keep_last
                .or(file.keep_last)
                .unwrap_or(defaults.keep_last),
            keep_daily: flags
                .keep_daily
                .or(file.keep_daily)
                .unwrap_or(defaults.keep_daily),
            keep_weekly: flags
                .keep_weekly
                .or(file.keep_weekly)
                .unwrap_or(defaults.keep_weekly),
        },
    })
}

fn check(config: &NodeConfig) -> Result<(), ConfigError> {
    let invalid = |name, reason: String| Err(ConfigError::Invalid { name, reason });
    let raft = &config.raft;
    if raft.heartbeat_ms == 0 {
        return invalid("heartbeat_ms", "must be at least 1".into());
    }
    if raft.election_timeout_min_ms <= raft.heartbeat_ms {
        return invalid(
            "election_timeout_min_ms",
            format!("must exceed heartbeat_ms ({})", raft.heartbeat_ms),
        );
    }
    if raft.election_timeout_max_ms <= raft.election_timeout_min_ms {
        return invalid(
            "election_timeout_max_ms",
            format!(
                "must exceed election_timeout_min_ms ({})",
                raft.election_timeout_min_ms
            ),
        );
    }
    if raft.journal_segment_bytes < JOURNAL_SEGMENT_BYTES_MIN {
        return invalid(
            "journal_segment_bytes",
            format!("must be at least {JOURNAL_SEGMENT_BYTES_MIN}"),
        );
    }
    if config.apply.sync_entries == 0 {
        return invalid("apply_sync_entries", "must be at least 1".into());
    }
    let ceiling = crate::command::OBJECT_BYTES_MAX;
    if config.object_bytes_max == 0 || config.object_bytes_max > ceiling {
        return invalid(
            "object_bytes_max",
            format!("must be in 1..={ceiling} (the largest object a command stores)"),
        );
    }
    if let Some(backup) = &config.backup {
        if backup.interval.is_zero() {
            return invalid("backup_interval_s", "must be at least 1".into());
        }
        if backup.archive_interval.is_zero() {
            return invalid("backup_archive_interval_ms", "must be at least 1".into());
        }
        if backup.retention.keep_last == 0 {
            return invalid("backup_keep_last", "must be at least 1".into());
        }
    }
    if config.scrub.rate_cap_bytes_per_s == Some(0) {
        return invalid("scrub_rate_mib", "must be at least 1".into());
    }
    let mut ids: Vec<NodeId> = config.initial_members.iter().map(|m| m.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return invalid("initial_members", "a member id is listed twice".into());
    }
    if !ids.is_empty() && !ids.contains(&config.id) {
        return invalid(
            "initial_members",
            format!("this node ({}) is not among them", config.id),
        );
    }
    Ok(())
}

fn socket(
    name: &'static str,
    flag: &'static str,
    value: Option<String>,
) -> Result<SocketAddr, ConfigError> {
    let value = value.ok_or(ConfigError::Missing(name, flag))?;
    value.parse().map_err(|e| ConfigError::Invalid {
        name,
        reason: format!("{value:?} is not IP:PORT ({e})"),
    })
}

/// `ID=PEER,CLIENT`.
fn initial_member(text: &str) -> Result<InitialMember, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "initial_members",
        reason,
    };
    let (id, addrs) = text
        .split_once('=')
        .ok_or_else(|| invalid(format!("{text:?} is not ID=PEER_ADDR,CLIENT_ADDR")))?;
    let id = id
        .trim()
        .parse()
        .map_err(|e| invalid(format!("{text:?}: bad id: {e}")))?;
    let (peer, client) = addrs
        .split_once(',')
        .ok_or_else(|| invalid(format!("{text:?} is not ID=PEER_ADDR,CLIENT_ADDR")))?;
    let addr = MemberAddr::new(peer.trim(), client.trim()).map_err(|e| invalid(e.to_string()))?;
    Ok(InitialMember { id, addr })
}

fn advertised(
    name: &'static str,
    given: &Option<String>,
    bound: SocketAddr,
) -> Result<String, ConfigError> {
    if let Some(given) = given {
        return Ok(given.clone());
    }
    if bound.ip().is_unspecified() {
        return Err(ConfigError::Invalid {
            name,
            reason: format!(
                "listening on {bound}, which other nodes cannot dial: give the address to advertise"
            ),
        });
    }
    Ok(bound.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Flags {
        Flags {
            id: Some(1),
            data_dir: Some("/d".into()),
            peer_listen: Some("127.0.0.1:7001".into()),
            client_listen: Some("127.0.0.1:7002".into()),
            ..Flags::default()
        }
    }

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let file = parse_file(
            "id = 9\ndata_dir = \"/f\"\npeer_listen = \"127.0.0.1:1\"\nclient_listen = \"127.0.0.1:2\"\n[raft]\nheartbeat_ms = 50\n",
        )
        .unwrap();
        let config = merge(flags(), file).unwrap();
        assert_eq!(config.id, 1);
        assert_eq!(config.data_dir, PathBuf::from("/d"));
        assert_eq!(config.raft.heartbeat_ms, 50);
        assert_eq!(
            config.raft.election_timeout_min_ms,
            ELECTION_TIMEOUT_MIN_MS_DEFAULT
        );
        assert_eq!(config.metrics_listen, None);
    }

    #[test]
    fn missing_and_unknown_settings_are_refused() {
        let mut no_id = flags();
        no_id.id = None;
        assert!(matches!(
            merge(no_id, FileConfig::default()),
            Err(ConfigError::Missing("id", _))
        ));
        assert!(parse_file("idd = 1").is_err());
        assert!(parse_file("[raft]\nheartbeat = 1").is_err());
    }

    #[test]
    fn scrub_settings_come_from_the_file_unless_flags_say_otherwise() {
        let file = parse_file("[scrub]\nperiod_s = 3600\nrate_mib = 50\n").unwrap();
        let config = merge(flags(), file.clone()).unwrap();
        assert_eq!(config.scrub.period, Duration::from_secs(3600));
        assert_eq!(config.scrub.rate_cap_bytes_per_s, Some(50 << 20));
        let mut off = flags();
        off.scrub_period_s = Some(0);
        assert!(!merge(off, file).unwrap().scrub.is_enabled());
        let defaults = merge(flags(), FileConfig::default()).unwrap();
        assert_eq!(defaults.scrub.period, SCRUB_PERIOD_DEFAULT);
        let mut zero_rate = flags();
        zero_rate.scrub_rate_mib = Some(0);
        assert!(merge(zero_rate, FileConfig::default()).is_err());
    }

    #[test]
    fn journal_segment_size_comes_from_flag_or_file_and_has_a_floor() {
        let defaults = merge(flags(), FileConfig::default()).unwrap();
        assert_eq!(
            defaults.raft.journal_segment_bytes,
            JOURNAL_SEGMENT_BYTES_DEFAULT
        );
        let file = parse_file("[raft]\njournal_segment_bytes = 1048576\n").unwrap();
        let from_file = merge(flags(), file.clone()).unwrap();
        assert_eq!(from_file.raft.journal_segment_bytes, 1 << 20);
        let mut flagged = flags();
        flagged.journal_segment_bytes = Some(65536);
        assert_eq!(
            merge(flagged, file).unwrap().raft.journal_segment_bytes,
            65536
        );
        let mut tiny = flags();
        tiny.journal_segment_bytes = Some(JOURNAL_SEGMENT_BYTES_MIN - 1);
        let refused = merge(tiny, FileConfig::default()).unwrap_err();
        assert!(
            refused.to_string().contains("journal_segment_bytes"),
            "{refused}"
        );
    }

    #[test]
    fn inconsistent_timeouts_are_refused() {
        let mut bad = flags();
        bad.heartbeat_ms = Some(500);
        bad.election_timeout_min_ms = Some(400);
        assert!(merge(bad, FileConfig::default()).is_err());
    }

    #[test]
    fn initial_members_parse_and_must_include_this_node() {
        let mut with = flags();
        with.initial_members = vec![
            "1=127.0.0.1:7001,127.0.0.1:7002".into(),
            "2=127.0.0.1:7011,127.0.0.1:7012".into(),
        ];
        let config = merge(with.clone(), FileConfig::default()).unwrap();
        assert_eq!(config.initial_members.len(), 2);
        assert_eq!(
            config.initial_members[1].addr.client.as_deref(),
            Some("127.0.0.1:7012")
        );
        with.id = Some(3);
        assert!(merge(with, FileConfig::default()).is_err());
    }

    #[test]
    fn unspecified_listen_address_needs_an_advertised_one() {
        let config = merge(flags(), FileConfig::default()).unwrap();
        let any: SocketAddr = "0.0.0.0:7001".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:7002".parse().unwrap();
        assert!(config.member_addr(any, local).is_err());
        let addr = config.member_addr(local, local).unwrap();
        assert_eq!(addr.peer, "127.0.0.1:7002");
    }
}
