//! Destroying a workload's sockets with a BPF TCP iterator (`enforcer/bpf/destroy.c`): one
//! pass over the kernel's TCP hash that matches each socket's cgroup and aborts the matches with
//! the `bpf_sock_destroy` kfunc (Linux 6.5+). Reading the iterator runs it; it counts what it
//! did in a map and keeps the first [`LISTED`] sockets it acted on in another, for the receipt.
//!
//! Against the netlink path ([`super::diag`]): no dump of the workload's sockets to user space,
//! no per-socket SOCK_DESTROY message and no per-socket lookup by 4-tuple (measured in
//! enforcer/benches/kernel_latency.rs; bench/enforcer.txt). Where this cannot load (an older
//! kernel, no kfunc, no BTF), the enforcer says so and destroys through netlink.
//!
//! aya 0.14 does not resolve `__ksym` externs, so the C source calls a placeholder helper number
//! and [`patch_kfunc_call`] rewrites that instruction into the kfunc call before aya loads the
//! object (the rest, maps and CO-RE, aya does).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use aya::maps::{Array, HashMap, MapData};
use aya::programs::Iter;
use aya::{Btf, Ebpf, EbpfLoader};

use super::diag::SockInfo;
use super::netns::{self, Netns};

/// The object built by build.rs from `enforcer/bpf/destroy.c`; empty when clang was missing.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/destroy.o"));

const PROGRAM: &str = "interlock_destroy_tcp";
const SECTION: &str = "iter/tcp";
const MAP_CGROUPS: &str = "il_destroy_cgroups";
const MAP_SHARDS: &str = "il_destroy_shards";
const MAP_STATS: &str = "il_destroy_stats";
const MAP_LISTED: &str = "il_destroy_listed";
/// Sockets the program keeps for the receipt (`IL_LISTED` in destroy.c).
pub const LISTED: u32 = 100;
const KFUNC: &str = "bpf_sock_destroy";
/// The helper number destroy.c calls in place of the kfunc (`IL_KFUNC_PLACEHOLDER`).
const PLACEHOLDER: i32 = 0x7ff1;
const BPF_PSEUDO_KFUNC_CALL: u8 = 2;
/// `struct destroyed` in destroy.c.
pub const RECORD_LEN: usize = 64;

/// What one run did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The first [`LISTED`] sockets acted on, in the order they were.
    pub listed: Vec<Destroyed>,
    /// Sockets acted on, destroyed, and refused by the kfunc.
    pub seen: u64,
    pub destroyed: u64,
    pub failed: u64,
}

/// One socket the iterator acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destroyed {
    pub sock: SockInfo,
    /// `bpf_sock_destroy`'s answer: 0, or a negative errno.
    pub result: i32,
}

/// The loaded iterator program and its maps.
pub struct SockIter {
    ebpf: Ebpf,
    cgroups: HashMap<MapData, u64, u8>,
    shards: HashMap<MapData, u32, [u32; 2]>,
    stats: Array<MapData, [u64; 3]>,
    listed: Array<MapData, [u8; RECORD_LEN]>,
}

impl std::fmt::Debug for SockIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SockIter").finish_non_exhaustive()
    }
}

impl SockIter {
    /// Loads the iterator program; the error says why it cannot be used here.
    pub fn load() -> Result<Self, String> {
        if OBJECT.is_empty() {
            return Err("this build has no destroy.o (clang was missing when it was built)".to_owned());
        }
        let btf = Btf::from_sys_fs().map_err(|e| format!("no kernel BTF (/sys/kernel/btf/vmlinux): {e}"))?;
        let kfunc = btf
            .id_by_type_name_kind(KFUNC, aya_obj::btf::BtfKind::Func)
            .map_err(|e| format!("the kernel has no {KFUNC} kfunc (Linux 6.5+): {e}"))?;
        let mut object = OBJECT.to_vec();
        let patched = patch_kfunc_call(&mut object, SECTION, PLACEHOLDER, kfunc)?;
        if patched == 0 {
            return Err(format!("no {KFUNC} call to rewrite in {SECTION}"));
        }
        let mut ebpf = EbpfLoader::new().btf(Some(&btf)).load(&object).map_err(|e| format!("loading destroy.o: {}", super::error_chain(&e)))?;
        let program: &mut Iter = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| format!("destroy.o has no {PROGRAM}"))?
            .try_into()
            .map_err(|e| format!("{PROGRAM}: {e}"))?;
        program.load("tcp", &btf).map_err(|e| format!("the kernel refused {PROGRAM} (iter/tcp with {KFUNC}): {}", super::error_chain(&e)))?;
        let cgroups = take_map(&mut ebpf, MAP_CGROUPS)?;
        let shards = take_map(&mut ebpf, MAP_SHARDS)?;
        let stats = take_array(&mut ebpf, MAP_STATS)?;
        let listed = take_array(&mut ebpf, MAP_LISTED)?;
        Ok(Self { ebpf, cgroups, shards, stats, listed })
    }

    /// Destroys every full TCP socket (but listeners) of the cgroups `ids` in the network
    /// namespace `ns` (`None`: the enforcer's own), with `readers` threads reading the iterator
    /// at once (each acts on the sockets whose cookie falls in its shard). The iterator walks
    /// the namespace of the thread that creates it, so for another namespace it is created on
    /// a thread inside that one ([`netns::run_in`]); reading it then works from any thread.
    /// Returns what was acted on.
    pub fn destroy_cgroups(&mut self, ids: &[u64], readers: usize, ns: Option<&Netns>) -> Result<Outcome, String> {
        self.stats.set(0, [0u64; 3], 0).map_err(|e| format!("{MAP_STATS}: {e}"))?;
        for &id in ids {
            self.cgroups.insert(id, 1, 0).map_err(|e| format!("{MAP_CGROUPS}: {e}"))?;
        }
        let result = self.run(readers.max(1), ns);
        for &id in ids {
            let _ = self.cgroups.remove(&id);
        }
        result?;
        let [seen, destroyed, failed] = self.stats.get(&0, 0).map_err(|e| format!("{MAP_STATS}: {e}"))?;
        let n = u32::try_from(seen.min(u64::from(LISTED))).unwrap_or(LISTED);
        let listed = (0..n).filter_map(|i| self.listed.get(&i, 0).ok()).filter_map(|r| parse_record(&r)).collect();
        Ok(Outcome { listed, seen, destroyed, failed })
    }

    fn run(&mut self, readers: usize, ns: Option<&Netns>) -> Result<(), String> {
        let program: &mut Iter =
            self.ebpf.program_mut(PROGRAM).ok_or("no program")?.try_into().map_err(|e| format!("{PROGRAM}: {e}"))?;
        let mut create = move || -> Result<Vec<std::fs::File>, String> {
            let mut files = Vec::with_capacity(readers);
            for _ in 0..readers {
                let link = program.attach().map_err(|e| format!("attaching {PROGRAM}: {}", super::error_chain(&e)))?;
                let link = program.take_link(link).map_err(|e| format!("{PROGRAM}: {e}"))?;
                files.push(link.into_file().map_err(|e| format!("creating the iterator: {e}"))?);
            }
            Ok(files)
        };
        let mut files = match ns {
            None => create()?,
            Some(ns) => netns::run_in(ns, create)??,
        };
        if readers == 1 {
            let file = files.first_mut().ok_or("no iterator")?;
            return drain(file);
        }
        self.run_sharded(files)
    }

    /// One thread per iterator, each registered under its thread id as one shard.
    fn run_sharded(&mut self, files: Vec<std::fs::File>) -> Result<(), String> {
        let count = u32::try_from(files.len()).unwrap_or(u32::MAX);
        let shards = &mut self.shards;
        std::thread::scope(|scope| {
            let mut ready = Vec::new();
            let mut handles = Vec::new();
            let mut errors = Vec::new();
            for (index, mut file) in (0u32..).zip(files) {
                let (tid_tx, tid_rx) = std::sync::mpsc::channel::<u32>();
                let (go_tx, go_rx) = std::sync::mpsc::channel::<bool>();
                handles.push(scope.spawn(move || -> Result<(), String> {
                    // Like the worker that asked: ahead of ordinary work on the node.
                    let _ = super::sys::prioritize_current_thread();
                    let _ = tid_tx.send(super::sys::gettid());
                    if !go_rx.recv().unwrap_or(false) {
                        return Ok(());
                    }
                    drain(&mut file)
                }));
                let Ok(tid) = tid_rx.recv() else {
                    errors.push("an iterator thread did not start".to_owned());
                    break;
                };
                if let Err(e) = shards.insert(tid, [index, count], 0) {
                    errors.push(format!("{MAP_SHARDS}: {e}"));
                    break;
                }
                ready.push((tid, go_tx));
            }
            // All shards registered, or none reads: a shard missing would leave its sockets alive
            // (the caller then falls back to netlink, which destroys them all).
            let go = errors.is_empty();
            for (_, tx) in &ready {
                let _ = tx.send(go);
            }
            for h in handles {
                match h.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errors.push(e),
                    Err(_) => errors.push("an iterator thread panicked".to_owned()),
                }
            }
            // Always: a thread id left in the map could be reused by a later reader, which would
            // then act on one shard only.
            for (tid, _) in &ready {
                let _ = shards.remove(tid);
            }
            if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
        })
    }
}

/// Runs the iterator to its end (it writes nothing: what it did is in the maps).
fn drain(file: &mut std::fs::File) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the iterator: {e}")),
        }
    }
}

fn take_array<V: aya::Pod>(ebpf: &mut Ebpf, name: &'static str) -> Result<Array<MapData, V>, String> {
    let map = ebpf.take_map(name).ok_or_else(|| format!("destroy.o has no map {name}"))?;
    Array::try_from(map).map_err(|e| format!("map {name}: {e}"))
}

fn take_map<K: aya::Pod, V: aya::Pod>(ebpf: &mut Ebpf, name: &'static str) -> Result<HashMap<MapData, K, V>, String> {
    let map = ebpf.take_map(name).ok_or_else(|| format!("destroy.o has no map {name}"))?;
    HashMap::try_from(map).map_err(|e| format!("map {name}: {e}"))
}

fn u16_le(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_le(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u64_le(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// The file range of the section `name` of a little-endian ELF64 object.
fn elf_section(elf: &[u8], name: &str) -> Option<(usize, usize)> {
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let shoff = usize::try_from(u64_le(elf, 0x28)?).ok()?;
    let shentsize = usize::from(u16_le(elf, 0x3a)?);
    let shnum = usize::from(u16_le(elf, 0x3c)?);
    let shstrndx = usize::from(u16_le(elf, 0x3e)?);
    let header = |i: usize| shoff.checked_add(i.checked_mul(shentsize)?);
    let strtab = usize::try_from(u64_le(elf, header(shstrndx)?.checked_add(0x18)?)?).ok()?;
    (0..shnum).find_map(|i| {
        let h = header(i)?;
        let name_at = strtab.checked_add(usize::try_from(u32_le(elf, h)?).ok()?)?;
        let rest = elf.get(name_at..)?;
        let end = rest.iter().position(|&c| c == 0)?;
        if rest.get(..end)? != name.as_bytes() {
            return None;
        }
        let offset = usize::try_from(u64_le(elf, h.checked_add(0x18)?)?).ok()?;
        let size = usize::try_from(u64_le(elf, h.checked_add(0x20)?)?).ok()?;
        Some((offset, size))
    })
}

/// Rewrites, in `section` of the object, every call to helper number `placeholder` into a call
/// of the kfunc whose vmlinux BTF id is `btf_id`; returns how many.
fn patch_kfunc_call(elf: &mut [u8], section: &str, placeholder: i32, btf_id: u32) -> Result<usize, String> {
    let (offset, size) = elf_section(elf, section).ok_or_else(|| format!("destroy.o has no section {section}"))?;
    let end = offset.checked_add(size).ok_or("bad section size")?;
    let code = elf.get_mut(offset..end).ok_or("section beyond the object")?;
    let mut patched = 0;
    for insn in code.chunks_exact_mut(8) {
        // BPF_JMP | BPF_CALL, no registers, no offset: a helper call; imm is its number.
        let is_helper_call = insn.first() == Some(&0x85) && insn.get(1) == Some(&0) && insn.get(2..4) == Some(&[0, 0]);
        if is_helper_call && u32_le(insn, 4).map(u32::cast_signed) == Some(placeholder) {
            if let Some(regs) = insn.get_mut(1) {
                *regs = BPF_PSEUDO_KFUNC_CALL << 4; // src_reg: a kfunc; dst_reg 0
            }
            if let Some(imm) = insn.get_mut(4..8) {
                imm.copy_from_slice(&btf_id.to_le_bytes());
            }
            patched += 1;
        }
    }
    Ok(patched)
}

/// Decodes one `struct destroyed` (native byte order).
fn parse_record(r: &[u8]) -> Option<Destroyed> {
    let ne64 = |at: usize| r.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_ne_bytes);
    let ne32 = |at: usize| r.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_ne_bytes);
    let cookie = ne64(0)?;
    let cgroup_id = ne64(8)?;
    let uid = ne32(16)?;
    let result = ne32(20)?.cast_signed();
    let family = *r.get(24)?;
    let state = *r.get(25)?;
    let local_port = u16::from_ne_bytes(r.get(26..28)?.try_into().ok()?);
    let remote_port = u16::from_be_bytes(r.get(28..30)?.try_into().ok()?);
    let ip = |b: &[u8]| -> Option<IpAddr> {
        match family {
            2 => Some(IpAddr::V4(Ipv4Addr::new(*b.first()?, *b.get(1)?, *b.get(2)?, *b.get(3)?))),
            10 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b.get(..16)?).ok()?))),
            _ => None,
        }
    };
    let local = SocketAddr::new(ip(r.get(32..48)?)?, local_port);
    let remote = SocketAddr::new(ip(r.get(48..64)?)?, remote_port);
    Some(Destroyed { sock: SockInfo::from_iterator(family, state, local, remote, uid, cookie, cgroup_id), result })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_calls_and_nothing_else_are_patched() {
        if OBJECT.is_empty() {
            eprintln!("SKIPPED: no destroy.o in this build");
            return;
        }
        let mut object = OBJECT.to_vec();
        let (offset, size) = elf_section(&object, SECTION).unwrap();
        assert!(size > 0 && size % 8 == 0);
        // clang may emit the one call in C once per branch that reaches it.
        let patched = patch_kfunc_call(&mut object, SECTION, PLACEHOLDER, 4242).unwrap();
        assert!(patched >= 1);
        let code = &object[offset..offset + size];
        let calls: Vec<usize> =
            (0..size / 8).filter(|&i| code[i * 8] == 0x85 && code[i * 8 + 1] == 0x20).map(|i| offset + i * 8).collect();
        assert_eq!(calls.len(), patched);
        for &at in &calls {
            assert_eq!(u32_le(&object, at + 4), Some(4242));
        }
        // Nothing outside those instructions changed, and a second pass finds nothing to patch.
        let changed: Vec<usize> = (0..object.len()).filter(|&i| object[i] != OBJECT[i]).collect();
        assert!(changed.iter().all(|&i| calls.iter().any(|&at| (at..at + 8).contains(&i))), "{changed:?}");
        assert_eq!(patch_kfunc_call(&mut object, SECTION, PLACEHOLDER, 4242).unwrap(), 0);
        assert!(patch_kfunc_call(&mut object, "no/such", PLACEHOLDER, 1).is_err());
    }

    #[test]
    fn decodes_a_record() {
        let mut r = vec![0u8; RECORD_LEN];
        r[0..8].copy_from_slice(&77u64.to_ne_bytes());
        r[8..16].copy_from_slice(&9876u64.to_ne_bytes());
        r[16..20].copy_from_slice(&1000u32.to_ne_bytes());
        r[20..24].copy_from_slice(&(-2i32).to_ne_bytes());
        r[24] = 2;
        r[25] = 1;
        r[26..28].copy_from_slice(&40000u16.to_ne_bytes());
        r[28..30].copy_from_slice(&8080u16.to_be_bytes());
        r[32..36].copy_from_slice(&[127, 0, 0, 1]);
        r[48..52].copy_from_slice(&[10, 0, 0, 2]);
        let d = parse_record(&r).unwrap();
        assert_eq!(d.result, -2);
        assert_eq!((d.sock.local, d.sock.remote), ("127.0.0.1:40000".parse().unwrap(), "10.0.0.2:8080".parse().unwrap()));
        assert_eq!((d.sock.cookie, d.sock.cgroup_id, d.sock.uid, d.sock.state), (77, Some(9876), 1000, 1));
        assert!(parse_record(&r[..RECORD_LEN - 1]).is_none(), "a short record");
        r[24] = 7;
        assert!(parse_record(&r).is_none(), "an unknown family");
    }
}
