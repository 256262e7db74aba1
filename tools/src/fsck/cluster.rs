//! `finkfs fsck --cluster ADDR`: asks every member of a running cluster to
//! verify its own copy of every object (the Verify call, which reads each
//! block and checks its BLAKE3 without repairing anything) and compares the
//! answers, the way `hdfs fsck` reports blocks across datanodes:
//!
//! * **corrupt**: a member's copy is damaged or lacks a block, while another
//!   member holds an intact copy (the scrubber, read repair or `fsck
//!   --repair --peer` can mend it);
//! * **missing**: no member holds an intact copy (the object is halted:
//!   restore it from a backup);
//! * **diverged**: members that applied the same log index hold different
//!   versions — state machines that disagree;
//! * **under-replicated**: some members do not hold the object, or hold an
//!   older version, while they are behind in the log (they are catching
//!   up), or a member could not be asked.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context};
use finkfs_node::api::proto::{CopyState, VerifyReply};
use finkfs_node::client::Client;
use finkfs_node::hex;
use serde::Serialize;

use crate::exit::Outcome;

/// Version of the `--json` report.
pub const CLUSTER_REPORT_VERSION: u32 = 1;
/// Objects asked for per Verify call.
const PAGE_OBJECTS: u32 = 200;

/// One member's copy of one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub node: u64,
    pub size: u64,
    /// BLAKE3 of the object, hex.
    pub blake3: String,
    /// `intact`, `damaged` or `missing_block`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What was learned from one member.
#[derive(Debug, Clone, Serialize)]
pub struct MemberReport {
    pub node: u64,
    pub addr: String,
    pub last_applied: Option<u64>,
    pub objects: u64,
    pub bytes_verified: u64,
    /// Why this member could not be verified, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How one object is held across the cluster, when not intact everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    Corrupt,
    Missing,
    Diverged,
    UnderReplicated,
}

/// One object that is not intact on every member.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectFinding {
    pub path: String,
    pub finding: Finding,
    /// Members that hold no copy of it.
    pub absent_on: Vec<u64>,
    pub copies: Vec<Copy>,
}

/// The whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterReport {
    pub version: u32,
    pub members: Vec<MemberReport>,
    pub objects: u64,
    pub healthy: u64,
    pub under_replicated: u64,
    pub corrupt: u64,
    pub missing: u64,
    pub diverged: u64,
    pub findings: Vec<ObjectFinding>,
    /// `HEALTHY` or `CORRUPT`.
    pub status: &'static str,
}

/// Runs the check against the cluster at `addrs`.
pub fn run(addrs: &[String], json: bool) -> anyhow::Result<Outcome> {
    let cluster = crate::client::Cluster::checked(addrs)?;
    let report = crate::client::block_on(async move {
        let client = cluster.connect().await?;
        check(&client).await
    })?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        text(&report)?;
    }
    if report.status == "CORRUPT" {
        return Ok(Outcome::Problems);
    }
    let unverified: Vec<u64> = report
        .members
        .iter()
        .filter(|m| m.error.is_some())
        .map(|m| m.node)
        .collect();
    if !unverified.is_empty() {
        bail!("nodes {unverified:?} could not be verified: the check is incomplete");
    }
    Ok(Outcome::Clean)
}

/// Asks every member and compares.
async fn check(client: &Client) -> anyhow::Result<ClusterReport> {
    let status = client.status().await.context("asking for the members")?;
    if status.members.is_empty() {
        bail!("the node is not a member of an initialized cluster");
    }
    let mut members = Vec::new();
    let mut copies: Vec<(MemberReport, Vec<(String, Copy)>)> = Vec::new();
    for member in &status.members {
        if member.client_addr.is_empty() {
            members.push(unreachable(
                member.id,
                "",
                "it advertises no client address",
            ));
            continue;
        }
        match member_copies(client, member.id, &member.client_addr).await {
            Ok(found) => copies.push(found),
            Err(error) => members.push(unreachable(
                member.id,
                &member.client_addr,
                &format!("{error:#}"),
            )),
        }
    }
    let report = compare(copies, members);
    Ok(report)
}

fn unreachable(node: u64, addr: &str, why: &str) -> MemberReport {
    MemberReport {
        node,
        addr: addr.to_string(),
        last_applied: None,
        objects: 0,
        bytes_verified: 0,
        error: Some(why.to_string()),
    }
}

/// Every copy the member at `addr` holds, page by page.
async fn member_copies(
    client: &Client,
    node: u64,
    addr: &str,
) -> anyhow::Result<(MemberReport, Vec<(String, Copy)>)> {
    let mut report = MemberReport {
        node,
        addr: addr.to_string(),
        last_applied: None,
        objects: 0,
        bytes_verified: 0,
        error: None,
    };
    let mut found = Vec::new();
    let mut start_after = None;
    loop {
        let page: VerifyReply = client.verify_page(addr, start_after, PAGE_OBJECTS).await?;
        report.last_applied = report.last_applied.max(page.last_applied);
        report.bytes_verified += page.bytes_verified;
        for object in page.objects {
            report.objects += 1;
            let state = match CopyState::try_from(object.state) {
                Ok(CopyState::Intact) => "intact",
                Ok(CopyState::Damaged) => "damaged",
                Ok(CopyState::MissingBlock) => "missing_block",
                _ => bail!(
                    "node {node} answered an unknown copy state {}",
                    object.state
                ),
            };
            let copy = Copy {
                node,
                size: object.size,
                blake3: hex(&object.blake3),
                state,
                detail: object.detail,
            };
            found.push((object.path, copy));
        }
        if page.next_start_after.is_none() {
            break;
        }
        start_after = page.next_start_after;
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprint!("\rnode {node}: {} objects verified", report.objects);
        }
    }
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!("\rnode {node}: {} objects verified", report.objects);
    }
    Ok((report, found))
}

/// Compares the members' copies; `unreachable` are members that could not
/// be asked (every object counts as under-replicated on them).
pub fn compare(
    answered: Vec<(MemberReport, Vec<(String, Copy)>)>,
    unreachable: Vec<MemberReport>,
) -> ClusterReport {
    let mut by_path: BTreeMap<String, Vec<Copy>> = BTreeMap::new();
    let mut members = Vec::new();
    let mut applied = BTreeMap::new();
    for (member, copies) in answered {
        applied.insert(member.node, member.last_applied);
        for (path, copy) in copies {
            by_path.entry(path).or_default().push(copy);
        }
        members.push(member);
    }
    let answered_ids: BTreeSet<u64> = applied.keys().copied().collect();
    let all_same_applied = applied.values().collect::<BTreeSet<_>>().len() <= 1;
    let nobody_missing = unreachable.is_empty();
    members.extend(unreachable);

    let mut report = ClusterReport {
        version: CLUSTER_REPORT_VERSION,
        members,
        objects: by_path.len() as u64,
        healthy: 0,
        under_replicated: 0,
        corrupt: 0,
        missing: 0,
        diverged: 0,
        findings: Vec::new(),
        status: "HEALTHY",
    };
    for (path, copies) in by_path {
        let holders: BTreeSet<u64> = copies.iter().map(|c| c.node).collect();
        let absent_on: Vec<u64> = answered_ids.difference(&holders).copied().collect();
        let spread = Spread {
            absent_on_some: !absent_on.is_empty(),
            member_unverified: !nobody_missing,
            all_same_applied,
        };
        let finding = classify(&copies, spread);
        let Some(finding) = finding else {
            report.healthy += 1;
            continue;
        };
        match finding {
            Finding::Corrupt => report.corrupt += 1,
            Finding::Missing => report.missing += 1,
            Finding::Diverged => report.diverged += 1,
            Finding::UnderReplicated => report.under_replicated += 1,
        }
        report.findings.push(ObjectFinding {
            path,
            finding,
            absent_on,
            copies,
        });
    }
    if report.corrupt + report.missing + report.diverged > 0 {
        report.status = "CORRUPT";
    }
    report
}

/// Where an object is held, beyond its copies.
#[derive(Debug, Clone, Copy)]
struct Spread {
    /// A member that answered holds no copy.
    absent_on_some: bool,
    /// A member could not be asked.
    member_unverified: bool,
    /// Every member that answered had applied the same log index.
    all_same_applied: bool,
}

/// The finding for one object's copies; `None` when it is intact on every
/// member.
fn classify(copies: &[Copy], spread: Spread) -> Option<Finding> {
    let lag_or_divergence = if spread.all_same_applied {
        // Members at the same log index must hold the same state.
        Finding::Diverged
    } else {
        Finding::UnderReplicated
    };
    let intact: Vec<&Copy> = copies.iter().filter(|c| c.state == "intact").collect();
    if intact.is_empty() {
        return Some(Finding::Missing);
    }
    if intact.len() < copies.len() {
        return Some(Finding::Corrupt);
    }
    let versions: BTreeSet<&str> = copies.iter().map(|c| c.blake3.as_str()).collect();
    if versions.len() > 1 || spread.absent_on_some {
        return Some(lag_or_divergence);
    }
    if spread.member_unverified {
        return Some(Finding::UnderReplicated);
    }
    None
}

fn text(report: &ClusterReport) -> anyhow::Result<()> {
    outln!("finkfs fsck --cluster")?;
    for member in &report.members {
        match &member.error {
            None => outln!(
                " node {} ({}): applied {}, {} objects, {:.1} MB verified",
                member.node,
                member.addr,
                member
                    .last_applied
                    .map_or_else(|| "nothing".to_string(), |i| i.to_string()),
                member.objects,
                member.bytes_verified as f64 / 1e6
            )?,
            Some(error) => outln!(
                " node {} ({}): NOT VERIFIED: {error}",
                member.node,
                member.addr
            )?,
        }
    }
    outln!(" Objects:          {}", report.objects)?;
    outln!(" Intact on all:    {}", report.healthy)?;
    outln!(" Under-replicated: {}", report.under_replicated)?;
    outln!(" Corrupt:          {}", report.corrupt)?;
    outln!(" Missing:          {}", report.missing)?;
    outln!(" Diverged:         {}", report.diverged)?;
    outln!()?;
    for finding in &report.findings {
        let label = match finding.finding {
            Finding::Corrupt => "CORRUPT",
            Finding::Missing => "MISSING",
            Finding::Diverged => "DIVERGED",
            Finding::UnderReplicated => "under-replicated",
        };
        outln!("{label} {}", finding.path)?;
        for copy in &finding.copies {
            outln!(
                "  node {}: {} {} bytes blake3 {} {}",
                copy.node,
                copy.state,
                copy.size,
                copy.blake3,
                copy.detail
            )?;
        }
        if !finding.absent_on.is_empty() {
            outln!("  absent on nodes {:?}", finding.absent_on)?;
        }
    }
    outln!()?;
    outln!("The cluster is {}", report.status)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(node: u64, applied: u64) -> MemberReport {
        MemberReport {
            node,
            addr: format!("n{node}:7002"),
            last_applied: Some(applied),
            objects: 0,
            bytes_verified: 0,
            error: None,
        }
    }

    fn copy(node: u64, blake3: &str, state: &'static str) -> (String, Copy) {
        (
            "ztf/a".to_string(),
            Copy {
                node,
                size: 10,
                blake3: blake3.to_string(),
                state,
                detail: String::new(),
            },
        )
    }

    fn finding(answered: Vec<(MemberReport, Vec<(String, Copy)>)>) -> Option<Finding> {
        let report = compare(answered, Vec::new());
        report.findings.first().map(|f| f.finding.clone())
    }

    #[test]
    fn intact_everywhere_is_healthy() {
        let report = compare(
            (1..=3)
                .map(|n| (member(n, 9), vec![copy(n, "aa", "intact")]))
                .collect(),
            Vec::new(),
        );
        assert_eq!((report.healthy, report.status), (1, "HEALTHY"));
    }

    #[test]
    fn one_damaged_copy_with_an_intact_one_elsewhere_is_corrupt() {
        let got = finding(vec![
            (member(1, 9), vec![copy(1, "aa", "intact")]),
            (member(2, 9), vec![copy(2, "aa", "damaged")]),
        ]);
        assert_eq!(got, Some(Finding::Corrupt));
    }

    #[test]
    fn no_intact_copy_anywhere_is_missing() {
        let got = finding(vec![
            (member(1, 9), vec![copy(1, "aa", "damaged")]),
            (member(2, 9), vec![copy(2, "aa", "missing_block")]),
        ]);
        assert_eq!(got, Some(Finding::Missing));
    }

    #[test]
    fn absent_on_a_lagging_member_is_under_replicated_but_at_one_index_diverged() {
        let lagging = finding(vec![
            (member(1, 9), vec![copy(1, "aa", "intact")]),
            (member(2, 7), vec![]),
        ]);
        assert_eq!(lagging, Some(Finding::UnderReplicated));
        let same = finding(vec![
            (member(1, 9), vec![copy(1, "aa", "intact")]),
            (member(2, 9), vec![]),
        ]);
        assert_eq!(same, Some(Finding::Diverged));
    }

    #[test]
    fn unreachable_member_makes_objects_under_replicated_not_corrupt() {
        let report = compare(
            vec![(member(1, 9), vec![copy(1, "aa", "intact")])],
            vec![unreachable(2, "n2:7002", "connection refused")],
        );
        assert_eq!(report.under_replicated, 1);
        assert_eq!(report.status, "HEALTHY");
    }
}
