//! Workloads: the enforcer's managed cgroup root and the cgroups under it.
//!
//! Locally a workload is a cgroup v2 directory `<root>/<workload>` (the stand-in for a pod);
//! `interlock exec --workload W -- CMD` puts a command in it. The enforcer quarantines only
//! cgroups under this root, never the host's own: the root must be a strict subdirectory of a
//! cgroup2 mount and must not contain the enforcer itself.
//!
//! A cgroup's id, as BPF (`bpf_get_current_cgroup_id`) and sock_diag (`INET_DIAG_CGROUP_ID`) see
//! it, is the inode number of its directory on the cgroup2 filesystem (kernfs node id).

use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

/// The default managed root (the cgroup v2 hierarchy of this kind of host is mounted there).
pub const DEFAULT_CGROUP_ROOT: &str = "/sys/fs/cgroup/unified/interlock";
/// Longest workload name.
pub const MAX_NAME: usize = 64;
/// Deepest cgroup tree walked under a workload.
const MAX_DEPTH: usize = 16;

#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error(
        "invalid workload name {0:?}: use 1 to {MAX_NAME} of a-z A-Z 0-9 . _ -, not starting with a dot"
    )]
    InvalidName(String),
    #[error("the managed cgroup root {0} is not strictly under a cgroup2 mount (see /proc/self/mounts)")]
    NotCgroup2(PathBuf),
    #[error("the managed cgroup root {root} contains this process's own cgroup {own}: refusing to manage it")]
    ContainsSelf { root: PathBuf, own: String },
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error("no workload {0:?} under the managed root")]
    Unknown(String),
}

/// Checks a workload name: it becomes a directory name, so no separators and no dot files.
pub fn validate_name(name: &str) -> Result<(), WorkloadError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok { Ok(()) } else { Err(WorkloadError::InvalidName(name.to_owned())) }
}

/// The cgroup2 mount point that strictly contains `path`, from a /proc/self/mounts text.
pub fn cgroup2_mount_of(mounts: &str, path: &Path) -> Option<PathBuf> {
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, dir, fstype) = (f.next()?, f.next()?, f.next()?);
            (fstype == "cgroup2").then(|| PathBuf::from(dir))
        })
        .filter(|m| path.starts_with(m) && path != m)
        .max_by_key(|m| m.as_os_str().len())
}

/// The managed root.
#[derive(Debug, Clone)]
pub struct ManagedRoot {
    path: PathBuf,
    /// Where cgroup2 is mounted (to turn /proc/<pid>/cgroup paths into directories).
    mount: PathBuf,
}

impl ManagedRoot {
    /// Checks `path` (a strict subdirectory of a cgroup2 mount, not containing this process)
    /// and creates it if needed.
    pub fn open(path: &Path) -> Result<Self, WorkloadError> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").map_err(|source| WorkloadError::Io {
            what: "reading",
            path: "/proc/self/mounts".into(),
            source,
        })?;
        let mount = cgroup2_mount_of(&mounts, path).ok_or_else(|| WorkloadError::NotCgroup2(path.to_owned()))?;
        let root = Self { path: path.to_owned(), mount };
        if let Some(own) = own_cgroup() {
            let own_dir = root.mount.join(own.trim_start_matches('/'));
            if own_dir.starts_with(&root.path) {
                return Err(WorkloadError::ContainsSelf { root: root.path, own });
            }
        }
        std::fs::create_dir_all(&root.path).map_err(|source| WorkloadError::Io {
            what: "creating the managed cgroup root",
            path: root.path.clone(),
            source,
        })?;
        Ok(root)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn workload_dir(&self, workload: &str) -> Result<PathBuf, WorkloadError> {
        validate_name(workload)?;
        Ok(self.path.join(workload))
    }

    /// Creates the workload's cgroup (if needed) and returns its directory.
    pub fn create(&self, workload: &str) -> Result<PathBuf, WorkloadError> {
        let dir = self.workload_dir(workload)?;
        std::fs::create_dir_all(&dir).map_err(|source| WorkloadError::Io {
            what: "creating the workload cgroup",
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    /// Moves process `pid` into the workload's cgroup.
    pub fn join(&self, workload: &str, pid: u32) -> Result<(), WorkloadError> {
        let procs = self.create(workload)?.join("cgroup.procs");
        std::fs::write(&procs, format!("{pid}\n")).map_err(|source| WorkloadError::Io {
            what: "moving the process into",
            path: procs,
            source,
        })
    }

    /// The workload a cgroup id belongs to (the cgroup itself or a descendant of
    /// `<root>/<workload>`), or `None` for any cgroup outside the managed root.
    pub fn workload_of(&self, cgroup_id: u64) -> Option<String> {
        let entries = std::fs::read_dir(&self.path).ok()?;
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            if !kind.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if cgroup_ids_under(&entry.path()).contains(&cgroup_id) {
                return Some(name);
            }
        }
        None
    }

    /// Cgroup ids of the workload's cgroup and its descendants.
    pub fn cgroup_ids(&self, workload: &str) -> Result<Vec<u64>, WorkloadError> {
        let dir = self.workload_dir(workload)?;
        if !dir.is_dir() {
            return Err(WorkloadError::Unknown(workload.to_owned()));
        }
        Ok(cgroup_ids_under(&dir))
    }

    /// The processes of the cgroups `ids` under the managed root (as this process's PID
    /// namespace numbers them: none when it does not share theirs).
    pub fn procs_of(&self, ids: &[u64]) -> Vec<u32> {
        let mut out = Vec::new();
        walk_cgroups(&self.path, |d| {
            if std::fs::metadata(d).is_ok_and(|m| ids.contains(&m.ino())) {
                read_procs(d, &mut out);
            }
            true
        });
        out
    }

    /// Removes the workload's cgroup (it must have no processes left).
    pub fn remove(&self, workload: &str) -> Result<(), WorkloadError> {
        let dir = self.workload_dir(workload)?;
        std::fs::remove_dir(&dir).map_err(|source| WorkloadError::Io {
            what: "removing the workload cgroup",
            path: dir,
            source,
        })
    }
}

/// Inode numbers (cgroup ids) of `dir` and its subdirectories.
fn cgroup_ids_under(dir: &Path) -> Vec<u64> {
    let mut out = Vec::new();
    walk_cgroups(dir, |d| {
        let Ok(meta) = std::fs::metadata(d) else { return false };
        out.push(meta.ino());
        true
    });
    out
}

/// Visits `dir` and the cgroups below it, at most [`MAX_DEPTH`] levels down; `visit` returns
/// whether to descend into the one it was given.
fn walk_cgroups(dir: &Path, mut visit: impl FnMut(&Path) -> bool) {
    let mut stack = vec![(dir.to_owned(), 0usize)];
    while let Some((d, depth)) = stack.pop() {
        if !visit(&d) || depth >= MAX_DEPTH {
            continue;
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((e.path(), depth.saturating_add(1)));
                }
            }
        }
    }
}

/// This process's cgroup v2 path (the `0::` line of /proc/self/cgroup).
fn own_cgroup() -> Option<String> {
    proc_cgroup("self")
}

/// A process's cgroup v2 path, e.g. `/interlock/agent-1`.
pub fn proc_cgroup(pid: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_owned)
}

/// A process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SocketOwner {
    pub pid: u32,
    pub comm: String,
    /// Its cgroup v2 path.
    pub cgroup: Option<String>,
}

/// The first process with an open file descriptor on socket `inode`, among every process of
/// the host (a walk of every /proc/<pid>/fd: tens of milliseconds on a node with 10,000 open
/// sockets). Done after the kernel acted, for the receipt, never before; for a caller in a
/// managed workload, [`socket_owner_among`] the workload's processes ([`procs_under`]) instead.
pub fn socket_owner(inode: u32) -> Option<SocketOwner> {
    let pids = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()));
    socket_owner_among(inode, pids)
}

/// The first of `pids` with an open file descriptor on socket `inode` (only their
/// /proc/<pid>/fd are read).
pub fn socket_owner_among(inode: u32, pids: impl IntoIterator<Item = u32>) -> Option<SocketOwner> {
    let target = format!("socket:[{inode}]");
    for pid in pids {
        let dir = PathBuf::from(format!("/proc/{pid}"));
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else { continue };
        let holds = fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()));
        if holds {
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_owned();
            return Some(SocketOwner { pid, comm, cgroup: proc_cgroup(&pid.to_string()) });
        }
    }
    None
}

/// The processes (`cgroup.procs`) of the cgroup `dir` and of its descendants, in that order: where
/// the holder of a socket created in one of them is looked for. A process that moved out of the
/// tree after creating the socket is not found (the receipt then names no process).
pub fn procs_under(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    walk_cgroups(dir, |d| {
        read_procs(d, &mut out);
        true
    });
    out
}

/// Appends the processes of the cgroup `dir` itself (its `cgroup.procs`).
fn read_procs(dir: &Path, out: &mut Vec<u32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
}

/// Why `interlock exec` could not run its command.
#[derive(Debug, Error)]
pub enum ExecError {
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("no command to run")]
    NoCommand,
    #[error("cannot run {program}: {source}")]
    Exec { program: String, source: io::Error },
}

/// `interlock exec`: creates (or joins) the workload's cgroup, moves this process into it and
/// replaces it with `argv`. Returns only on failure.
pub fn exec(root: &Path, workload: &str, argv: &[String]) -> Result<std::convert::Infallible, ExecError> {
    let (program, args) = argv.split_first().ok_or(ExecError::NoCommand)?;
    let root = ManagedRoot::open(root)?;
    root.join(workload, std::process::id())?;
    let source = Command::new(program).args(args).exec();
    Err(ExecError::Exec { program: program.clone(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_names() {
        for ok in ["a", "agent-1", "triage_bot.v2", &"x".repeat(MAX_NAME)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "ü", &"x".repeat(MAX_NAME + 1), "a\0"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_owner_of_a_socket_is_looked_for_among_the_given_processes_only() {
        use std::os::unix::fs::MetadataExt as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&listener);
        let inode = u32::try_from(std::fs::metadata(format!("/proc/self/fd/{fd}")).unwrap().ino()).unwrap();
        let me = std::process::id();
        let found = socket_owner_among(inode, [me]).expect("this process holds the socket");
        assert_eq!(found.pid, me);
        assert!(!found.comm.is_empty());
        // Not among the processes searched: not found, even though it exists (the restriction
        // is real), and the host-wide walk finds it.
        assert_eq!(socket_owner_among(inode, [1]), None);
        assert_eq!(socket_owner_among(inode, std::iter::empty()), None);
        assert_eq!(socket_owner(inode).map(|o| o.pid), Some(me));
        // A socket nobody holds.
        drop(listener);
        assert_eq!(socket_owner_among(inode, [me]), None);
    }

    #[test]
    fn the_processes_of_a_cgroup_tree_are_read_from_every_cgroup_procs_in_it() {
        let dir = std::env::temp_dir().join(format!("interlock-procs-under-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("child/grandchild")).unwrap();
        std::fs::create_dir_all(dir.join("empty")).unwrap();
        std::fs::write(dir.join("cgroup.procs"), "10\n11\n").unwrap();
        std::fs::write(dir.join("child/cgroup.procs"), "20\n").unwrap();
        std::fs::write(dir.join("child/grandchild/cgroup.procs"), "30\nnot-a-pid\n").unwrap();
        let mut pids = procs_under(&dir);
        // The tree's own cgroup first.
        assert_eq!(pids.get(..2), Some(&[10, 11][..]));
        pids.sort_unstable();
        assert_eq!(pids, vec![10, 11, 20, 30]);
        assert!(procs_under(&dir.join("no-such-cgroup")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_root_must_be_strictly_under_a_cgroup2_mount() {
        let mounts = "cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n";
        let m = |p: &str| cgroup2_mount_of(mounts, Path::new(p));
        assert_eq!(m("/sys/fs/cgroup/unified/interlock"), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(m("/sys/fs/cgroup/unified"), None, "the host's own root is never managed");
        assert_eq!(m("/sys/fs/cgroup/cpu/x"), None, "cgroup v1");
        assert_eq!(m("/sys/fs/cgroup/unifiedx/a"), None, "a prefix that is not a parent");
        assert_eq!(m("/tmp/x"), None);
    }
}
