//! The addresses a member advertises, carried in its openraft `Node`.
//!
//! openraft's `BasicNode` holds one string; a finkfs member has two
//! addresses, the peer one (Raft traffic) and the client one (where a
//! follower redirects clients). Both travel in that string, encoded as
//!
//! ```text
//! peer=<host:port>;client=<host:port>
//! ```
//!
//! A string without `=` is read as a bare peer address with no client
//! address, so a membership written by a tool that knows only peers still
//! parses. Membership entries are replicated and stored in the journal, so
//! this encoding is part of the on-disk format (docs/format/client-protocol.md).

use std::fmt;

use finkfs_raft::types::Node;

/// Longest address string accepted for one member.
pub const MEMBER_ADDR_BYTES_MAX: usize = 512;

const PEER_KEY: &str = "peer=";
const CLIENT_KEY: &str = "client=";
const SEPARATOR: char = ';';

/// The two addresses of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberAddr {
    /// The peer service, `host:port`.
    pub peer: String,
    /// The client service, `host:port`; `None` when the member did not
    /// advertise one.
    pub client: Option<String>,
}

/// Why an address string is not a member address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MemberAddrError {
    /// An address is missing where one is required.
    #[error("member address {0:?}: the {1} address is empty")]
    Empty(String, &'static str),
    /// A part is neither `peer=` nor `client=`, or appears twice.
    #[error("member address {0:?}: expected 'peer=<host:port>;client=<host:port>'")]
    Malformed(String),
    /// An address is not `host:port`.
    #[error("member address {addr:?}: {what} address {part:?} is not host:port")]
    NotHostPort {
        /// The whole string.
        addr: String,
        /// Which address.
        what: &'static str,
        /// The bad part.
        part: String,
    },
    /// The string is longer than [`MEMBER_ADDR_BYTES_MAX`].
    #[error("member address of {0} bytes exceeds the maximum of {MEMBER_ADDR_BYTES_MAX}")]
    TooLong(usize),
}

impl MemberAddr {
    /// A member with both addresses, each checked to be `host:port`.
    pub fn new(peer: &str, client: &str) -> Result<MemberAddr, MemberAddrError> {
        let addr = MemberAddr {
            peer: peer.to_string(),
            client: Some(client.to_string()),
        };
        let encoded = addr.encode();
        if encoded.len() > MEMBER_ADDR_BYTES_MAX {
            return Err(MemberAddrError::TooLong(encoded.len()));
        }
        check_host_port(&encoded, "peer", peer)?;
        check_host_port(&encoded, "client", client)?;
        Ok(addr)
    }

    /// The string stored in the member's `Node`.
    pub fn encode(&self) -> String {
        match &self.client {
            Some(client) => format!("{PEER_KEY}{}{SEPARATOR}{CLIENT_KEY}{client}", self.peer),
            None => format!("{PEER_KEY}{}", self.peer),
        }
    }

    /// Reads an address string (see the module docs).
    pub fn parse(addr: &str) -> Result<MemberAddr, MemberAddrError> {
        if addr.len() > MEMBER_ADDR_BYTES_MAX {
            return Err(MemberAddrError::TooLong(addr.len()));
        }
        if !addr.contains('=') {
            check_host_port(addr, "peer", addr)?;
            return Ok(MemberAddr {
                peer: addr.to_string(),
                client: None,
            });
        }
        let mut peer = None;
        let mut client = None;
        for part in addr.split(SEPARATOR) {
            let (slot, value) = if let Some(value) = part.strip_prefix(PEER_KEY) {
                (&mut peer, value)
            } else if let Some(value) = part.strip_prefix(CLIENT_KEY) {
                (&mut client, value)
            } else {
                return Err(MemberAddrError::Malformed(addr.to_string()));
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(MemberAddrError::Malformed(addr.to_string()));
            }
        }
        let peer = peer.ok_or_else(|| MemberAddrError::Empty(addr.to_string(), "peer"))?;
        check_host_port(addr, "peer", &peer)?;
        if let Some(client) = &client {
            check_host_port(addr, "client", client)?;
        }
        Ok(MemberAddr { peer, client })
    }

    /// The addresses of `node`.
    pub fn of(node: &Node) -> Result<MemberAddr, MemberAddrError> {
        MemberAddr::parse(&node.addr)
    }

    /// The openraft node advertising these addresses.
    pub fn to_node(&self) -> Node {
        Node {
            addr: self.encode(),
        }
    }
}

impl fmt::Display for MemberAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// Checks that `part` looks like `host:port`: a non-empty host without
/// separators and a port number.
fn check_host_port(addr: &str, what: &'static str, part: &str) -> Result<(), MemberAddrError> {
    let bad = || MemberAddrError::NotHostPort {
        addr: addr.to_string(),
        what,
        part: part.to_string(),
    };
    if part.is_empty() {
        return Err(MemberAddrError::Empty(addr.to_string(), what));
    }
    let (host, port) = part.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && !host.contains(|c: char| c == SEPARATOR || c == '=' || c.is_whitespace() || c == '/');
    if !host_ok || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_addresses_round_trip() {
        let addr = MemberAddr::new("10.0.0.1:7001", "10.0.0.1:7002").unwrap();
        let encoded = addr.encode();
        assert_eq!(encoded, "peer=10.0.0.1:7001;client=10.0.0.1:7002");
        assert_eq!(MemberAddr::parse(&encoded).unwrap(), addr);
        assert_eq!(MemberAddr::of(&addr.to_node()).unwrap(), addr);
    }

    #[test]
    fn bare_address_is_a_peer_without_client() {
        let addr = MemberAddr::parse("node-a:7001").unwrap();
        assert_eq!(addr.peer, "node-a:7001");
        assert_eq!(addr.client, None);
        assert_eq!(MemberAddr::parse(&addr.encode()).unwrap(), addr);
    }

    #[test]
    fn ipv6_host_is_accepted() {
        let addr = MemberAddr::new("[::1]:7001", "[::1]:7002").unwrap();
        assert_eq!(MemberAddr::parse(&addr.encode()).unwrap(), addr);
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "peer=",
            "client=a:1",
            "peer=a:1;peer=b:2",
            "peer=a:1;other=b:2",
            "peer=a;client=b:2",
            "peer=a:99999;client=b:2",
            "peer=a:1;client=b",
            "a b:1",
        ] {
            assert!(MemberAddr::parse(bad).is_err(), "{bad:?} parsed");
        }
        let long = format!("peer={}:1", "h".repeat(MEMBER_ADDR_BYTES_MAX));
        assert!(matches!(
            MemberAddr::parse(&long),
            Err(MemberAddrError::TooLong(_))
        ));
    }
}
