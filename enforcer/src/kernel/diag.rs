//! Finding and destroying TCP sockets through netlink sock_diag (`NETLINK_SOCK_DIAG`):
//! `SOCK_DIAG_BY_FAMILY` looks a socket up by its exact 4-tuple (or dumps them all), answering
//! with its inode, uid, cookie and cgroup id (`INET_DIAG_CGROUP_ID`, Linux 5.7+);
//! `SOCK_DESTROY` (Linux 4.5+, `CONFIG_INET_DIAG_DESTROY`, CAP_NET_ADMIN) aborts it: the kernel
//! calls `tcp_abort`, which sends a RST to the peer and fails the owner's next call with
//! ECONNABORTED.
//!
//! `terminate: connection` (the connection's two ends) stays here: the enforcer has the 4-tuple
//! from the event, the exact lookup is O(1), and SOCK_DESTROY answers per socket. `terminate:
//! workload` uses the BPF socket iterator ([`super::iter`]) where the kernel allows it (6.5+):
//! one kernel pass instead of a dump to user space and a SOCK_DESTROY per socket (measured in
//! bench/enforcer.txt); this module's dump and batched destroy are its fallback.
//!
//! Message encoding and decoding are pure functions, tested without a kernel.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde::Serialize;

use super::sys::Netlink;

const NETLINK_SOCK_DIAG: libc::c_int = 4;
/// The legacy (v1) TCP dump request: the kernel answers it for IPv4 and IPv6 in one pass.
const TCPDIAG_GETSOCK: u16 = 18;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
const REQ_V2_LEN: usize = 56;
const REQ_V1_LEN: usize = 60;
const DIAG_MSG_LEN: usize = 72;
const INET_DIAG_CGROUP_ID: u16 = 21;
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const INET_DIAG_BC_CGROUP_COND: u8 = 13;
/// SOCK_DESTROY requests per datagram in [`SockDiag::destroy_many`]. Each failure comes back as
/// its own message (about 1 KiB of receive buffer each in the kernel's accounting): 64 of them
/// stay well inside the default 208 KiB, so no answer is dropped even when a whole batch fails.
pub const DESTROY_BATCH: usize = 64;
/// Most cgroups one filter program names: an op's forward jump is one byte (12 bytes per op).
const MAX_BYTECODE_CGROUPS: usize = 21;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const TCP_LISTEN: u8 = 10;
/// TCP states a live connection can be in: everything but TIME_WAIT (6, not a full socket),
/// LISTEN (10, not a connection) and NEW_SYN_RECV (12, a request, not yet a socket).
const CONNECTION_STATES: u32 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 11);
/// SYN_SENT (2) alone: connects under way, not yet answered.
pub const SYN_SENT_STATES: u32 = 1 << 2;
/// How long the kernel may take to answer one request.
const TIMEOUT: Duration = Duration::from_secs(2);

/// A TCP socket as sock_diag reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SockInfo {
    pub family: u8,
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub uid: u32,
    pub inode: u32,
    /// The socket's cookie, which SOCK_DESTROY checks so a reused 4-tuple is never hit.
    pub cookie: u64,
    /// The cgroup v2 id the socket was created in.
    pub cgroup_id: Option<u64>,
    #[serde(skip)]
    id: [u8; 48],
}

impl SockInfo {
    /// A socket as the BPF iterator reported it (no inode: the iterator does not read it).
    pub fn from_iterator(family: u8, state: u8, local: SocketAddr, remote: SocketAddr, uid: u32, cookie: u64, cgroup_id: u64) -> Self {
        let mut id = sockid(local, remote);
        id[40..44].copy_from_slice(&u32::try_from(cookie & 0xffff_ffff).unwrap_or(0).to_ne_bytes());
        id[44..48].copy_from_slice(&u32::try_from(cookie >> 32).unwrap_or(0).to_ne_bytes());
        Self { family, state, local, remote, uid, inode: 0, cookie, cgroup_id: Some(cgroup_id), id }
    }

    /// A socket as sock_diag would report it, for tests of code that reads one.
    #[cfg(test)]
    pub fn for_tests(local: SocketAddr, remote: SocketAddr, cgroup_id: Option<u64>) -> Self {
        Self { family: AF_INET, state: 1, local, remote, uid: 0, inode: 1, cookie: 1, cgroup_id, id: [0u8; 48] }
    }
}

/// sock_diag over one netlink socket.
#[derive(Debug)]
pub struct SockDiag {
    nl: Netlink,
    seq: u32,
    buf: Vec<u8>,
    /// Until the kernel refuses it: dumps use the legacy request that walks the TCP table once
    /// for both families ([`SockDiag::dump_filtered`]).
    both_families_in_one_walk: bool,
}

impl SockDiag {
    pub fn open() -> io::Result<Self> {
        Ok(Self { nl: Netlink::open(NETLINK_SOCK_DIAG, TIMEOUT)?, seq: 0, buf: vec![0u8; 64 * 1024], both_families_in_one_walk: true })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// The TCP socket whose local end is `local` and remote end is `remote`, if any.
    pub fn find(&mut self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<SockInfo>> {
        let seq = self.next_seq();
        let req = encode(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, seq, &exact_req(local, remote));
        self.nl.send(&req)?;
        loop {
            let n = self.nl.recv(&mut self.buf)?;
            for msg in messages(self.buf.get(..n).unwrap_or_default()) {
                if msg.seq != seq {
                    continue;
                }
                return match msg.kind {
                    NLMSG_ERROR => match error_code(msg.payload) {
                        Some(0) => Ok(None),
                        Some(e) if e == -libc::ENOENT => Ok(None),
                        Some(e) => Err(io::Error::from_raw_os_error(-e)),
                        None => Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink error")),
                    },
                    SOCK_DIAG_BY_FAMILY => Ok(parse_diag_msg(msg.payload)),
                    _ => continue,
                };
            }
        }
    }

    /// Every TCP connection (IPv4 and IPv6) on this network namespace.
    pub fn dump(&mut self) -> io::Result<Vec<SockInfo>> {
        self.dump_filtered(None, CONNECTION_STATES)
    }

    /// Every TCP connection whose socket belongs to one of `cgroup_ids`, filtered by the kernel
    /// (`INET_DIAG_BC_CGROUP_COND`, Linux 5.9+): only those sockets cross to user space, instead
    /// of every connection on the node.
    pub fn dump_cgroups(&mut self, cgroup_ids: &[u64]) -> io::Result<Vec<SockInfo>> {
        self.dump_cgroups_in(cgroup_ids, CONNECTION_STATES)
    }

    /// [`SockDiag::dump_cgroups`], of the sockets in the TCP states of the mask `states` (bit
    /// N: state N) only, which the kernel checks before anything else.
    pub fn dump_cgroups_in(&mut self, cgroup_ids: &[u64], states: u32) -> io::Result<Vec<SockInfo>> {
        if cgroup_ids.is_empty() {
            return Ok(Vec::new());
        }
        let states = states & CONNECTION_STATES;
        let socks = if cgroup_ids.len() <= MAX_BYTECODE_CGROUPS {
            self.dump_filtered(Some(&cgroup_bytecode(cgroup_ids)), states)?
        } else {
            // More cgroups than one bytecode program can jump over: filter here instead.
            self.dump_filtered(None, states)?
        };
        Ok(socks.into_iter().filter(|s| s.cgroup_id.is_some_and(|id| cgroup_ids.contains(&id))).collect())
    }

    /// One walk of the kernel's TCP hash table for both families: the legacy `TCPDIAG_GETSOCK`
    /// dump, which the kernel runs for any family (one pass over its 262,144 buckets here instead
    /// of one per family: half the time of a dump, which the in-flight abort waits for). Where
    /// the kernel refuses it, one `SOCK_DIAG_BY_FAMILY` dump per family, as before.
    fn dump_filtered(&mut self, bytecode: Option<&[u8]>, states: u32) -> io::Result<Vec<SockInfo>> {
        if self.both_families_in_one_walk {
            match self.dump_request(TCPDIAG_GETSOCK, &dump_req_v1(states, bytecode)?) {
                Ok(out) => return Ok(out),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT | libc::EOPNOTSUPP)) => {
                    self.both_families_in_one_walk = false;
                }
                Err(e) => return Err(e),
            }
        }
        let mut out = Vec::new();
        for family in [AF_INET, AF_INET6] {
            out.extend(self.dump_request(SOCK_DIAG_BY_FAMILY, &dump_req_v2(family, states, bytecode)?)?);
        }
        Ok(out)
    }

    /// Sends one dump request of type `kind` and collects the sockets it answers (as messages of
    /// that type).
    fn dump_request(&mut self, kind: u16, req: &[u8]) -> io::Result<Vec<SockInfo>> {
        let mut out = Vec::new();
        let seq = self.next_seq();
        self.nl.send(&encode(kind, NLM_F_REQUEST | NLM_F_DUMP, seq, req))?;
        loop {
            let n = self.nl.recv(&mut self.buf)?;
            for msg in messages(self.buf.get(..n).unwrap_or_default()) {
                if msg.seq != seq {
                    continue;
                }
                match msg.kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => match error_code(msg.payload) {
                        Some(0) => return Ok(out),
                        Some(e) => return Err(io::Error::from_raw_os_error(-e)),
                        None => return Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink error")),
                    },
                    k if k == kind => out.extend(parse_diag_msg(msg.payload)),
                    _ => {}
                }
            }
        }
    }

    /// Aborts many sockets with few system calls: `SOCK_DESTROY` requests go to the kernel
    /// [`DESTROY_BATCH`] per datagram, which it handles in order. Only the last of a batch asks
    /// for an acknowledgement; the others answer only when they fail, with their own sequence
    /// number, before that acknowledgement. One send and one receive per batch instead of one
    /// each per socket: 10,000 sockets take about 160 round trips instead of 10,000.
    ///
    /// Returns, per socket in order, what [`SockDiag::destroy`] would.
    pub fn destroy_many(&mut self, socks: &[&SockInfo]) -> Vec<io::Result<bool>> {
        let mut results: Vec<io::Result<bool>> = Vec::with_capacity(socks.len());
        for batch in socks.chunks(DESTROY_BATCH) {
            results.extend(self.destroy_batch(batch));
        }
        results
    }

    fn destroy_batch(&mut self, batch: &[&SockInfo]) -> Vec<io::Result<bool>> {
        let listening = || io::Error::new(io::ErrorKind::InvalidInput, "refusing to destroy a listening socket");
        let mut outcome: Vec<io::Result<bool>> =
            batch.iter().map(|s| if s.state == TCP_LISTEN { Err(listening()) } else { Ok(true) }).collect();
        // Sequence numbers of the requests sent, in order, by their index in the batch.
        let mut sent: Vec<(u32, usize)> = Vec::with_capacity(batch.len());
        let mut datagram = Vec::with_capacity(batch.len().saturating_mul(NLMSG_HDRLEN + REQ_V2_LEN));
        let to_send: Vec<usize> = (0..batch.len()).filter(|&i| batch.get(i).is_some_and(|s| s.state != TCP_LISTEN)).collect();
        for (n, &i) in to_send.iter().enumerate() {
            let Some(sock) = batch.get(i) else { continue };
            let seq = self.next_seq();
            let flags = if n.saturating_add(1) == to_send.len() { NLM_F_REQUEST | NLM_F_ACK } else { NLM_F_REQUEST };
            datagram.extend_from_slice(&encode(SOCK_DESTROY, flags, seq, &destroy_req(sock)));
            sent.push((seq, i));
        }
        let Some(&(last_seq, _)) = sent.last() else { return outcome };
        if let Err(e) = self.nl.send(&datagram) {
            for &(_, i) in &sent {
                if let Some(slot) = outcome.get_mut(i) {
                    *slot = Err(io::Error::new(e.kind(), e.to_string()));
                }
            }
            return outcome;
        }
        // Failures, then the final acknowledgement, come back in request order.
        loop {
            let n = match self.nl.recv(&mut self.buf) {
                Ok(n) => n,
                Err(e) => {
                    // Lost track of this batch: what was not reported failed is unknown.
                    for &(_, i) in &sent {
                        if let Some(slot) = outcome.get_mut(i).filter(|s| s.is_ok()) {
                            *slot = Err(io::Error::new(e.kind(), format!("no answer from the kernel: {e}")));
                        }
                    }
                    return outcome;
                }
            };
            for msg in messages(self.buf.get(..n).unwrap_or_default()) {
                if msg.kind != NLMSG_ERROR {
                    continue;
                }
                let Some(&(_, i)) = sent.iter().find(|(seq, _)| *seq == msg.seq) else { continue };
                if let Some(slot) = outcome.get_mut(i) {
                    *slot = match error_code(msg.payload) {
                        Some(0) => Ok(true),
                        Some(e) if e == -libc::ENOENT => Ok(false),
                        Some(e) => Err(io::Error::from_raw_os_error(-e)),
                        None => Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink error")),
                    };
                }
                if msg.seq == last_seq {
                    return outcome;
                }
            }
        }
    }

    /// Aborts the socket (`SOCK_DESTROY`); `Ok(false)` when it was already gone.
    pub fn destroy(&mut self, sock: &SockInfo) -> io::Result<bool> {
        if sock.state == TCP_LISTEN {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "refusing to destroy a listening socket"));
        }
        let seq = self.next_seq();
        self.nl.send(&encode(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, seq, &destroy_req(sock)))?;
        loop {
            let n = self.nl.recv(&mut self.buf)?;
            for msg in messages(self.buf.get(..n).unwrap_or_default()) {
                if msg.seq != seq || msg.kind != NLMSG_ERROR {
                    continue;
                }
                return match error_code(msg.payload) {
                    Some(0) => Ok(true),
                    Some(e) if e == -libc::ENOENT => Ok(false),
                    Some(e) => Err(io::Error::from_raw_os_error(-e)),
                    None => Err(io::Error::new(io::ErrorKind::InvalidData, "short netlink error")),
                };
            }
        }
    }
}

/// `inet_diag_req_v2` naming one socket exactly (its id carries the cookie, so a reused
/// 4-tuple is never hit).
fn destroy_req(sock: &SockInfo) -> [u8; REQ_V2_LEN] {
    let mut req = [0u8; REQ_V2_LEN];
    req[0] = sock.family;
    req[1] = IPPROTO_TCP;
    req[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    req[8..].copy_from_slice(&sock.id);
    req
}

/// inet_diag bytecode accepting a socket whose cgroup is any of `ids`: one
/// `INET_DIAG_BC_CGROUP_COND` op (4 bytes, then the u64 id) per id. On a match, jump to the end
/// (accept); otherwise to the next op, and past the end after the last (reject: the kernel
/// accepts exactly when the program ends at its length).
fn cgroup_bytecode(ids: &[u64]) -> Vec<u8> {
    const OP: usize = 12;
    let total = ids.len().saturating_mul(OP);
    let mut bc = Vec::with_capacity(total);
    for (i, id) in ids.iter().enumerate() {
        let remaining = total.saturating_sub(i.saturating_mul(OP));
        let yes = u8::try_from(remaining).unwrap_or(u8::MAX);
        let no = u16::try_from(if i.saturating_add(1) == ids.len() { remaining.saturating_add(4) } else { OP }).unwrap_or(u16::MAX);
        bc.push(INET_DIAG_BC_CGROUP_COND);
        bc.push(yes);
        bc.extend_from_slice(&no.to_ne_bytes());
        bc.extend_from_slice(&id.to_ne_bytes());
    }
    bc
}

/// One netlink message of a datagram.
#[derive(Debug, PartialEq, Eq)]
struct Message<'a> {
    kind: u16,
    seq: u32,
    payload: &'a [u8],
}

fn encode(kind: u16, flags: u16, seq: u32, payload: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN.saturating_add(payload.len());
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(payload);
    out
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// Splits a datagram into messages; stops at the first malformed header.
fn messages(mut b: &[u8]) -> Vec<Message<'_>> {
    let mut out = Vec::new();
    while let (Some(len), Some(kind), Some(seq)) = (u32_at(b, 0), u16_at(b, 4), u32_at(b, 8)) {
        let len = usize::try_from(len).unwrap_or(0);
        let (Some(payload), true) = (b.get(NLMSG_HDRLEN..len), len >= NLMSG_HDRLEN) else { break };
        out.push(Message { kind, seq, payload });
        b = b.get(align4(len)..).unwrap_or_default();
    }
    out
}

/// The (negative) errno of an NLMSG_ERROR payload; 0 is an acknowledgement.
fn error_code(payload: &[u8]) -> Option<i32> {
    u32_at(payload, 0).map(u32::cast_signed)
}

/// `inet_diag_sockid` for an exact lookup: ports in network order, addresses in the family's
/// form, any interface, no cookie.
fn sockid(local: SocketAddr, remote: SocketAddr) -> [u8; 48] {
    let mut id = [0u8; 48];
    id[0..2].copy_from_slice(&local.port().to_be_bytes());
    id[2..4].copy_from_slice(&remote.port().to_be_bytes());
    // IPv4 in the first 4 of the 16 address bytes, the rest zero.
    let bytes = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            let [x0, x1, x2, x3] = v4.octets();
            b[0] = x0;
            b[1] = x1;
            b[2] = x2;
            b[3] = x3;
            b
        }
        IpAddr::V6(v6) => v6.octets(),
    };
    id[4..20].copy_from_slice(&bytes(local.ip()));
    id[20..36].copy_from_slice(&bytes(remote.ip()));
    // INET_DIAG_NOCOOKIE in both words.
    id[40..48].copy_from_slice(&[0xff; 8]);
    id
}

/// `inet_diag_req_v2` looking up one TCP socket by 4-tuple. An IPv4 tuple also finds a
/// dual-stack IPv6 socket carrying it: the kernel looks IPv4 tuples up in one table.
/// The filter program as its request attribute (`INET_DIAG_REQ_BYTECODE`), appended to `req`.
fn push_bytecode(req: &mut Vec<u8>, bytecode: Option<&[u8]>) -> io::Result<()> {
    if let Some(bc) = bytecode {
        // Its length includes its 4-byte header.
        let len = u16::try_from(bc.len().saturating_add(4)).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "filter too long"))?;
        req.extend_from_slice(&len.to_ne_bytes());
        req.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        req.extend_from_slice(bc);
    }
    Ok(())
}

/// `inet_diag_req_v2` for a dump of one family's TCP sockets in `states`, then the filter.
fn dump_req_v2(family: u8, states: u32, bytecode: Option<&[u8]>) -> io::Result<Vec<u8>> {
    let mut head = [0u8; REQ_V2_LEN];
    head[0] = family;
    head[1] = IPPROTO_TCP;
    head[4..8].copy_from_slice(&states.to_ne_bytes());
    let mut req = head.to_vec();
    push_bytecode(&mut req, bytecode)?;
    Ok(req)
}

/// `inet_diag_req` (v1, with `TCPDIAG_GETSOCK`) for a dump of the TCP sockets of both families
/// in `states`, then the filter: family, lengths, extensions, the 48-byte socket id, states.
fn dump_req_v1(states: u32, bytecode: Option<&[u8]>) -> io::Result<Vec<u8>> {
    let mut head = [0u8; REQ_V1_LEN];
    head[52..56].copy_from_slice(&states.to_ne_bytes());
    let mut req = head.to_vec();
    push_bytecode(&mut req, bytecode)?;
    Ok(req)
}

fn exact_req(local: SocketAddr, remote: SocketAddr) -> [u8; REQ_V2_LEN] {
    let mut req = [0u8; REQ_V2_LEN];
    req[0] = if local.is_ipv4() { AF_INET } else { AF_INET6 };
    req[1] = IPPROTO_TCP;
    req[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    req[8..].copy_from_slice(&sockid(local, remote));
    req
}

fn addr(family: u8, b: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?))),
        AF_INET6 => {
            let a: [u8; 16] = b.get(..16)?.try_into().ok()?;
            Some(IpAddr::V6(Ipv6Addr::from(a)))
        }
        _ => None,
    }
}

/// Decodes an `inet_diag_msg` and its attributes.
fn parse_diag_msg(p: &[u8]) -> Option<SockInfo> {
    if p.len() < DIAG_MSG_LEN {
        return None;
    }
    let family = *p.first()?;
    let state = *p.get(1)?;
    let id: [u8; 48] = p.get(4..52)?.try_into().ok()?;
    let sport = u16::from_be_bytes(id.get(0..2)?.try_into().ok()?);
    let dport = u16::from_be_bytes(id.get(2..4)?.try_into().ok()?);
    let local = SocketAddr::new(addr(family, id.get(4..20)?)?, sport);
    let remote = SocketAddr::new(addr(family, id.get(20..36)?)?, dport);
    let cookie = u64::from(u32_at(&id, 40)?) | (u64::from(u32_at(&id, 44)?) << 32);
    let uid = u32_at(p, 64)?;
    let inode = u32_at(p, 68)?;
    let mut cgroup_id = None;
    let mut attrs = p.get(DIAG_MSG_LEN..).unwrap_or_default();
    while let (Some(len), Some(kind)) = (u16_at(attrs, 0), u16_at(attrs, 2)) {
        let len = usize::from(len);
        if len < 4 {
            break;
        }
        if kind == INET_DIAG_CGROUP_ID {
            cgroup_id = attrs.get(4..12).and_then(|b| b.try_into().ok()).map(u64::from_ne_bytes);
        }
        attrs = attrs.get(align4(len)..).unwrap_or_default();
    }
    Some(SockInfo { family, state, local, remote, uid, inode, cookie, cgroup_id, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter program as the kernel runs it (`inet_diag_bc_run`, cgroup ops only): a jump
    /// to exactly the end accepts, anything else rejects.
    fn run_filter(bc: &[u8], cgroup: u64) -> bool {
        let mut at = 0usize;
        let mut len = bc.len() as isize;
        while len > 0 {
            let op = &bc[at..];
            assert_eq!(op[0], INET_DIAG_BC_CGROUP_COND);
            let id = u64::from_ne_bytes(op[4..12].try_into().unwrap());
            let jump = if id == cgroup { usize::from(op[1]) } else { usize::from(u16::from_ne_bytes([op[2], op[3]])) };
            assert!(jump % 4 == 0 && jump >= 12, "the kernel's audit refuses jump {jump}");
            len -= jump as isize;
            at += jump;
        }
        len == 0
    }

    #[test]
    fn the_cgroup_filter_accepts_exactly_the_listed_cgroups() {
        for ids in [vec![7u64], vec![7, 8, 9], (100..121).collect::<Vec<u64>>()] {
            let bc = cgroup_bytecode(&ids);
            assert_eq!(bc.len(), 12 * ids.len());
            for &id in &ids {
                assert!(run_filter(&bc, id), "{id} in {ids:?}");
            }
            for other in [0, 1, 6, 10, 99, 121, u64::MAX] {
                assert!(!run_filter(&bc, other), "{other} not in {ids:?}");
            }
        }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exact_request_layout() {
        let r = exact_req(sa("127.0.0.1:40000"), sa("127.0.0.1:10000"));
        assert_eq!((r[0], r[1]), (AF_INET, IPPROTO_TCP));
        assert_eq!(&r[8..10], &40000u16.to_be_bytes());
        assert_eq!(&r[10..12], &10000u16.to_be_bytes());
        assert_eq!(&r[12..16], &[127, 0, 0, 1]);
        assert_eq!(&r[28..32], &[127, 0, 0, 1]);
        assert_eq!(&r[48..56], &[0xff; 8], "no cookie");
        let r6 = exact_req(sa("[::1]:1"), sa("[::1]:2"));
        assert_eq!(r6[0], AF_INET6);
        assert_eq!(&r6[12..28], &Ipv6Addr::LOCALHOST.octets());
        let msg = encode(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, 7, &r);
        assert_eq!(msg.len(), 72);
        assert_eq!(messages(&msg), vec![Message { kind: SOCK_DESTROY, seq: 7, payload: &r[..] }]);
    }

    /// Against this kernel: one dump lists connections of both families (in one walk of the
    /// TCP table, unless the kernel refused the request that does that, which it must not here).
    #[test]
    fn one_dump_lists_ipv4_and_ipv6_connections() {
        let Ok(mut diag) = SockDiag::open() else {
            eprintln!("SKIPPED: no NETLINK_SOCK_DIAG here");
            return;
        };
        let (Ok(l4), Ok(l6)) = (std::net::TcpListener::bind("127.0.0.1:0"), std::net::TcpListener::bind("[::1]:0")) else {
            eprintln!("SKIPPED: no IPv4 and IPv6 loopback here");
            return;
        };
        let c4 = std::net::TcpStream::connect(l4.local_addr().unwrap()).unwrap();
        let c6 = std::net::TcpStream::connect(l6.local_addr().unwrap()).unwrap();
        let listed = diag.dump().unwrap();
        for c in [&c4, &c6] {
            let (local, remote) = (c.local_addr().unwrap(), c.peer_addr().unwrap());
            assert!(listed.iter().any(|s| s.local == local && s.remote == remote), "{local} -> {remote} not listed");
        }
        assert!(diag.both_families_in_one_walk, "the kernel refused the dump of both families in one walk");
    }

    #[test]
    fn dump_requests_carry_states_and_filter() {
        let bc = cgroup_bytecode(&[7]);
        let v1 = dump_req_v1(SYN_SENT_STATES, Some(&bc)).unwrap();
        assert_eq!(v1.len(), REQ_V1_LEN + 4 + bc.len());
        assert_eq!(v1[0], 0, "no family: the kernel dumps both");
        assert_eq!(&v1[52..56], &SYN_SENT_STATES.to_ne_bytes());
        assert_eq!(&v1[60..62], &u16::try_from(4 + bc.len()).unwrap().to_ne_bytes());
        assert_eq!(&v1[62..64], &INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        assert_eq!(&v1[64..], &bc[..]);
        let v2 = dump_req_v2(AF_INET6, CONNECTION_STATES, None).unwrap();
        assert_eq!(v2.len(), REQ_V2_LEN);
        assert_eq!((v2[0], v2[1]), (AF_INET6, IPPROTO_TCP));
        assert_eq!(&v2[4..8], &CONNECTION_STATES.to_ne_bytes());
    }

    #[test]
    fn parses_a_diag_message_with_its_cgroup_id() {
        let mut p = vec![0u8; DIAG_MSG_LEN];
        p[0] = AF_INET;
        p[1] = 1;
        p[4..52].copy_from_slice(&sockid(sa("10.1.2.3:5555"), sa("10.9.9.9:80")));
        p[44..48].copy_from_slice(&0x11u32.to_ne_bytes());
        p[48..52].copy_from_slice(&0x22u32.to_ne_bytes());
        p[64..68].copy_from_slice(&1000u32.to_ne_bytes());
        p[68..72].copy_from_slice(&4242u32.to_ne_bytes());
        // An unrelated attribute (shutdown, 1 byte + padding), then the cgroup id.
        p.extend_from_slice(&[5, 0, 8, 0, 0, 0, 0, 0]);
        p.extend_from_slice(&12u16.to_ne_bytes());
        p.extend_from_slice(&INET_DIAG_CGROUP_ID.to_ne_bytes());
        p.extend_from_slice(&9876u64.to_ne_bytes());
        let s = parse_diag_msg(&p).unwrap();
        assert_eq!((s.local, s.remote), (sa("10.1.2.3:5555"), sa("10.9.9.9:80")));
        assert_eq!((s.uid, s.inode, s.cookie, s.cgroup_id), (1000, 4242, 0x22_0000_0011, Some(9876)));
        assert!(parse_diag_msg(&p[..DIAG_MSG_LEN - 1]).is_none());
    }

    #[test]
    fn splits_datagrams_and_stops_at_garbage() {
        let mut d = encode(NLMSG_ERROR, 0, 1, &(-libc::ENOENT).to_ne_bytes());
        d.extend(encode(NLMSG_DONE, 0, 2, &[0, 0, 0, 0]));
        d.extend_from_slice(&[1, 2, 3]);
        let m = messages(&d);
        assert_eq!(m.len(), 2);
        assert_eq!(error_code(m[0].payload), Some(-libc::ENOENT));
        assert_eq!(m[1].kind, NLMSG_DONE);
        assert!(messages(&[0xff; 15]).is_empty());
        // A header claiming a length shorter than itself ends the walk instead of looping.
        assert!(messages(&encode(1, 0, 1, &[])[..8]).is_empty());
    }
}
