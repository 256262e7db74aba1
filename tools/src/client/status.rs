//! `finkfs status [--json]`: the cluster as its leader sees it (members,
//! term, commit index, each member's replication progress), plus each
//! member's own answer, asked directly, so an unreachable or blocked node
//! shows as such. Exits with 1 when there is no leader or a member is not
//! healthy.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use finkfs_node::api::proto::{Role, StatusReply};
use finkfs_node::client::Client;
use serde::Serialize;

use super::Cluster;
use crate::exit::Outcome;

/// Longest wait for one member's own status.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// A member further behind the leader than this many entries is lagging.
pub const LAG_ENTRIES_WARN: u64 = 1000;
/// A member silent towards the leader for longer than this is lagging.
pub const LAST_ACK_MS_WARN: u64 = 5000;

/// The long `--help` text (set where the command is declared).
pub const LONG_HELP: &str = "\
Shows the cluster: the leader, the term, the commit index, and one line per
member with its role, its state, how far it applied the log, its replication
progress as the leader sees it (matched index, lag in entries, time since its
last acknowledgement) and its health: ok, lagging, unreachable, or
may-not-vote (it lost its vote or log entries and must be repaired).

Example:
  finkfs --cluster 127.0.0.1:7002 status

--json prints one object of this stable shape (null when unknown):
  {\"answered_by\": 1, \"leader_id\": 1, \"leader_client_addr\": \"10.0.0.1:7002\",
   \"term\": 3, \"commit_index\": 2051, \"last_log_index\": 2051, \"healthy\": true,
   \"members\": [{\"id\": 1, \"role\": \"voter\", \"peer_addr\": \"10.0.0.1:7001\",
     \"client_addr\": \"10.0.0.1:7002\", \"reachable\": true, \"state\": \"leader\",
     \"term\": 3, \"commit_index\": 2051, \"last_applied\": 2051, \"may_vote\": true,
     \"vote_blockers\": [], \"matched_index\": 2051, \"lag_entries\": 0,
     \"last_ack_ms\": null, \"backup\": null, \"health\": \"ok\", \"problem\": null}]}

A member with automatic backups (finkfs-node --backup-dir) has instead of
null: {\"successes\", \"failures\", \"last_success_unix\", \"last_success_age_s\",
\"last_seq\", \"last_size_bytes\", \"last_written_bytes\", \"last_error\",
\"archived_index\", \"archive_failures\"}; the table prints one line per such
member. Backups are taken by the leader, so look at the leader's line.

Exits with 1 when no leader is known or a member is not ok.";

/// Flags of `finkfs status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (shape in --help) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The cluster's state (the `--json` shape).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    /// The node whose view this is (the leader when it could be reached).
    pub answered_by: u64,
    /// The leader, if one is known.
    pub leader_id: Option<u64>,
    /// The leader's client address, if known.
    pub leader_client_addr: Option<String>,
    /// The current term.
    pub term: u64,
    /// The highest committed log index.
    pub commit_index: Option<u64>,
    /// The last log index of the answering node.
    pub last_log_index: Option<u64>,
    /// A leader is known and every member is ok.
    pub healthy: bool,
    /// Every member.
    pub members: Vec<MemberStatus>,
}

/// One member.
#[derive(Debug, Clone, Serialize)]
pub struct MemberStatus {
    /// Its id.
    pub id: u64,
    /// `voter` or `learner`.
    pub role: &'static str,
    /// Its peer (Raft) address.
    pub peer_addr: String,
    /// Its client address, if it advertised one.
    pub client_addr: Option<String>,
    /// Whether it answered when asked directly.
    pub reachable: bool,
    /// Its own state: leader, follower, candidate, learner, shutdown.
    pub state: Option<String>,
    /// Its own term.
    pub term: Option<u64>,
    /// Its own commit index.
    pub commit_index: Option<u64>,
    /// The last log index it applied.
    pub last_applied: Option<u64>,
    /// False when it lost its vote or log entries.
    pub may_vote: Option<bool>,
    /// Why it may not vote.
    pub vote_blockers: Vec<String>,
    /// Highest log index the leader knows it holds.
    pub matched_index: Option<u64>,
    /// Entries it lacks behind the leader.
    pub lag_entries: Option<u64>,
    /// Milliseconds since it last acknowledged the leader.
    pub last_ack_ms: Option<u64>,
    /// Its automatic backups, when it has them configured.
    pub backup: Option<BackupView>,
    /// `ok`, `lagging`, `unreachable` or `may-not-vote`.
    pub health: &'static str,
    /// What is wrong, in words.
    pub problem: Option<String>,
}

/// What a member says of its automatic backups (it backs up while it leads).
#[derive(Debug, Clone, Serialize)]
pub struct BackupView {
    pub successes: u64,
    pub failures: u64,
    /// Unix seconds of its last successful backup.
    pub last_success_unix: Option<u64>,
    /// Seconds since then, when it had one.
    pub last_success_age_s: Option<u64>,
    pub last_seq: Option<u64>,
    pub last_size_bytes: u64,
    pub last_written_bytes: u64,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// Last log index the backup target holds, as it last saw it.
    pub archived_index: u64,
    pub archive_failures: u64,
}

impl BackupView {
    fn from_reply(reply: &finkfs_node::api::proto::BackupStatus) -> BackupView {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        BackupView {
            successes: reply.successes,
            failures: reply.failures,
            last_success_unix: reply.last_success_unix,
            last_success_age_s: reply.last_success_unix.map(|t| now.saturating_sub(t)),
            last_seq: reply.last_seq,
            last_size_bytes: reply.last_size_bytes,
            last_written_bytes: reply.last_written_bytes,
            last_error: non_empty(&reply.last_error),
            archived_index: reply.archived_index,
            archive_failures: reply.archive_failures,
        }
    }

    fn describe(&self) -> String {
        let last = match (self.last_seq, self.last_success_age_s) {
            (Some(seq), Some(age)) => format!(
                "last backup {seq} taken {age} s ago ({} covered, {} written)",
                crate::format::bytes(self.last_size_bytes),
                crate::format::bytes(self.last_written_bytes)
            ),
            _ => "no backup taken by this node yet".to_string(),
        };
        let mut text = format!(
            "{last}; {} ok, {} failed; target reaches log index {}",
            self.successes, self.failures, self.archived_index
        );
        if let Some(error) = &self.last_error {
            text.push_str(&format!("; LAST ATTEMPT FAILED: {error}"));
        }
        text
    }
}

/// Runs `finkfs status`.
pub async fn run(cluster: Cluster, args: StatusArgs) -> anyhow::Result<Outcome> {
    let client = cluster.connect().await?;
    let status = gather(&client).await?;
    if args.json {
        let text = serde_json::to_string_pretty(&status).context("cannot encode the status")?;
        outln!("{text}")?;
    } else {
        print_table(&status).context("cannot write the status")?;
    }
    Ok(Outcome::problems_if(!status.healthy))
}

/// Asks the cluster (the leader when reachable) and then every member.
pub async fn gather(client: &Client) -> anyhow::Result<ClusterStatus> {
    let mut reply = client
        .status()
        .await
        .context("cannot get the cluster status")?;
    // Only a leader's reply carries the members' replication progress.
    if reply.state != "leader" && !reply.leader_client_addr.is_empty() {
        if let Ok(Ok(leader)) =
            tokio::time::timeout(PROBE_TIMEOUT, client.status_of(&reply.leader_client_addr)).await
        {
            reply = leader;
        }
    }
    let probes = reply.members.iter().map(|member| async move {
        if member.client_addr.is_empty() {
            return Err("it advertises no client address".to_string());
        }
        match tokio::time::timeout(PROBE_TIMEOUT, client.status_of(&member.client_addr)).await {
            Ok(Ok(own)) => Ok(own),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    });
    let answers = futures_util::future::join_all(probes).await;
    Ok(assemble(&reply, answers))
}

fn assemble(reply: &StatusReply, answers: Vec<Result<StatusReply, String>>) -> ClusterStatus {
    let members: Vec<MemberStatus> = reply
        .members
        .iter()
        .zip(answers)
        .map(|(member, own)| {
            let health = member.health.as_ref();
            let mut status = MemberStatus {
                id: member.id,
                role: if member.role == Role::Learner as i32 {
                    "learner"
                } else {
                    "voter"
                },
                peer_addr: member.peer_addr.clone(),
                client_addr: non_empty(&member.client_addr),
                reachable: own.is_ok(),
                state: None,
                term: None,
                commit_index: None,
                last_applied: None,
                may_vote: None,
                vote_blockers: Vec::new(),
                backup: None,
                matched_index: health.and_then(|h| h.matched_index),
                lag_entries: health.map(|h| h.lag_entries),
                last_ack_ms: health.and_then(|h| h.last_ack_ms),
                health: "ok",
                problem: None,
            };
            match own {
                Ok(own) => {
                    status.state = Some(own.state.clone());
                    status.term = Some(own.term);
                    status.commit_index = own.commit_index;
                    status.last_applied = own.last_applied;
                    status.may_vote = Some(own.may_vote);
                    status.vote_blockers = own.vote_blockers.clone();
                    status.backup = own.backup.as_ref().map(BackupView::from_reply);
                }
                Err(problem) => status.problem = Some(problem),
            }
            judge(
                &mut status,
                member.id == reply.leader_id.unwrap_or(u64::MAX),
            );
            status
        })
        .collect();
    let leader_known = reply.leader_id.is_some();
    ClusterStatus {
        answered_by: reply.node_id,
        leader_id: reply.leader_id,
        leader_client_addr: non_empty(&reply.leader_client_addr),
        term: reply.term,
        commit_index: reply.commit_index,
        last_log_index: reply.last_log_index,
        healthy: leader_known && !members.is_empty() && members.iter().all(|m| m.health == "ok"),
        members,
    }
}

/// Sets a member's health from what it and the leader said.
fn judge(member: &mut MemberStatus, is_leader: bool) {
    if !member.reachable {
        member.health = "unreachable";
        return;
    }
    if member.may_vote == Some(false) {
        member.health = "may-not-vote";
        member.problem = Some(format!(
            "it lost its vote or log entries: {}",
            member.vote_blockers.join("; ")
        ));
        return;
    }
    if is_leader {
        return;
    }
    let lag = member.lag_entries.unwrap_or(0);
    let silent_ms = member.last_ack_ms.unwrap_or(0);
    if lag > LAG_ENTRIES_WARN || silent_ms > LAST_ACK_MS_WARN {
        member.health = "lagging";
        member.problem = Some(format!(
            "{lag} entries behind, last acknowledged the leader {silent_ms} ms ago"
        ));
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

fn print_table(status: &ClusterStatus) -> std::io::Result<()> {
    if status.members.is_empty() {
        outln!(
            "node {} is not a member of any cluster yet: create one with `finkfs cluster init`",
            status.answered_by
        )?;
        return Ok(());
    }
    let leader = match (status.leader_id, &status.leader_client_addr) {
        (Some(id), Some(addr)) => format!("node {id} ({addr})"),
        (Some(id), None) => format!("node {id}"),
        (None, _) => "none known (an election may be under way)".to_string(),
    };
    outln!("leader:        {leader}")?;
    outln!("term:          {}", status.term)?;
    outln!("commit index:  {}", opt(status.commit_index))?;
    outln!(
        "health:        {}",
        if status.healthy { "ok" } else { "PROBLEMS" }
    )?;
    outln!()?;
    let mut rows = vec![[
        "ID", "ROLE", "STATE", "CLIENT", "PEER", "APPLIED", "MATCHED", "LAG", "LAST ACK", "HEALTH",
    ]
    .map(String::from)
    .to_vec()];
    for m in &status.members {
        rows.push(vec![
            m.id.to_string(),
            m.role.to_string(),
            m.state.clone().unwrap_or_else(|| "-".into()),
            m.client_addr.clone().unwrap_or_else(|| "-".into()),
            m.peer_addr.clone(),
            opt(m.last_applied),
            opt(m.matched_index),
            opt(m.lag_entries),
            m.last_ack_ms.map_or("-".into(), |ms| format!("{ms} ms")),
            m.health.to_string(),
        ]);
    }
    outln!("{}", table(&rows).trim_end())?;
    for m in &status.members {
        if let Some(problem) = &m.problem {
            outln!("node {}: {problem}", m.id)?;
        }
    }
    for m in &status.members {
        if let Some(backup) = &m.backup {
            outln!("node {} backups: {}", m.id, backup.describe())?;
        }
    }
    Ok(())
}

fn opt(value: Option<u64>) -> String {
    value.map_or("-".into(), |v| v.to_string())
}

/// Left-aligned columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use finkfs_node::api::proto::{Health, Member};

    fn reply(members: Vec<Member>, leader: Option<u64>) -> StatusReply {
        StatusReply {
            node_id: 1,
            state: "leader".into(),
            leader_id: leader,
            term: 2,
            members,
            may_vote: true,
            ..StatusReply::default()
        }
    }

    fn member(id: u64, lag: u64) -> Member {
        Member {
            id,
            peer_addr: format!("h:{id}1"),
            client_addr: format!("h:{id}2"),
            role: Role::Voter as i32,
            health: Some(Health {
                matched_index: Some(10),
                lag_entries: lag,
                last_ack_ms: Some(5),
            }),
        }
    }

    fn own(id: u64, may_vote: bool) -> Result<StatusReply, String> {
        Ok(StatusReply {
            node_id: id,
            state: "follower".into(),
            may_vote,
            ..StatusReply::default()
        })
    }

    #[test]
    fn every_reachable_caught_up_member_makes_a_healthy_cluster() {
        let status = assemble(
            &reply(vec![member(1, 0), member(2, 3)], Some(1)),
            vec![own(1, true), own(2, true)],
        );
        assert!(status.healthy);
        assert!(status.members.iter().all(|m| m.health == "ok"));
    }

    #[test]
    fn unreachable_lagging_or_blocked_members_are_problems() {
        let status = assemble(
            &reply(
                vec![
                    member(1, 0),
                    member(2, LAG_ENTRIES_WARN + 1),
                    member(3, 0),
                    member(4, 0),
                ],
                Some(1),
            ),
            vec![
                own(1, true),
                own(2, true),
                Err("connection refused".into()),
                own(4, false),
            ],
        );
        let health: Vec<&str> = status.members.iter().map(|m| m.health).collect();
        assert_eq!(health, ["ok", "lagging", "unreachable", "may-not-vote"]);
        assert!(!status.healthy);
    }

    #[test]
    fn no_leader_is_not_healthy() {
        let status = assemble(&reply(vec![member(1, 0)], None), vec![own(1, true)]);
        assert!(!status.healthy);
    }

    #[test]
    fn table_columns_line_up() {
        let rows = vec![
            vec!["A".to_string(), "BB".to_string()],
            vec!["ccc".to_string(), "d".to_string()],
        ];
        assert_eq!(table(&rows), "A    BB\nccc  d\n");
    }
}
