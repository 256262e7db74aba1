//! [`SimNet`]: hosts, links, power, and the seeded draw of every message's
//! fate.
//!
//! One `SimNet` per simulated world, shared by every node's
//! [`SimTransport`](crate::SimTransport) behind one mutex (the futures must be
//! `Send`; in the simulator only one thread ever takes it). Fates are drawn
//! in the order messages are sent, from one seeded stream, so a run replays
//! when its tasks run in the same order — which a single-threaded runtime
//! with a paused clock and a fixed seed provides.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use finkfs_raft::network::{PeerEndpoint, PeerReply};
use finkfs_raft::rt::NodeTag;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::time::Instant;

use crate::faults::{Fate, LinkFaults};
use crate::trace::NetEvent;

/// A reply that reached its caller, shown to the checker (which must see,
/// for instance, every vote a node granted).
#[derive(Debug)]
pub struct Tapped<'a> {
    /// Who asked.
    pub from: &'a str,
    /// Who answered.
    pub to: &'a str,
    /// The reply as it arrived.
    pub reply: &'a PeerReply,
}

/// Sees every delivered reply, read-only.
pub type Tap = Arc<dyn Fn(&Tapped<'_>) + Send + Sync>;

/// How many messages met each fate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetCounts {
    /// Messages handed to the network (requests, replies, snapshot chunks).
    pub sent: u64,
    /// Messages that reached a powered host.
    pub delivered: u64,
    /// Messages lost on the link.
    pub lost: u64,
    /// Messages cut off by a partition.
    pub partitioned: u64,
    /// Messages that found their host powered off.
    pub host_off: u64,
}

/// One host of the network: a node's peer service and whether it has power.
struct Host {
    endpoint: Arc<dyn PeerEndpoint>,
    /// The node's task group: requests are handled inside it, so a power
    /// cut of the node also ends the handlers it was running.
    tag: Option<NodeTag>,
    powered: bool,
}

struct State {
    rng: SmallRng,
    defaults: LinkFaults,
    /// Per directed link (from, to): faults other than the defaults.
    link_faults: BTreeMap<(String, String), LinkFaults>,
    /// Directed links that carry nothing.
    cut_links: BTreeSet<(String, String)>,
    hosts: BTreeMap<String, Host>,
    next_seq: u64,
    counts: NetCounts,
    events: Vec<NetEvent>,
    keep_events: bool,
    tap: Option<Tap>,
}

/// The simulated network of one world. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct SimNet {
    state: Arc<Mutex<State>>,
    started: Instant,
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        let hosts: Vec<(&String, bool)> = state.hosts.iter().map(|(a, h)| (a, h.powered)).collect();
        f.debug_struct("SimNet")
            .field("hosts", &hosts)
            .field("cut_links", &state.cut_links)
            .field("counts", &state.counts)
            .finish_non_exhaustive()
    }
}

/// What [`SimNet::send`] decided for one message.
pub(crate) struct Sent {
    pub seq: u64,
    pub fate: Fate,
}

impl SimNet {
    /// A network with no hosts whose links all behave as `defaults`, drawing
    /// every fate from `seed`.
    pub fn new(seed: u64, defaults: LinkFaults) -> SimNet {
        SimNet {
            state: Arc::new(Mutex::new(State {
                rng: SmallRng::seed_from_u64(seed),
                defaults,
                link_faults: BTreeMap::new(),
                cut_links: BTreeSet::new(),
                hosts: BTreeMap::new(),
                next_seq: 0,
                counts: NetCounts::default(),
                events: Vec::new(),
                keep_events: true,
                tap: None,
            })),
            started: Instant::now(),
        }
    }

    /// Puts `endpoint` on the network at `addr`, powered; requests to it are
    /// handled inside the task group `tag`, if given.
    pub fn attach(&self, addr: &str, endpoint: Arc<dyn PeerEndpoint>, tag: Option<NodeTag>) {
        self.lock().hosts.insert(
            addr.to_string(),
            Host {
                endpoint,
                tag,
                powered: true,
            },
        );
    }

    /// Takes the host at `addr` off the network entirely.
    pub fn detach(&self, addr: &str) {
        self.lock().hosts.remove(addr);
    }

    /// Powers the host at `addr` off or on. A host without power receives
    /// nothing and sends nothing; replies already on the wire to others
    /// still arrive.
    pub fn set_powered(&self, addr: &str, powered: bool) {
        if let Some(host) = self.lock().hosts.get_mut(addr) {
            host.powered = powered;
        }
    }

    /// Whether the host at `addr` exists and has power.
    pub fn is_powered(&self, addr: &str) -> bool {
        self.lock().hosts.get(addr).is_some_and(|h| h.powered)
    }

    /// Cuts (`up == false`) or restores the one-way link `from -> to`.
    pub fn set_link(&self, from: &str, to: &str, up: bool) {
        let key = (from.to_string(), to.to_string());
        let mut state = self.lock();
        if up {
            state.cut_links.remove(&key);
        } else {
            state.cut_links.insert(key);
        }
    }

    /// Splits the hosts into `sides`: every link between two sides is cut
    /// both ways; links within a side are left as they are.
    pub fn partition(&self, sides: &[&[&str]]) {
        for (i, side) in sides.iter().enumerate() {
            for other in &sides[i + 1..] {
                for a in *side {
                    for b in *other {
                        self.set_link(a, b, false);
                        self.set_link(b, a, false);
                    }
                }
            }
        }
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        self.lock().cut_links.clear();
    }

    /// The faults of the one-way link `from -> to` from now on.
    pub fn set_link_faults(&self, from: &str, to: &str, faults: LinkFaults) {
        self.lock()
            .link_faults
            .insert((from.to_string(), to.to_string()), faults);
    }

    /// The faults of every link without its own, from now on.
    pub fn set_default_faults(&self, faults: LinkFaults) {
        self.lock().defaults = faults;
    }

    /// Shows every delivered reply to `tap`.
    pub fn set_tap(&self, tap: Tap) {
        self.lock().tap = Some(tap);
    }

    /// Stops keeping the event list (long runs keep only counts).
    pub fn keep_events(&self, keep: bool) {
        self.lock().keep_events = keep;
    }

    /// Messages by fate so far.
    pub fn counts(&self) -> NetCounts {
        self.lock().counts
    }

    /// Everything that happened to every message, in order.
    pub fn events(&self) -> Vec<NetEvent> {
        self.lock().events.clone()
    }

    /// The endpoint and task group of the powered host at `addr`.
    pub(crate) fn host(&self, addr: &str) -> Option<(Arc<dyn PeerEndpoint>, Option<NodeTag>)> {
        let state = self.lock();
        let host = state.hosts.get(addr)?;
        Some((Arc::clone(&host.endpoint), host.tag))
    }

    /// Whether any host, powered or not, is at `addr`.
    pub(crate) fn knows(&self, addr: &str) -> bool {
        self.lock().hosts.contains_key(addr)
    }

    /// Hands one message to the network: numbers it and draws its fate. A
    /// cut link or a sender without power loses it whatever the draw (the
    /// draw is still made, so the stream does not shift).
    pub(crate) fn send(&self, from: &str, to: &str, kind: &'static str) -> Sent {
        let at = self.started.elapsed();
        let mut state = self.lock();
        let state = &mut *state;
        let seq = state.next_seq;
        state.next_seq += 1;
        state.counts.sent += 1;
        let key = (from.to_string(), to.to_string());
        let faults = state.link_faults.get(&key).unwrap_or(&state.defaults);
        let drawn = faults.draw(&mut state.rng);
        let sender_off = state.hosts.get(from).is_some_and(|h| !h.powered);
        let (fate, what) = if state.cut_links.contains(&key) {
            state.counts.partitioned += 1;
            (Fate::Lost, "partitioned".to_string())
        } else if sender_off {
            state.counts.host_off += 1;
            (Fate::Lost, "sender off".to_string())
        } else {
            match drawn {
                Fate::Lost => {
                    state.counts.lost += 1;
                    (Fate::Lost, "lost".to_string())
                }
                Fate::Deliver(delay) => (drawn, format!("delay {}us", delay.as_micros())),
            }
        };
        if state.keep_events {
            state.events.push(NetEvent {
                at,
                seq,
                from: key.0,
                to: key.1,
                kind,
                what,
            });
        }
        Sent { seq, fate }
    }

    /// Message `seq` reached `to`: delivered unless `to` is a host without
    /// power.
    pub(crate) fn arrive(&self, seq: u64, from: &str, to: &str, kind: &'static str) -> bool {
        let at = self.started.elapsed();
        let mut state = self.lock();
        // A caller that is not a host (a test's client) always hears its
        // replies; only a host can be off.
        let powered = state.hosts.get(to).is_none_or(|h| h.powered);
        if powered {
            state.counts.delivered += 1;
        } else {
            state.counts.host_off += 1;
        }
        if state.keep_events {
            state.events.push(NetEvent {
                at,
                seq,
                from: from.to_string(),
                to: to.to_string(),
                kind,
                what: if powered { "arrived" } else { "host off" }.to_string(),
            });
        }
        powered
    }

    /// Shows a delivered reply to the tap, if any.
    pub(crate) fn tap(&self, from: &str, to: &str, reply: &PeerReply) {
        let tap = self.lock().tap.clone();
        if let Some(tap) = tap {
            tap(&Tapped { from, to, reply });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long a message delivered with `fate` is on the wire; `None` if lost.
pub(crate) fn wire_time(fate: Fate) -> Option<Duration> {
    match fate {
        Fate::Deliver(delay) => Some(delay),
        Fate::Lost => None,
    }
}
