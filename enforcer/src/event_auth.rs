//! Which connection an event may make the enforcer act on in the kernel.
//!
//! `POST /v1/events` is open ([`crate::auth`]): filters post there, and a secret in a filter's
//! configuration would be no secret (an agent can read its own sidecar's configuration through
//! the admin port). Without a bound, anyone who reaches the API could post a made-up deny
//! naming someone else's connection and have it cut, and its workload quarantined.
//!
//! **The rule.** An event names a connection by its two ends: `downstream` (the caller) and
//! `destination` (the proxy's end, where the caller connected). The enforcer acts on it only
//! when the connection's *proxy end belongs to whoever posted the event*: a proxy may ask for
//! action against the clients of connections it accepted itself, and nothing else. Concretely,
//! with `P` the address the event was posted from:
//!
//! 1. When the connection's proxy end (local `destination`, remote `downstream`) is a socket in
//!    the enforcer's network namespace, the socket that posted the event must be found there too
//!    and be in the **same cgroup** (the same Envoy, the same container). This is the local demo
//!    and any enforcer sharing the proxies' namespace: another process on the node, an agent in
//!    a managed workload included, cannot speak for Envoy even from loopback.
//! 2. Otherwise, `P` must not be loopback (a local poster naming a connection that is not here
//!    is refused: there is nothing of its own to act on), and the `destination` address must be
//!    `P`'s own IP: in Kubernetes, the sidecar of pod 10.0.0.5 posts from 10.0.0.5 and may only
//!    name connections made to 10.0.0.5. The pod network's anti-spoofing (every CNI binds a pod's
//!    source address to its interface) is what makes `P` trustworthy there.
//! 3. When the proxy end is visible, rule 2's address check applies as well to a non-loopback
//!    poster, so a node address cannot stand in for a pod's.
//!
//! "In the enforcer's network namespace" is meant literally: a proxy end found inside a pod's
//! namespace (the enforcer looks there for a pod's sockets, [`crate::kernel::netns`]) is not
//! one the poster's socket can be compared with, so rule 2 decides, as it did before the
//! enforcer looked there.
//!
//! What stays open: a poster may still name *its own* clients' connections with a made-up
//! decision (a compromised proxy can cut its own callers; it could refuse them anyway), and
//! events without kernel actions (logged, counted in the inventory, and able to revoke a
//! principal through a rule's `revoke`) are accepted from anyone who reaches the API: keep the
//! API on loopback or the node's pod network, as the shipped configurations do.
//!
//! Refused events are logged, recorded in the audit log (`kind: "refused"`) and counted
//! (`events_refused` in `GET /v1/kernel`).

use std::net::{IpAddr, SocketAddr};

use crate::api::Peer;
use crate::kernel::diag::SockInfo;

/// Why an event may not act in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the event came on a connection the enforcer cannot identify")]
    UnknownPoster,
    #[error("the event names a connection to {destination}, but was posted from {poster}: a proxy may only name connections made to its own address")]
    NotItsAddress { destination: SocketAddr, poster: IpAddr },
    #[error("the event names a connection to {destination} that is not on this node, and was posted from loopback ({poster})")]
    NotHere { destination: SocketAddr, poster: IpAddr },
    #[error("the connection's proxy end is in cgroup {}, the event was posted from cgroup {}: only the proxy holding the connection may ask to act on it", cgroup(*.proxy), cgroup(*.poster))]
    NotItsConnection { proxy: Option<u64>, poster: Option<u64> },
}

/// A cgroup id for people ("unknown" when the kernel did not say, or the socket was not found).
fn cgroup(id: Option<u64>) -> String {
    id.map_or_else(|| "unknown".to_owned(), |id| id.to_string())
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is (an enforcer listening on `[::]` sees
/// IPv4 clients that way; the kernel files their sockets under IPv4).
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// The rule (see the module documentation). `proxy_end`: the named connection's socket with
/// local `destination` and remote `downstream`, when the enforcer's namespace has it;
/// `poster_end`: the socket that posted the event (local `peer.remote`, remote `peer.local`),
/// when it has that.
pub fn may_act(
    peer: Option<Peer>,
    destination: SocketAddr,
    proxy_end: Option<&SockInfo>,
    poster_end: Option<&SockInfo>,
) -> Result<(), Refused> {
    let peer = peer.ok_or(Refused::UnknownPoster)?;
    let poster = canonical(peer.remote).ip();
    let destination = canonical(destination);
    if !poster.is_loopback() && destination.ip() != poster {
        return Err(Refused::NotItsAddress { destination, poster });
    }
    match proxy_end {
        Some(proxy) => {
            let poster_cgroup = poster_end.and_then(|s| s.cgroup_id);
            if proxy.cgroup_id.is_some() && proxy.cgroup_id == poster_cgroup {
                Ok(())
            } else {
                Err(Refused::NotItsConnection { proxy: proxy.cgroup_id, poster: poster_cgroup })
            }
        }
        None if poster.is_loopback() => Err(Refused::NotHere { destination, poster }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(cgroup: Option<u64>) -> SockInfo {
        SockInfo::for_tests("127.0.0.1:10000".parse().unwrap(), "127.0.0.1:40000".parse().unwrap(), cgroup)
    }

    fn peer(remote: &str) -> Option<Peer> {
        Some(Peer { remote: remote.parse().unwrap(), local: "127.0.0.1:9090".parse().unwrap() })
    }

    #[test]
    fn only_the_proxy_holding_the_connection_may_ask() {
        let local_dest: SocketAddr = "127.0.0.1:10000".parse().unwrap();
        let pod_dest: SocketAddr = "10.0.0.5:8080".parse().unwrap();
        let envoy = sock(Some(7));
        let other = sock(Some(8));
        let unknown = sock(None);
        for (name, peer, dest, proxy, poster, allowed) in [
            ("demo: Envoy posts about its own connection", peer("127.0.0.1:50000"), local_dest, Some(&envoy), Some(&envoy), true),
            ("IPv4-mapped poster, same cgroup", peer("[::ffff:127.0.0.1]:50000"), local_dest, Some(&envoy), Some(&envoy), true),
            ("another local process (another cgroup)", peer("127.0.0.1:50001"), local_dest, Some(&envoy), Some(&other), false),
            ("poster's socket not found", peer("127.0.0.1:50001"), local_dest, Some(&envoy), None, false),
            ("no cgroup ids from the kernel", peer("127.0.0.1:50001"), local_dest, Some(&unknown), Some(&unknown), false),
            ("loopback poster, connection not here", peer("127.0.0.1:50001"), pod_dest, None, None, false),
            ("pod posts about a connection to itself", peer("10.0.0.5:41000"), pod_dest, None, None, true),
            ("pod names another pod's connection", peer("10.0.0.6:41000"), pod_dest, None, None, false),
            ("remote host names a local connection", peer("10.0.0.6:41000"), local_dest, Some(&envoy), None, false),
            ("node address, visible, another cgroup", peer("10.0.0.5:41000"), pod_dest, Some(&envoy), Some(&other), false),
            ("unknown poster", None, local_dest, Some(&envoy), Some(&envoy), false),
        ] {
            assert_eq!(may_act(peer, dest, proxy, poster).is_ok(), allowed, "{name}: {:?}", may_act(peer, dest, proxy, poster));
        }
        let e = may_act(peer("10.0.0.6:1"), pod_dest, None, None).unwrap_err();
        assert!(e.to_string().contains("10.0.0.5:8080") && e.to_string().contains("10.0.0.6"), "{e}");
    }
}
