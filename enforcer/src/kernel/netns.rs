//! The network namespace a workload's sockets live in, and socket work done from inside it.
//!
//! A pod has a network namespace of its own, and its sockets are in that namespace's TCP table.
//! The socket iterator and sock_diag both read the table of the namespace of the thread that
//! opens them, so the enforcer, running in another namespace, neither sees nor destroys them
//! from where it is. The quarantine programs record, per cgroup, the cookie of the namespace it
//! last connected or sent from (`il_netns`, enforcer/bpf/quarantine.c); this module finds the
//! namespace file with that cookie and runs the socket work on a short-lived thread that entered
//! it (setns, CAP_SYS_ADMIN). The thread goes away with the work, so no thread of the daemon is
//! ever left in a workload's namespace, and nothing here keeps a namespace alive after its pod.
//!
//! Which namespace: for a workload (a set of cgroups), the one the programs saw it connect from;
//! for an event's connection, the namespace whose interfaces hold the caller's address (a pod's
//! IP is in its own namespace only).
//!
//! Where namespace files are found: `/proc/<pid>/ns/net` of the workload's own processes (when
//! the daemon shares their PID namespace: the local demo, or a DaemonSet with `hostPID`), then
//! every file of the netns directory (`--netns-dir`, default `/var/run/netns`, where CNI plugins
//! keep pods' namespaces; mounted from the host in the DaemonSet). A file's cookie and addresses
//! are read by entering it and remembered by the file's inode (a namespace read before it had an
//! address is read again on a miss, at most once a second); the thread that does the work reads the cookie again from inside, so a
//! remembered cookie gone stale (a namespace inode number reused) makes the work refuse, never
//! act in another namespace.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::sys;

/// Where CNI plugins keep pods' network namespaces (containerd, CRI-O, `ip netns`).
pub const DEFAULT_NETNS_DIR: &str = "/var/run/netns";

/// Most files of the netns directory looked at for one lookup (a node runs a few hundred pods).
const MAX_DIR_ENTRIES: usize = 4096;
/// How often, at most, a miss looks at the directory again (for namespaces new since, or read
/// before they had an address): an event from a caller on another node misses every time.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// A network namespace other than the enforcer's, open.
#[derive(Debug)]
pub struct Netns {
    file: File,
    pub cookie: u64,
    /// The file it was opened from, for receipts.
    pub path: PathBuf,
}

/// The enforcer's own namespace and what it learnt of others.
#[derive(Debug)]
pub struct Namespaces {
    own: u64,
    own_inode: Option<(u64, u64)>,
    dir: Option<PathBuf>,
    /// (st_dev, st_ino) of a namespace file -> what entering it told.
    known: HashMap<(u64, u64), Known>,
    last_rescan: Option<Instant>,
}

#[derive(Debug)]
struct Known {
    cookie: u64,
    addrs: Vec<IpAddr>,
}

/// What [`Namespaces::find`] found.
#[derive(Debug, Default)]
pub struct Found {
    /// Whether the workload has sockets in the enforcer's own namespace (recorded, or a process
    /// of it runs there).
    pub own: bool,
    /// The other namespaces, one per cookie.
    pub others: Vec<Netns>,
    /// Recorded cookies of namespaces no file was found for.
    pub missing: Vec<u64>,
}

impl Namespaces {
    /// `dir`: the netns directory (`None`, or a directory that does not exist: none).
    pub fn new(dir: Option<PathBuf>) -> io::Result<Self> {
        let own = sys::current_netns_cookie()?;
        let own_inode = std::fs::metadata("/proc/thread-self/ns/net").ok().map(|m| (m.dev(), m.ino()));
        Ok(Self { own, own_inode, dir, known: HashMap::new(), last_rescan: None })
    }

    /// The enforcer's own namespace's cookie.
    pub fn own(&self) -> u64 {
        self.own
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The namespaces a workload's sockets are in: those whose cookie is in `recorded` (what the
    /// programs saw it connect from), and those its processes `pids` run in.
    pub fn find(&mut self, recorded: &[u64], pids: &[u32]) -> Found {
        let mut found = Found { own: recorded.contains(&self.own), ..Found::default() };
        let mut wanted: Vec<u64> = recorded.iter().copied().filter(|&c| c != self.own).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut seen_inodes = Vec::new();
        for pid in pids {
            let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            let Ok(file) = File::open(&path) else { continue };
            let Ok(meta) = file.metadata() else { continue };
            let inode = (meta.dev(), meta.ino());
            if seen_inodes.contains(&inode) {
                continue;
            }
            seen_inodes.push(inode);
            if Some(inode) == self.own_inode {
                found.own = true;
                continue;
            }
            let Some(cookie) = self.cookie_of(&file, inode) else { continue };
            if cookie == self.own {
                found.own = true;
            } else if !found.others.iter().any(|n| n.cookie == cookie) {
                wanted.retain(|&c| c != cookie);
                found.others.push(Netns { file, cookie, path });
            }
        }
        if !wanted.is_empty() {
            for (path, file, inode) in self.dir_files() {
                let Some(cookie) = self.cookie_of(&file, inode) else { continue };
                if wanted.contains(&cookie) {
                    wanted.retain(|&c| c != cookie);
                    found.others.push(Netns { file, cookie, path });
                    if wanted.is_empty() {
                        break;
                    }
                }
            }
        }
        found.missing = wanted;
        found
    }

    /// The namespace of the netns directory whose interfaces hold `ip`: where a socket with
    /// that local address is, on this node. Never for a loopback or unspecified address (every
    /// namespace has those), nor the enforcer's own.
    pub fn holding(&mut self, ip: IpAddr) -> Option<Netns> {
        let ip = ip.to_canonical();
        if ip.is_loopback() || ip.is_unspecified() {
            return None;
        }
        self.dir.as_ref()?;
        for rescan in [false, true] {
            if rescan {
                if self.last_rescan.is_some_and(|t| t.elapsed() < RESCAN_EVERY) {
                    return None;
                }
                self.last_rescan = Some(Instant::now());
            }
            for (path, file, inode) in self.dir_files() {
                if Some(inode) == self.own_inode {
                    continue;
                }
                // A namespace read before its pod got an address (CNI adds it just after creating
                // the namespace) is read again; one with an address keeps it for its life.
                if rescan && self.known.get(&inode).is_some_and(|k| !k.addrs.iter().any(|a| !a.is_loopback())) {
                    self.known.remove(&inode);
                }
                let Some(known) = self.info_of(&file, inode) else { continue };
                if known.addrs.contains(&ip) {
                    let cookie = known.cookie;
                    return Some(Netns { file, cookie, path });
                }
            }
        }
        None
    }

    /// The files of the netns directory, open, with their (st_dev, st_ino); at most
    /// [`MAX_DIR_ENTRIES`]. None without a directory.
    fn dir_files(&self) -> impl Iterator<Item = (PathBuf, File, (u64, u64))> + use<> {
        let entries = self.dir.as_ref().and_then(|d| std::fs::read_dir(d).ok());
        entries.into_iter().flatten().flatten().take(MAX_DIR_ENTRIES).filter_map(|entry| {
            let path = entry.path();
            let file = File::open(&path).ok()?;
            let meta = file.metadata().ok()?;
            Some((path, file, (meta.dev(), meta.ino())))
        })
    }

    /// The cookie of the namespace `file` (a file that is not a network namespace: `None`).
    fn cookie_of(&mut self, file: &File, inode: (u64, u64)) -> Option<u64> {
        self.info_of(file, inode).map(|k| k.cookie)
    }

    fn info_of(&mut self, file: &File, inode: (u64, u64)) -> Option<&Known> {
        if !self.known.contains_key(&inode) {
            // Pods come and go: forget everything rather than grow without bound.
            if self.known.len() >= MAX_DIR_ENTRIES.saturating_mul(2) {
                self.known.clear();
            }
            let read = || -> io::Result<Known> {
                let cookie = sys::current_netns_cookie()?;
                let addrs = sys::local_addresses()?.into_iter().map(|a| a.to_canonical()).collect();
                Ok(Known { cookie, addrs })
            };
            let known = in_namespace(file, read).ok()?.ok()?;
            self.known.insert(inode, known);
        }
        self.known.get(&inode)
    }
}

/// Runs `work` on a new thread inside `ns`, after checking from there that the namespace is the
/// one meant (its cookie).
pub fn run_in<T: Send>(ns: &Netns, work: impl FnOnce() -> T + Send) -> Result<T, String> {
    let cookie = ns.cookie;
    let checked = move || match sys::current_netns_cookie() {
        Ok(c) if c == cookie => Ok(work()),
        Ok(c) => Err(format!("the namespace file now holds another namespace (cookie {c}, not {cookie})")),
        Err(e) => Err(format!("reading the namespace's cookie: {e}")),
    };
    in_namespace(&ns.file, checked).map_err(|e| format!("entering {}: {e}", ns.path.display()))?
}

/// Runs `work` on a scoped thread that first entered the namespace `file`.
fn in_namespace<T: Send>(file: &File, work: impl FnOnce() -> T + Send) -> io::Result<T> {
    std::thread::scope(|scope| {
        let handle = scope.spawn(move || -> io::Result<T> {
            sys::enter_netns(file)?;
            // Like the worker that asked: ahead of ordinary work on the node.
            let _ = sys::prioritize_current_thread();
            Ok(work())
        });
        handle.join().unwrap_or_else(|_| Err(io::Error::other("the namespace thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_network_namespace_has_no_cookie() {
        let mut ns = match Namespaces::new(None) {
            Ok(ns) => ns,
            Err(e) => {
                eprintln!("SKIPPED: no SO_NETNS_COOKIE here: {e}");
                return;
            }
        };
        let file = File::open("/proc/self/stat").unwrap_or_else(|e| panic!("{e}"));
        let meta = file.metadata().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ns.cookie_of(&file, (meta.dev(), meta.ino())), None);
    }

    #[test]
    fn the_own_namespace_is_found_from_this_process_and_from_its_cookie() {
        let Ok(mut ns) = Namespaces::new(None) else {
            eprintln!("SKIPPED: no SO_NETNS_COOKIE here");
            return;
        };
        let found = ns.find(&[], &[std::process::id()]);
        assert!(found.own && found.others.is_empty() && found.missing.is_empty(), "{found:?}");
        let own = ns.own();
        let found = ns.find(&[own, own.wrapping_add(1_000_000)], &[]);
        assert!(found.own, "{found:?}");
        assert_eq!(found.missing, vec![own.wrapping_add(1_000_000)], "a cookie with no file is reported missing");
    }

    /// A namespace as CNI plugins leave one (`ip netns add`: a file in /var/run/netns) with an
    /// address, and no process in it: found from its cookie, read independently by a process run
    /// inside it, and from its address; an address no namespace has is not.
    #[test]
    fn a_namespace_of_the_netns_directory_is_found_by_cookie_and_by_address() {
        use std::process::Command;
        let name = format!("il-unit-{}", std::process::id());
        let ip = |args: &[&str]| Command::new("ip").args(args).output().is_ok_and(|o| o.status.success());
        if !ip(&["netns", "add", &name]) {
            eprintln!("SKIPPED: cannot create a network namespace here (not root, or no iproute2)");
            return;
        }
        struct Gone(String);
        impl Drop for Gone {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip").args(["netns", "del", &self.0]).status();
            }
        }
        let _gone = Gone(name.clone());
        let last = u8::try_from(std::process::id() % 200).unwrap_or(0) + 20;
        let addr = format!("10.214.{last}.7");
        assert!(ip(&["-n", &name, "addr", "add", &format!("{addr}/32"), "dev", "lo"]));
        let script = "import socket,struct;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);print(struct.unpack('Q',s.getsockopt(socket.SOL_SOCKET,71,8))[0])";
        let out = Command::new("ip").args(["netns", "exec", &name, "python3", "-c", script]).output().unwrap_or_else(|e| panic!("{e}"));
        let cookie: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|e| panic!("{e}: {out:?}"));

        let mut ns = Namespaces::new(Some(PathBuf::from(DEFAULT_NETNS_DIR))).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(ns.own(), cookie);
        let found = ns.find(&[cookie], &[]);
        assert!(!found.own && found.missing.is_empty(), "{found:?}");
        let [netns] = found.others.as_slice() else { panic!("one namespace: {found:?}") };
        assert_eq!((netns.cookie, netns.path.clone()), (cookie, Path::new(DEFAULT_NETNS_DIR).join(&name)));
        assert_eq!(run_in(netns, sys::current_netns_cookie).map(Result::ok), Ok(Some(cookie)), "work runs inside it");

        let holder = ns.holding(addr.parse().unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|| panic!("no namespace holds {addr}"));
        assert_eq!(holder.cookie, cookie);
        assert!(ns.holding("10.214.250.250".parse().unwrap_or_else(|e| panic!("{e}"))).is_none());
        assert!(ns.holding("127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"))).is_none(), "loopback is in every namespace");
    }
}
