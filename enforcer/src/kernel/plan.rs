//! What a decision asks of the kernel, as data: which sockets to destroy and which map entries to
//! write. Pure (no syscalls, no clock), so every rule about what the enforcer does is tested
//! natively; [`super::bpf`] and [`super::diag`] only carry a [`Plan`] out.
//!
//! The byte layouts of map keys and values mirror `enforcer/bpf/quarantine.c`; keep them in step
//! (the tests pin the offsets).

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use interlock_policies::schema::{KernelAction, QuarantineBlock, TerminateScope};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// `struct quarantine` (24 bytes): expires_ns u64, tag u64, block_all u32, pad u32; host order.
pub type QuarantineValue = [u8; 24];
/// `struct dest_key` (32 bytes): cgroup_id u64 (host order), addr [16] (IPv6 or IPv4-mapped),
/// port (network order), 6 bytes of padding.
pub type DestKey = [u8; 32];
/// `struct refusals` (16 bytes): count u64, last_ns u64; host order.
pub type RefusalsValue = [u8; 16];

/// Most destinations a quarantine lists (the destination, or the allow-list).
pub const MAX_DESTS: usize = 64;
const NS_PER_SEC: u64 = 1_000_000_000;

/// The caller, as found from the connection's addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// Cgroup id of the caller's socket (the inode number of its cgroup v2 directory), when the
    /// socket was found.
    pub cgroup_id: Option<u64>,
    /// The workload, when that cgroup is under the managed root; `None` for anything else,
    /// which is never quarantined.
    pub workload: Option<String>,
    /// Cgroup ids of the workload's cgroup and its descendants (empty when not managed).
    #[serde(skip)]
    pub workload_cgroups: Vec<u64>,
}

/// Sockets to destroy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "scope", rename_all = "snake_case")]
pub enum Terminate {
    /// Both ends of the connection that carried the call, as seen on this node: the caller's
    /// (local = downstream) and the proxy's (local = destination).
    Connection { downstream: SocketAddr, destination: SocketAddr },
    /// Every TCP socket whose cgroup is one of these.
    Workload { cgroup_ids: Vec<u64> },
}

/// A quarantine to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantinePlan {
    pub cgroup_ids: Vec<u64>,
    /// Counter key of this quarantine in `il_refusals`.
    pub tag: u64,
    /// CLOCK_MONOTONIC deadline (ns); 0 for none.
    pub expires_mono_ns: u64,
    pub duration_secs: Option<u32>,
    pub block_all: bool,
    /// With `block_all`, what stays allowed; otherwise what is refused.
    pub dests: Vec<SocketAddr>,
}

/// What to do for one decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<QuarantinePlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminate: Option<Terminate>,
    /// Why something asked for was narrowed or skipped; goes into the receipt.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// Why a decision cannot be planned at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("the event has no {0} address: the caller's connection cannot be found")]
    MissingAddress(&'static str),
    #[error("invalid {field} address {value:?}: expected ip:port")]
    InvalidAddress { field: &'static str, value: String },
    #[error("quarantine allow-list entry {0:?} is not ip:port")]
    InvalidAllow(String),
    #[error("quarantine lists {0} destinations, more than {MAX_DESTS}")]
    TooManyDests(usize),
}

/// Parses an event's `ip:port` (`[v6]:port` for IPv6).
pub fn parse_addr(field: &'static str, value: Option<&str>) -> Result<SocketAddr, PlanError> {
    let value = value.ok_or(PlanError::MissingAddress(field))?;
    value.parse().map_err(|_| PlanError::InvalidAddress { field, value: value.to_owned() })
}

/// The counter tag of a decision: the first 8 bytes of SHA-256 of its id, so the same decision
/// always counts under the same key, also after a restart.
pub fn tag_for(decision_id: &str) -> u64 {
    let digest = Sha256::digest(decision_id.as_bytes());
    let mut bytes = [0u8; 8];
    for (b, d) in bytes.iter_mut().zip(digest.iter()) {
        *b = *d;
    }
    u64::from_le_bytes(bytes)
}

/// Plans a decision's kernel action for `caller`, at CLOCK_MONOTONIC `now_mono_ns`.
///
/// - `terminate: connection` cuts the connection that carried the call, whoever the caller is.
/// - `terminate: workload` cuts every connection of the caller's workload, only for a managed
///   workload; for anyone else it narrows to the connection (and says so).
/// - `quarantine` only ever applies to a managed workload (never the host's own cgroups); for
///   anyone else nothing is quarantined, and the plan says so.
pub fn plan(
    action: &KernelAction,
    decision_id: &str,
    downstream: SocketAddr,
    destination: SocketAddr,
    caller: &Caller,
    now_mono_ns: u64,
) -> Result<Plan, PlanError> {
    let mut out = Plan::default();
    let managed = caller.workload.is_some() && !caller.workload_cgroups.is_empty();
    out.terminate = match action.terminate {
        None => None,
        Some(TerminateScope::Connection) => Some(Terminate::Connection { downstream, destination }),
        Some(TerminateScope::Workload) if managed => {
            Some(Terminate::Workload { cgroup_ids: caller.workload_cgroups.clone() })
        }
        Some(TerminateScope::Workload) => {
            out.notes.push(
                "terminate: workload narrowed to the connection: the caller is not under the managed cgroup root"
                    .to_owned(),
            );
            Some(Terminate::Connection { downstream, destination })
        }
    };
    if let Some(q) = &action.quarantine {
        if managed {
            let (block_all, dests) = match q.block {
                QuarantineBlock::Destination => (false, vec![destination]),
                QuarantineBlock::All => {
                    let allow = q
                        .allow
                        .iter()
                        .map(|a| a.parse::<SocketAddr>().map_err(|_| PlanError::InvalidAllow(a.clone())))
                        .collect::<Result<Vec<_>, _>>()?;
                    (true, allow)
                }
            };
            if dests.len() > MAX_DESTS {
                return Err(PlanError::TooManyDests(dests.len()));
            }
            let ttl = u64::from(q.duration_secs).saturating_mul(NS_PER_SEC);
            out.quarantine = Some(QuarantinePlan {
                cgroup_ids: caller.workload_cgroups.clone(),
                tag: tag_for(decision_id),
                expires_mono_ns: now_mono_ns.saturating_add(ttl),
                duration_secs: Some(q.duration_secs),
                block_all,
                dests,
            });
        } else {
            out.notes.push(match caller.cgroup_id {
                Some(id) => format!(
                    "nothing quarantined: the caller's cgroup (id {id}) is not under the managed cgroup root"
                ),
                None => "nothing quarantined: the caller's socket was not found on this node".to_owned(),
            });
        }
    }
    Ok(out)
}

/// A quarantine asked for by hand (`interlock quarantine`): every new connection of the
/// workload is refused; `ttl_secs` 0 means until released.
pub fn manual_quarantine(tag: u64, cgroup_ids: Vec<u64>, ttl_secs: u32, now_mono_ns: u64) -> QuarantinePlan {
    QuarantinePlan {
        cgroup_ids,
        tag,
        expires_mono_ns: if ttl_secs == 0 {
            0
        } else {
            now_mono_ns.saturating_add(u64::from(ttl_secs).saturating_mul(NS_PER_SEC))
        },
        duration_secs: (ttl_secs != 0).then_some(ttl_secs),
        block_all: true,
        dests: Vec::new(),
    }
}

/// The 16-byte form of an address as the BPF programs compare it: IPv6 as is, IPv4 as its
/// IPv4-mapped IPv6 address (so a dual-stack socket's `::ffff:a.b.c.d` matches too).
pub fn addr16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// `struct dest_key` for `cgroup_id` and `dest`.
pub fn dest_key(cgroup_id: u64, dest: SocketAddr) -> DestKey {
    let mut key = [0u8; 32];
    let parts: [(&mut [u8], &[u8]); 3] = {
        let (id, rest) = key.split_at_mut(8);
        let (addr, rest) = rest.split_at_mut(16);
        let (port, _pad) = rest.split_at_mut(2);
        [
            (id, &cgroup_id.to_ne_bytes()[..]),
            (addr, &addr16(dest.ip())[..]),
            (port, &dest.port().to_be_bytes()[..]),
        ]
    };
    for (dst, src) in parts {
        dst.copy_from_slice(src);
    }
    key
}

/// The cgroup id a `struct dest_key` belongs to.
pub fn dest_key_cgroup(key: &DestKey) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(key.split_at(8).0);
    u64::from_ne_bytes(id)
}

/// The destination a `struct dest_key` names.
pub fn dest_key_addr(key: &DestKey) -> SocketAddr {
    let (_, rest) = key.split_at(8);
    let (addr, rest) = rest.split_at(16);
    let (port, _) = rest.split_at(2);
    let mut a = [0u8; 16];
    a.copy_from_slice(addr);
    let v6 = Ipv6Addr::from(a);
    let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
    let mut p = [0u8; 2];
    p.copy_from_slice(port);
    SocketAddr::new(ip, u16::from_be_bytes(p))
}

/// `struct quarantine`.
pub fn quarantine_value(expires_mono_ns: u64, tag: u64, block_all: bool) -> QuarantineValue {
    let mut v = [0u8; 24];
    let (expires, rest) = v.split_at_mut(8);
    let (t, rest) = rest.split_at_mut(8);
    let (all, _pad) = rest.split_at_mut(4);
    expires.copy_from_slice(&expires_mono_ns.to_ne_bytes());
    t.copy_from_slice(&tag.to_ne_bytes());
    all.copy_from_slice(&u32::from(block_all).to_ne_bytes());
    v
}

/// Fields of a `struct quarantine`: (expires_ns, tag, block_all).
pub fn parse_quarantine_value(v: &QuarantineValue) -> (u64, u64, bool) {
    let mut e = [0u8; 8];
    let mut t = [0u8; 8];
    let mut a = [0u8; 4];
    let (expires, rest) = v.split_at(8);
    let (tag, rest) = rest.split_at(8);
    let (all, _) = rest.split_at(4);
    e.copy_from_slice(expires);
    t.copy_from_slice(tag);
    a.copy_from_slice(all);
    (u64::from_ne_bytes(e), u64::from_ne_bytes(t), u32::from_ne_bytes(a) != 0)
}

/// Fields of a `struct refusals`: (count, last_ns).
pub fn parse_refusals(v: &RefusalsValue) -> (u64, u64) {
    let mut c = [0u8; 8];
    let mut l = [0u8; 8];
    let (count, last) = v.split_at(8);
    c.copy_from_slice(count);
    l.copy_from_slice(last);
    (u64::from_ne_bytes(c), u64::from_ne_bytes(l))
}

/// Whether the quarantine refuses a connection to `dest`: the program's rule (quarantine.c's
/// `decide_for`), with an address compared in its 16-byte form, so `::ffff:a.b.c.d` and
/// `a.b.c.d` are one destination.
pub fn refuses(q: &QuarantinePlan, dest: SocketAddr) -> bool {
    let key = (addr16(dest.ip()), dest.port());
    let listed = q.dests.iter().any(|d| (addr16(d.ip()), d.port()) == key);
    if q.block_all { !listed } else { listed }
}

/// Whether a quarantine with this deadline is over at `now_mono_ns` (the program's own test).
pub fn expired(expires_mono_ns: u64, now_mono_ns: u64) -> bool {
    expires_mono_ns != 0 && now_mono_ns >= expires_mono_ns
}

#[cfg(test)]
mod tests {
    use super::*;
    use interlock_policies::schema::Quarantine;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn managed() -> Caller {
        Caller { cgroup_id: Some(77), workload: Some("w".into()), workload_cgroups: vec![77, 78] }
    }

    fn outsider() -> Caller {
        Caller { cgroup_id: Some(1), workload: None, workload_cgroups: vec![] }
    }

    fn action(terminate: Option<TerminateScope>, block: Option<QuarantineBlock>, allow: &[&str]) -> KernelAction {
        KernelAction {
            terminate,
            quarantine: block.map(|block| Quarantine {
                duration_secs: 30,
                block,
                allow: allow.iter().map(|s| (*s).to_owned()).collect(),
            }),
        }
    }

    const DOWN: &str = "127.0.0.1:40000";
    const DEST: &str = "127.0.0.1:10000";

    #[test]
    fn demo_rule_on_a_managed_workload_terminates_and_quarantines_the_destination() {
        let a = action(Some(TerminateScope::Connection), Some(QuarantineBlock::Destination), &[]);
        let p = plan(&a, "d1", sa(DOWN), sa(DEST), &managed(), 5).unwrap();
        assert_eq!(p.terminate, Some(Terminate::Connection { downstream: sa(DOWN), destination: sa(DEST) }));
        let q = p.quarantine.unwrap();
        assert_eq!(q.cgroup_ids, vec![77, 78]);
        assert_eq!(q.expires_mono_ns, 5 + 30 * NS_PER_SEC);
        assert!(!q.block_all);
        assert_eq!(q.dests, vec![sa(DEST)]);
        assert_eq!(q.tag, tag_for("d1"));
        assert!(p.notes.is_empty());
    }

    #[test]
    fn an_outsider_is_never_quarantined_and_only_its_connection_is_cut() {
        for scope in [TerminateScope::Connection, TerminateScope::Workload] {
            let a = action(Some(scope), Some(QuarantineBlock::All), &[]);
            let p = plan(&a, "d", sa(DOWN), sa(DEST), &outsider(), 0).unwrap();
            assert_eq!(p.quarantine, None, "{scope:?}");
            assert_eq!(p.terminate, Some(Terminate::Connection { downstream: sa(DOWN), destination: sa(DEST) }));
            assert!(p.notes.iter().any(|n| n.contains("nothing quarantined")), "{:?}", p.notes);
        }
        let a = action(Some(TerminateScope::Workload), None, &[]);
        let p = plan(&a, "d", sa(DOWN), sa(DEST), &outsider(), 0).unwrap();
        assert!(p.notes.iter().any(|n| n.contains("narrowed to the connection")), "{:?}", p.notes);
        // A caller whose socket was not found is treated as an outsider.
        let unknown = Caller { cgroup_id: None, workload: None, workload_cgroups: vec![] };
        let a = action(None, Some(QuarantineBlock::Destination), &[]);
        let p = plan(&a, "d", sa(DOWN), sa(DEST), &unknown, 0).unwrap();
        assert_eq!((p.quarantine, p.terminate), (None, None));
        assert!(p.notes.iter().any(|n| n.contains("not found")), "{:?}", p.notes);
    }

    #[test]
    fn workload_scope_and_block_all_with_an_allow_list() {
        let a = action(Some(TerminateScope::Workload), Some(QuarantineBlock::All), &["10.0.0.53:53", "[::1]:8443"]);
        let p = plan(&a, "d", sa(DOWN), sa(DEST), &managed(), 0).unwrap();
        assert_eq!(p.terminate, Some(Terminate::Workload { cgroup_ids: vec![77, 78] }));
        let q = p.quarantine.unwrap();
        assert!(q.block_all);
        assert_eq!(q.dests, vec![sa("10.0.0.53:53"), sa("[::1]:8443")]);
        let bad = action(None, Some(QuarantineBlock::All), &["nope"]);
        assert_eq!(plan(&bad, "d", sa(DOWN), sa(DEST), &managed(), 0), Err(PlanError::InvalidAllow("nope".into())));
    }

    #[test]
    fn a_quarantine_refuses_what_the_program_refuses() {
        let q = |block_all: bool, dests: &[&str]| QuarantinePlan {
            cgroup_ids: vec![77],
            tag: 1,
            expires_mono_ns: 0,
            duration_secs: None,
            block_all,
            dests: dests.iter().map(|d| sa(d)).collect(),
        };
        // block: destination refuses that destination only (the same port, either address form).
        let dest = q(false, &["10.0.0.9:443"]);
        assert!(refuses(&dest, sa("10.0.0.9:443")));
        assert!(refuses(&dest, sa("[::ffff:10.0.0.9]:443")));
        assert!(!refuses(&dest, sa("10.0.0.9:80")));
        assert!(!refuses(&dest, sa("10.0.0.10:443")));
        // block: all refuses everything but the allow-list.
        let all = q(true, &["10.0.0.53:53", "[::1]:8443"]);
        assert!(!refuses(&all, sa("10.0.0.53:53")));
        assert!(!refuses(&all, sa("[::ffff:10.0.0.53]:53")));
        assert!(!refuses(&all, sa("[::1]:8443")));
        assert!(refuses(&all, sa("10.0.0.53:54")));
        assert!(refuses(&all, sa("127.0.0.1:8443")));
        assert!(refuses(&q(true, &[]), sa("127.0.0.1:1")));
    }

    #[test]
    fn addresses_are_required_and_parsed() {
        assert_eq!(parse_addr("downstream", None), Err(PlanError::MissingAddress("downstream")));
        assert!(matches!(parse_addr("destination", Some("x")), Err(PlanError::InvalidAddress { .. })));
        assert_eq!(parse_addr("destination", Some("[::1]:80")).unwrap(), sa("[::1]:80"));
    }

    #[test]
    fn dest_key_layout_matches_the_c_struct() {
        let k = dest_key(0x0102_0304_0506_0708, sa("127.0.0.1:10000"));
        assert_eq!(&k[..8], &0x0102_0304_0506_0708u64.to_ne_bytes());
        assert_eq!(&k[8..24], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]);
        assert_eq!(&k[24..26], &[0x27, 0x10], "port in network order");
        assert_eq!(&k[26..], &[0; 6]);
        assert_eq!(dest_key_cgroup(&k), 0x0102_0304_0506_0708);
        assert_eq!(dest_key_addr(&k), sa("127.0.0.1:10000"));
        // The IPv4-mapped IPv6 spelling of the same destination is the same key.
        assert_eq!(dest_key(9, sa("[::ffff:127.0.0.1]:10000")), dest_key(9, sa("127.0.0.1:10000")));
        assert_eq!(dest_key_addr(&dest_key(9, sa("[2001:db8::1]:443"))), sa("[2001:db8::1]:443"));
    }

    #[test]
    fn quarantine_value_layout_and_expiry() {
        let v = quarantine_value(7, 9, true);
        assert_eq!(&v[..8], &7u64.to_ne_bytes());
        assert_eq!(&v[8..16], &9u64.to_ne_bytes());
        assert_eq!(&v[16..20], &1u32.to_ne_bytes());
        assert_eq!(parse_quarantine_value(&v), (7, 9, true));
        assert!(!expired(0, u64::MAX), "0 never expires");
        assert!(!expired(10, 9));
        assert!(expired(10, 10));
        let mut r = [0u8; 16];
        r[..8].copy_from_slice(&3u64.to_ne_bytes());
        assert_eq!(parse_refusals(&r), (3, 0));
    }

    #[test]
    fn manual_quarantine_blocks_everything_and_zero_ttl_never_expires() {
        let q = manual_quarantine(1, vec![5], 0, 100);
        assert!(q.block_all && q.dests.is_empty());
        assert_eq!((q.expires_mono_ns, q.duration_secs), (0, None));
        let q = manual_quarantine(1, vec![5], 2, 100);
        assert_eq!((q.expires_mono_ns, q.duration_secs), (100 + 2 * NS_PER_SEC, Some(2)));
    }

    #[test]
    fn tags_are_stable_and_distinct() {
        assert_eq!(tag_for("a"), tag_for("a"));
        assert_ne!(tag_for("a"), tag_for("b"));
    }
}
