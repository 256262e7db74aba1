//! Free TCP ports on 127.0.0.1 for test nodes.
//!
//! A node keeps its ports across restarts (the cluster's membership names
//! them), so they are picked once, up front. They are drawn below the
//! kernel's ephemeral range: a port in that range, released between two
//! runs of a node, could be taken as the local port of some outgoing
//! connection and the restart would fail to bind. Ports handed out in this
//! process are never handed out twice; a port used by another process is
//! caught by the bind check.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use rand::Rng;

/// Lowest port handed out.
const PORT_MIN: u16 = 12_000;
/// Used when the kernel's ephemeral range cannot be read.
const EPHEMERAL_LOW_DEFAULT: u16 = 32_768;
/// Most random draws before giving up.
const DRAWS_MAX: u32 = 10_000;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port on 127.0.0.1 that nothing listens on now and that this process
/// has not handed out before.
pub fn free_port() -> u16 {
    let high = ephemeral_low().max(PORT_MIN + 1_000);
    let mut rng = rand::thread_rng();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..DRAWS_MAX {
        let port = rng.gen_range(PORT_MIN..high);
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port in {PORT_MIN}..{high} after {DRAWS_MAX} draws");
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(EPHEMERAL_LOW_DEFAULT)
}
