//! `finkfs cluster init|add|remove`: creating a cluster and changing its
//! members.
//!
//! A member is named by its id and its two addresses, written as the
//! daemon's `--initial-member` takes them: `ID=PEER_ADDR,CLIENT_ADDR` (the
//! peer address carries Raft traffic, the client address serves clients).
//! Several members are separated by commas too (`1=a:7001,a:7002,2=b:7001,
//! b:7002`: an `=` starts the next member) or given as separate arguments.

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;
use finkfs_node::api::proto::{MemberSpec, MembershipReply, Role};
use finkfs_node::api::MemberAddr;
use finkfs_node::client::Client;

use super::status::table;
use super::Cluster;
use crate::exit::Outcome;

/// Longest wait after `init` for the new cluster to elect its leader.
pub const INIT_LEADER_WAIT: Duration = Duration::from_secs(20);
const POLL_INTERVAL: Duration = Duration::from_millis(100);

const INIT_HELP: &str = "\
Creates a cluster of fresh nodes (started with `finkfs-node`, never initialized).
Each member is ID=PEER_ADDR,CLIENT_ADDR: its id (as given to its --id), the
address its peer service listens on, and the address its client service
listens on. The request goes to the member with the smallest id; --cluster is
not needed.

Example (three nodes):
  finkfs cluster init 1=10.0.0.1:7001,10.0.0.1:7002 2=10.0.0.2:7001,10.0.0.2:7002 3=10.0.0.3:7001,10.0.0.3:7002";

const ADD_HELP: &str = "\
Adds a fresh node to the cluster: first as a learner, which receives the whole
log without voting; once it has caught up it is promoted to voter (unless
--learner-only).

Example:
  finkfs --cluster 10.0.0.1:7002 cluster add 4 10.0.0.4:7001,10.0.0.4:7002";

const REMOVE_HELP: &str = "\
Removes a member (voter or learner) from the cluster. Its data directory is
left alone; stop the node afterwards.

Example:
  finkfs --cluster 10.0.0.1:7002 cluster remove 3";

/// `finkfs cluster …`.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Create a cluster of fresh nodes.
    #[command(long_about = INIT_HELP)]
    Init {
        /// The members: ID=PEER_ADDR,CLIENT_ADDR, comma or space separated.
        #[arg(required = true, num_args = 1.., value_name = "ID=PEER,CLIENT")]
        members: Vec<String>,
    },
    /// Add a node: as a learner, then (once caught up) as a voter.
    #[command(long_about = ADD_HELP)]
    Add {
        /// The new node's id.
        id: u64,
        /// Its addresses: PEER_ADDR,CLIENT_ADDR.
        #[arg(value_name = "PEER,CLIENT")]
        addr: String,
        /// Leave it a learner: it receives the log but does not vote.
        #[arg(long)]
        learner_only: bool,
    },
    /// Remove a member.
    #[command(long_about = REMOVE_HELP)]
    Remove {
        /// The member's id.
        id: u64,
    },
}

/// Runs `finkfs cluster …`; `cluster` is an error when none was given
/// (only `init` does without).
pub async fn run(
    cluster: anyhow::Result<Cluster>,
    command: ClusterCommand,
) -> anyhow::Result<Outcome> {
    match command {
        ClusterCommand::Init { members } => init(&parse_members(&members.join(","))?).await,
        ClusterCommand::Add {
            id,
            addr,
            learner_only,
        } => {
            let spec = parse_member(id, &addr)?;
            add(&cluster?.connect().await?, spec, learner_only).await
        }
        ClusterCommand::Remove { id } => {
            let client = cluster?.connect().await?;
            let reply = client
                .remove(vec![id])
                .await
                .with_context(|| format!("cannot remove node {id}"))?;
            outln!("node {id} removed (log index {})", reply.log_index)?;
            print_members(&reply)?;
            Ok(Outcome::Clean)
        }
    }
}

async fn init(specs: &[MemberSpec]) -> anyhow::Result<Outcome> {
    let first = specs
        .iter()
        .min_by_key(|s| s.id)
        .context("no member given")?;
    let client = Client::connect(vec![first.client_addr.clone()])
        .await
        .with_context(|| format!("cannot reach node {} at {}", first.id, first.client_addr))?;
    let reply = client
        .init_at(&first.client_addr, specs.to_vec())
        .await
        .context("the cluster was not created")?;
    outln!(
        "cluster created with {} voters; waiting for a leader",
        specs.len()
    )?;
    print_members(&reply)?;
    let (leader, elapsed) = wait_for_leader(&client, INIT_LEADER_WAIT).await?;
    outln!(
        "node {leader} leads (elected in {:.2} s)",
        elapsed.as_secs_f64()
    )?;
    Ok(Outcome::Clean)
}

/// Polls until some node names a leader; its id and the time it took.
pub async fn wait_for_leader(client: &Client, within: Duration) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    loop {
        if let Ok(status) = client.status().await {
            if let Some(leader) = status.leader_id {
                return Ok((leader, started.elapsed()));
            }
        }
        anyhow::ensure!(
            started.elapsed() < within,
            "no leader was elected within {within:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

async fn add(client: &Client, spec: MemberSpec, learner_only: bool) -> anyhow::Result<Outcome> {
    let id = spec.id;
    outln!("adding node {id} as a learner; it receives the log before it may vote")?;
    let reply = client
        .add_learner(spec, true)
        .await
        .with_context(|| format!("cannot add node {id}"))?;
    if learner_only {
        outln!("node {id} is a learner (log index {})", reply.log_index)?;
        print_members(&reply)?;
        return Ok(Outcome::Clean);
    }
    let reply = client
        .promote(vec![id])
        .await
        .with_context(|| format!("node {id} was added as a learner but not promoted to voter"))?;
    outln!("node {id} is a voter (log index {})", reply.log_index)?;
    print_members(&reply)?;
    Ok(Outcome::Clean)
}

fn print_members(reply: &MembershipReply) -> std::io::Result<()> {
    let mut rows = vec![vec![
        "ID".to_string(),
        "ROLE".into(),
        "PEER".into(),
        "CLIENT".into(),
    ]];
    for member in &reply.members {
        let role = if member.role == Role::Learner as i32 {
            "learner"
        } else {
            "voter"
        };
        rows.push(vec![
            member.id.to_string(),
            role.to_string(),
            member.peer_addr.clone(),
            member.client_addr.clone(),
        ]);
    }
    outln!("{}", table(&rows).trim_end())
}

/// Parses `ID=PEER,CLIENT[,ID=PEER,CLIENT…]`: an item with `=` starts a
/// member, the item after it is that member's client address.
pub fn parse_members(text: &str) -> anyhow::Result<Vec<MemberSpec>> {
    let items: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect();
    let mut specs: Vec<MemberSpec> = Vec::new();
    let mut at = 0;
    while at < items.len() {
        let (id, peer) = items[at].split_once('=').with_context(|| {
            format!(
                "{:?} should start a member as ID=PEER_ADDR,CLIENT_ADDR",
                items[at]
            )
        })?;
        let id: u64 = id
            .trim()
            .parse()
            .with_context(|| format!("member {:?}: the id is not a number", items[at]))?;
        let client = items
            .get(at + 1)
            .filter(|next| !next.contains('='))
            .with_context(|| {
                format!("member {id}: give both addresses, as {id}=PEER_ADDR,CLIENT_ADDR")
            })?;
        let spec = member_spec(id, peer, client)?;
        anyhow::ensure!(
            specs.iter().all(|s| s.id != id),
            "member {id} is named twice"
        );
        specs.push(spec);
        at += 2;
    }
    anyhow::ensure!(!specs.is_empty(), "no member given");
    Ok(specs)
}

/// Parses `PEER,CLIENT` for member `id`.
pub fn parse_member(id: u64, addrs: &str) -> anyhow::Result<MemberSpec> {
    let (peer, client) = addrs
        .split_once(',')
        .with_context(|| format!("node {id}: give both addresses, as PEER_ADDR,CLIENT_ADDR"))?;
    member_spec(id, peer, client)
}

fn member_spec(id: u64, peer: &str, client: &str) -> anyhow::Result<MemberSpec> {
    let addr = MemberAddr::new(peer.trim(), client.trim())
        .with_context(|| format!("member {id}: bad addresses"))?;
    Ok(MemberSpec {
        id,
        peer_addr: addr.peer,
        client_addr: addr.client.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_from_one_comma_separated_list() {
        let specs = parse_members("1=a:7001,a:7002,2=b:7001,b:7002").unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].id, 2);
        assert_eq!(specs[1].peer_addr, "b:7001");
        assert_eq!(specs[1].client_addr, "b:7002");
    }

    #[test]
    fn members_without_a_client_address_or_id_are_refused() {
        for bad in [
            "1=a:7001",
            "1=a:7001,2=b:7001,b:7002",
            "x=a:7001,a:7002",
            "a:7001,a:7002",
            "1=a:7001,a:7002,1=b:7001,b:7002",
            "1=a,a:7002",
            "",
        ] {
            assert!(parse_members(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn added_member_needs_both_addresses() {
        assert!(parse_member(4, "d:7001").is_err());
        let spec = parse_member(4, "d:7001,d:7002").unwrap();
        assert_eq!(
            (spec.peer_addr.as_str(), spec.client_addr.as_str()),
            ("d:7001", "d:7002")
        );
    }
}
