//! The demo told step by step: each step runs, then says in a line or two
//! what it did and what it measured, and keeps its numbers for the
//! summary. A step that cannot go on stops the story; the summary then
//! says how far it got.

use std::io;
use std::time::Instant;

use finkfs_node::client::Client;

use super::nodes::LocalCluster;
use super::steps::{self, CatchUp, Failover, Loaded, ReadBack};
use super::{alerts, summary, Plan, DEMO_NODES};
use crate::exit::Outcome;
use crate::format;
use crate::progress::Totals;

/// Steps narrated, `[n/STEPS]`.
const STEPS: u32 = 7;

/// What the run measured, for the summary.
#[derive(Default)]
pub(super) struct Record {
    pub pids: Vec<u32>,
    pub loaded: Loaded,
    pub before_crash: Option<Totals>,
    pub during_outage: Option<Totals>,
    pub failover: Option<Failover>,
    pub listed: Option<u64>,
    pub read_back: Option<ReadBack>,
    pub catch_up: Option<CatchUp>,
    pub halted: Option<String>,
}

/// Runs the whole demo: start, story, summary, stop.
pub(super) async fn tell(plan: Plan) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    outln!(
        "finkfs demo: {DEMO_NODES} nodes on this machine, {}, one leader crash.\n",
        plan.alerts.describe()
    )?;
    step(
        1,
        &format!("Starting {DEMO_NODES} finkfs-node processes on 127.0.0.1"),
    )?;
    let mut cluster =
        LocalCluster::start(&plan.node_bin, DEMO_NODES, plan.timings, plan.keep).await?;
    let mut record = Record::default();
    for node in cluster.nodes() {
        record.pids.extend(node.pid());
        say(&format!(
            "node {}: pid {}, client {}, peer {}, data {}",
            node.id,
            node.pid().map_or("-".into(), |p| p.to_string()),
            node.client,
            node.peer,
            node.data_dir.display()
        ))?;
    }
    let t = plan.timings;
    say(&format!(
        "heartbeat every {} ms; a follower that hears no leader for {}-{} ms starts an election",
        t.heartbeat_ms, t.election_min_ms, t.election_max_ms
    ))?;
    if let Err(error) = story(&plan, &mut cluster, &mut record).await {
        let halted = format!("{error:#}");
        outln!("\n  STOPPED: {halted}")?;
        record.halted = Some(halted);
    }
    let passed = summary::print(&plan, &cluster, &record, started.elapsed())?;
    summary::stop(&mut cluster, plan.keep)?;
    Ok(Outcome::problems_if(!passed))
}

/// Steps 2 to 7.
async fn story(plan: &Plan, cluster: &mut LocalCluster, record: &mut Record) -> anyhow::Result<()> {
    step(2, "Creating the cluster")?;
    let (client, leader, elected) = steps::init(cluster).await?;
    say(&format!(
        "node {leader} was elected leader in {}",
        format::seconds(elected)
    ))?;
    let (before, outage) = plan.phases();
    step(
        3,
        &format!(
            "Writing {} alerts ({}) under {}",
            before.end - before.start,
            format::bytes(plan.alerts.bytes(before.clone())),
            alerts::night_prefix()
        ),
    )?;
    let totals = write(&client, plan, before, record).await?;
    record.before_crash = Some(totals);
    cluster.check_running()?;

    step(4, "Killing the leader with SIGKILL")?;
    let failover = crash(&client, cluster).await?;
    record.failover = Some(failover.clone());

    step(
        5,
        &format!(
            "Writing {} more alerts while node {} is down (2 of 3 nodes are a majority)",
            outage.end - outage.start,
            failover.killed
        ),
    )?;
    record.during_outage = Some(write(&client, plan, outage, record).await?);

    step(
        6,
        &format!(
            "Reading back all {} alerts and comparing each with what was written (BLAKE3)",
            record.loaded.stored.len()
        ),
    )?;
    read_back(&client, plan, record).await?;

    step(7, &format!("Restarting node {}", failover.killed))?;
    record.catch_up = Some(catch_up(&client, cluster, &failover).await?);
    Ok(())
}

/// Writes the alerts of `range` and says how fast it went.
async fn write(
    client: &Client,
    plan: &Plan,
    range: std::ops::Range<u64>,
    record: &mut Record,
) -> io::Result<Totals> {
    let first_phase = range.start == 0;
    let failed_before = record.loaded.failed;
    let shown_before = record.loaded.failures.len();
    let totals = steps::load(
        client,
        &plan.alerts,
        range,
        plan.in_flight,
        &mut record.loaded,
    )
    .await;
    let note = if first_phase {
        "each acknowledged once fsynced on 2 of 3 nodes"
    } else {
        "with 2 of 3 nodes up"
    };
    say(&format!(
        "{} alerts, {} in {}: {:.1} MB/s, {:.0} alerts/s ({note})",
        totals.files_ok,
        format::bytes(totals.bytes_ok),
        format::seconds(totals.elapsed),
        totals.mb_per_s(),
        totals.files_per_s()
    ))?;
    for failure in &record.loaded.failures[shown_before..] {
        say(&format!("failed: {failure}"))?;
    }
    let failed = record.loaded.failed - failed_before;
    if failed > 0 {
        say(&format!("{failed} alerts were not stored"))?;
    }
    Ok(totals)
}

/// Kills the leader and says who took over, and how fast.
async fn crash(client: &Client, cluster: &mut LocalCluster) -> anyhow::Result<Failover> {
    let failover = steps::crash_leader(client, cluster).await?;
    say(&format!(
        "killed node {} (pid {}), the leader of term {}",
        failover.killed, failover.killed_pid, failover.old_term
    ))?;
    say(&format!(
        "node {} was elected leader of term {} {} after the kill",
        failover.leader,
        failover.new_term,
        format::seconds(failover.elapsed)
    ))?;
    Ok(failover)
}

/// Lists the night, reads every alert back, and says what it found.
async fn read_back(client: &Client, plan: &Plan, record: &mut Record) -> anyhow::Result<()> {
    let prefix = alerts::night_prefix();
    let listed = steps::count_listed(client, &prefix).await?;
    record.listed = Some(listed);
    say(&format!(
        "the cluster lists {listed} objects under {prefix}"
    ))?;
    let read: ReadBack = steps::read_back(client, &record.loaded.stored, plan.in_flight).await;
    let speed = read
        .totals
        .map(|t| {
            format!(
                " ({} at {:.1} MB/s)",
                format::seconds(t.elapsed),
                t.mb_per_s()
            )
        })
        .unwrap_or_default();
    say(&format!(
        "{}/{} byte-identical, {} differing, {} missing, {} unreadable{speed}",
        read.identical,
        record.loaded.stored.len(),
        read.differing,
        read.missing,
        read.errors,
    ))?;
    for problem in &read.problems {
        say(&format!("problem: {problem}"))?;
    }
    record.read_back = Some(read);
    Ok(())
}

/// Restarts the killed node and says how fast it caught up.
async fn catch_up(
    client: &Client,
    cluster: &mut LocalCluster,
    failover: &Failover,
) -> anyhow::Result<CatchUp> {
    let id = failover.killed;
    let caught_up = steps::restart_and_catch_up(client, cluster, id).await?;
    let pid = cluster
        .node(id)?
        .pid()
        .map_or("-".into(), |p| p.to_string());
    let before = failover
        .killed_applied
        .map(|a| format!(" (it had applied {a} when it was killed)"))
        .unwrap_or_default();
    say(&format!(
        "node {id} (pid {pid}) applied through log index {} {} after its restart{before}",
        caught_up.target,
        format::seconds(caught_up.elapsed),
    ))?;
    Ok(caught_up)
}

fn step(number: u32, text: &str) -> io::Result<()> {
    outln!("[{number}/{STEPS}] {text}")
}

fn say(text: &str) -> io::Result<()> {
    outln!("      {text}")
}
