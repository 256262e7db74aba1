//! The client commands: put, get, ls, stat, rm, status and cluster. Each
//! checks its arguments and builds its plan first, then connects through
//! the client library (which follows the leader and retries within its
//! ceilings) and talks to the cluster.

pub mod get;
pub mod ls;
pub mod membership;
pub mod put;
pub mod put_dir;
pub mod rm;
pub mod stat;
pub mod status;

use std::future::Future;

use anyhow::Context;
use clap::Subcommand;
use finkfs_node::client::{Client, ClientError};

use crate::exit::Outcome;

/// The commands that talk to a cluster.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Store a local file (or, with -r, a whole directory) in the cluster.
    Put(put::PutArgs),
    /// Read an object (or a byte range of it) to a local file or stdout.
    Get(get::GetArgs),
    /// List the objects under a prefix.
    Ls(ls::LsArgs),
    /// Show what is stored at a path: size, BLAKE3, blocks.
    Stat(stat::StatArgs),
    /// Remove an object.
    Rm(rm::RmArgs),
    /// Show the cluster: members, leader, term, commit index, each node's health.
    #[command(long_about = status::LONG_HELP)]
    Status(status::StatusArgs),
    /// Create a cluster, add or remove nodes.
    #[command(subcommand)]
    Cluster(membership::ClusterCommand),
}

/// Runs a client command against the cluster at `cluster`.
pub fn run(cluster: &[String], command: ClientCommand) -> anyhow::Result<Outcome> {
    let cluster = Cluster::checked(cluster);
    match command {
        ClientCommand::Put(args) => block_on(put::run(cluster?, args)),
        ClientCommand::Get(args) => block_on(get::run(cluster?, args)),
        ClientCommand::Ls(args) => block_on(ls::run(cluster?, args)),
        ClientCommand::Stat(args) => block_on(stat::run(cluster?, args)),
        ClientCommand::Rm(args) => block_on(rm::run(cluster?, args)),
        ClientCommand::Status(args) => block_on(status::run(cluster?, args)),
        // `cluster init` names every member: it needs no --cluster.
        ClientCommand::Cluster(command) => block_on(membership::run(cluster, command)),
    }
}

/// Runs `future` on a runtime made for this one command.
pub fn block_on<T>(future: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

/// The node addresses given with `--cluster` or `FINKFS_CLUSTER`, checked.
#[derive(Debug, Clone)]
pub struct Cluster {
    addrs: Vec<String>,
}

impl Cluster {
    /// Refuses an empty list and malformed addresses before any I/O.
    pub fn checked(addrs: &[String]) -> anyhow::Result<Cluster> {
        let addrs: Vec<String> = addrs
            .iter()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        anyhow::ensure!(
            !addrs.is_empty(),
            "no cluster given: pass --cluster HOST:PORT[,HOST:PORT…] (the client address of any node) or set FINKFS_CLUSTER"
        );
        for addr in &addrs {
            check_host_port(addr)
                .with_context(|| format!("--cluster address {addr:?} is not HOST:PORT"))?;
        }
        Ok(Cluster { addrs })
    }

    /// Connects: asks the nodes in turn until one answers.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        Client::connect(self.addrs.clone())
            .await
            .with_context(|| format!("cannot reach the cluster at {}", self.addrs.join(",")))
    }
}

/// Checks `HOST:PORT` with a numeric port.
pub fn check_host_port(addr: &str) -> anyhow::Result<()> {
    let (host, port) = addr
        .rsplit_once(':')
        .context("expected HOST:PORT, such as 10.0.0.1:7002")?;
    anyhow::ensure!(!host.is_empty(), "the host is empty");
    port.parse::<u16>()
        .map_err(|_| anyhow::anyhow!("port {port:?} is not a number from 0 to 65535"))?;
    Ok(())
}

/// Whether `error` is the cluster saying there is no such object.
pub fn is_not_found(error: &ClientError) -> bool {
    error.code() == Some(tonic::Code::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_cluster_is_refused_with_both_ways_to_give_it() {
        let error = Cluster::checked(&[]).unwrap_err().to_string();
        assert!(error.contains("--cluster"), "{error}");
        assert!(error.contains("FINKFS_CLUSTER"), "{error}");
        assert!(Cluster::checked(&[" ".to_string()]).is_err());
    }

    #[test]
    fn malformed_cluster_addresses_are_refused() {
        for bad in ["localhost", ":7002", "host:port", "h:99999"] {
            assert!(Cluster::checked(&[bad.to_string()]).is_err(), "{bad}");
        }
        assert!(Cluster::checked(&["10.0.0.1:7002".to_string()]).is_ok());
    }
}
