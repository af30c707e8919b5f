//! Loading, attaching and pinning the quarantine programs (aya), and the map operations.
//!
//! Pins, under the pin directory (default `/sys/fs/bpf/interlock`):
//! - the four maps, by name (`LIBBPF_PIN_BY_NAME` in the C source): a restarted daemon reuses
//!   them, so quarantines written before the restart still hold;
//! - one link per program (`link_<program>`): the programs stay attached to the managed root
//!   while the daemon is down. A new daemon attaches its own programs first, then drops the old
//!   links, so there is no moment without enforcement.

use std::fs::File;
use std::path::{Path, PathBuf};

use aya::maps::{HashMap, MapData};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr};
use aya::{Ebpf, EbpfLoader};
use thiserror::Error;

use super::plan::{DestKey, QuarantineValue, RefusalsValue};

/// The object built by build.rs from `enforcer/bpf/quarantine.c`; empty when clang was missing.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/quarantine.o"));

/// The programs, in the order they are attached, with their hook. The packet filters
/// (`cgroup_skb`) come first: a quarantine written while a new daemon attaches its programs
/// silences live sockets as soon as it refuses new ones.
pub const PROGRAMS: [(&str, &str); 6] = [
    ("interlock_skb_ingress", "cgroup_skb/ingress"),
    ("interlock_skb_egress", "cgroup_skb/egress"),
    ("interlock_connect4", "cgroup/connect4"),
    ("interlock_connect6", "cgroup/connect6"),
    ("interlock_sendmsg4", "cgroup/sendmsg4"),
    ("interlock_sendmsg6", "cgroup/sendmsg6"),
];
pub const MAP_QUARANTINE: &str = "il_quarantine";
pub const MAP_DESTS: &str = "il_dests";
pub const MAP_REFUSALS: &str = "il_refusals";
pub const MAP_NETNS: &str = "il_netns";

#[derive(Debug, Error)]
pub enum BpfError {
    #[error("this build has no BPF object (clang was missing when it was built)")]
    NoObject,
    #[error("cannot load the BPF object: {0}")]
    Load(#[source] aya::EbpfError),
    #[error("the BPF object has no {0}")]
    Missing(&'static str),
    #[error("BPF program {name}: {source}")]
    Program { name: &'static str, source: aya::programs::ProgramError },
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: aya::maps::MapError },
    #[error("pinning {path}: {reason}")]
    Pin { path: PathBuf, reason: String },
    #[error("cannot open the cgroup {path}: {source}")]
    Cgroup { path: PathBuf, source: std::io::Error },
}

/// Whether this build carries the BPF programs.
pub fn object_available() -> bool {
    !OBJECT.is_empty()
}

/// The loaded, attached programs and their maps.
pub struct Programs {
    /// Keeps the programs loaded (and, without pins, attached).
    _ebpf: Ebpf,
    quarantine: HashMap<MapData, u64, QuarantineValue>,
    dests: HashMap<MapData, DestKey, u8>,
    refusals: HashMap<MapData, u64, RefusalsValue>,
    /// Cgroup id -> the cookie of the network namespace it last connected from.
    netns: HashMap<MapData, u64, u64>,
    /// Links held by this process when they could not be pinned.
    _unpinned: Vec<FdLink>,
    pin_dir: Option<PathBuf>,
    /// What is attached where, for receipts and the status.
    pub attached: Vec<String>,
    /// Old links (of a previous daemon) replaced at start.
    pub replaced: usize,
}

impl std::fmt::Debug for Programs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Programs").field("pin_dir", &self.pin_dir).field("attached", &self.attached).finish()
    }
}

fn link_pin(pin_dir: &Path, program: &str) -> PathBuf {
    pin_dir.join(format!("link_{program}"))
}

impl Programs {
    /// Loads the object (reusing pinned maps in `pin_dir`), attaches every program to the
    /// cgroup `root` and pins the links. `pin_dir` `None`: nothing is pinned, enforcement lasts
    /// as long as this process.
    pub fn load_and_attach(root: &Path, pin_dir: Option<&Path>) -> Result<Self, BpfError> {
        if OBJECT.is_empty() {
            return Err(BpfError::NoObject);
        }
        let mut loader = EbpfLoader::new();
        if let Some(dir) = pin_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| BpfError::Pin { path: dir.to_owned(), reason: e.to_string() })?;
            loader.default_map_pin_directory(dir);
        }
        let mut ebpf = loader.load(OBJECT).map_err(BpfError::Load)?;
        let cgroup = File::open(root).map_err(|source| BpfError::Cgroup { path: root.to_owned(), source })?;
        let mut attached = Vec::new();
        let mut unpinned = Vec::new();
        let mut replaced = 0;
        for (name, hook) in PROGRAMS {
            // A bpf_link (Linux 5.7+, which aya uses when it can): cgroup links always run next
            // to the cgroup's other programs (the kernel refuses flags on them, so "Single" is
            // the right mode here), so a previous daemon's link keeps enforcing until the new
            // one is in place, and other tools' programs on the cgroup are left alone.
            let link = attach_one(&mut ebpf, name, hook, &cgroup)?;
            match pin_dir {
                Some(dir) => {
                    let path = link_pin(dir, name);
                    if path.exists() {
                        // The old link detaches when its pin and our handle are gone.
                        if let Ok(old) = PinnedLink::from_pin(&path) {
                            drop(old.unpin());
                            replaced += 1;
                        }
                        let _ = std::fs::remove_file(&path);
                    }
                    link.pin(&path).map_err(|e| BpfError::Pin { path: path.clone(), reason: e.to_string() })?;
                    attached.push(format!("{name} ({hook}) on {} (link pinned at {})", root.display(), path.display()));
                }
                None => {
                    unpinned.push(link);
                    attached.push(format!("{name} ({hook}) on {} (not pinned)", root.display()));
                }
            }
        }
        let quarantine = take_map(&mut ebpf, MAP_QUARANTINE)?;
        let dests = take_map(&mut ebpf, MAP_DESTS)?;
        let refusals = take_map(&mut ebpf, MAP_REFUSALS)?;
        let netns = take_map(&mut ebpf, MAP_NETNS)?;
        Ok(Self {
            _ebpf: ebpf,
            quarantine,
            dests,
            refusals,
            netns,
            _unpinned: unpinned,
            pin_dir: pin_dir.map(Path::to_owned),
            attached,
            replaced,
        })
    }

    pub fn put_quarantine(&mut self, cgroup_id: u64, value: &QuarantineValue) -> Result<(), BpfError> {
        self.quarantine
            .insert(cgroup_id, *value, 0)
            .map_err(|source| BpfError::Map { name: MAP_QUARANTINE, source })
    }

    pub fn remove_quarantine(&mut self, cgroup_id: u64) -> Result<bool, BpfError> {
        match self.quarantine.remove(&cgroup_id) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(e) if is_enoent(&e) => Ok(false),
            Err(source) => Err(BpfError::Map { name: MAP_QUARANTINE, source }),
        }
    }

    pub fn quarantines(&self) -> Vec<(u64, QuarantineValue)> {
        self.quarantine.iter().filter_map(Result::ok).collect()
    }

    pub fn put_dest(&mut self, key: &DestKey) -> Result<(), BpfError> {
        self.dests.insert(*key, 1, 0).map_err(|source| BpfError::Map { name: MAP_DESTS, source })
    }

    pub fn dest_keys(&self) -> Vec<DestKey> {
        self.dests.keys().filter_map(Result::ok).collect()
    }

    pub fn remove_dest(&mut self, key: &DestKey) -> Result<(), BpfError> {
        match self.dests.remove(key) {
            Ok(()) => Ok(()),
            Err(e) if is_enoent(&e) => Ok(()),
            Err(source) => Err(BpfError::Map { name: MAP_DESTS, source }),
        }
    }

    pub fn init_refusals(&mut self, tag: u64) -> Result<(), BpfError> {
        // BPF_NOEXIST (1): a counter that already counts (same decision again) is kept.
        match self.refusals.insert(tag, [0u8; 16], 1) {
            Ok(()) => Ok(()),
            Err(aya::maps::MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            Err(source) => Err(BpfError::Map { name: MAP_REFUSALS, source }),
        }
    }

    pub fn refusals(&self, tag: u64) -> Option<RefusalsValue> {
        self.refusals.get(&tag, 0).ok()
    }

    pub fn remove_refusals(&mut self, tag: u64) {
        let _ = self.refusals.remove(&tag);
    }

    /// The cookie of the network namespace the cgroup last connected (or sent) from, if the
    /// programs saw it do so.
    pub fn netns_of(&self, cgroup_id: u64) -> Option<u64> {
        self.netns.get(&cgroup_id, 0).ok()
    }

    /// Detaches everything and removes every pin (release on shutdown). The programs unload
    /// when this value drops.
    pub fn remove_pins(&mut self) -> Vec<String> {
        let mut removed = Vec::new();
        let Some(dir) = &self.pin_dir else { return removed };
        for (name, _) in PROGRAMS {
            let path = link_pin(dir, name);
            if let Ok(link) = PinnedLink::from_pin(&path)
                && link.unpin().is_ok()
            {
                removed.push(path.display().to_string());
            }
        }
        for map in [MAP_QUARANTINE, MAP_DESTS, MAP_REFUSALS, MAP_NETNS] {
            let path = dir.join(map);
            if std::fs::remove_file(&path).is_ok() {
                removed.push(path.display().to_string());
            }
        }
        if std::fs::remove_dir(dir).is_ok() {
            removed.push(dir.display().to_string());
        }
        removed
    }
}

/// Loads and attaches one program to `cgroup`, returning its link.
fn attach_one(ebpf: &mut Ebpf, name: &'static str, hook: &str, cgroup: &File) -> Result<FdLink, BpfError> {
    let err = |source| BpfError::Program { name, source };
    let program = ebpf.program_mut(name).ok_or(BpfError::Missing(name))?;
    let link = match hook.strip_prefix("cgroup_skb/") {
        Some(direction) => {
            let program: &mut CgroupSkb = program.try_into().map_err(err)?;
            program.load().map_err(err)?;
            let attach_type =
                if direction == "ingress" { CgroupSkbAttachType::Ingress } else { CgroupSkbAttachType::Egress };
            let id = program.attach(cgroup, attach_type, CgroupAttachMode::Single).map_err(err)?;
            let link = program.take_link(id).map_err(err)?;
            FdLink::try_from(link)
        }
        None => {
            let program: &mut CgroupSockAddr = program.try_into().map_err(err)?;
            program.load().map_err(err)?;
            let id = program.attach(cgroup, CgroupAttachMode::Single).map_err(err)?;
            let link = program.take_link(id).map_err(err)?;
            FdLink::try_from(link)
        }
    };
    link.map_err(|e: aya::programs::links::LinkError| BpfError::Program {
        name,
        source: aya::programs::ProgramError::IOError(std::io::Error::other(e.to_string())),
    })
}

fn is_enoent(e: &aya::maps::MapError) -> bool {
    matches!(e, aya::maps::MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENOENT))
}

fn take_map<K: aya::Pod, V: aya::Pod>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, BpfError> {
    let map = ebpf.take_map(name).ok_or(BpfError::Missing(name))?;
    HashMap::try_from(map).map_err(|source| BpfError::Map { name, source })
}
