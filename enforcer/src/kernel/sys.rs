//! The few raw system calls the kernel module makes itself (aya makes the `bpf()` ones): a
//! netlink socket for sock_diag, CLOCK_MONOTONIC (the clock `bpf_ktime_get_ns` reads),
//! entering a network namespace and reading its cookie and addresses, and mounting bpffs. The
//! only `unsafe` code of the workspace; each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns()`, so quarantine deadlines
/// written by the daemon are compared by the program on the same clock.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// A netlink socket talking to the kernel (destination port id 0).
#[derive(Debug)]
pub struct Netlink {
    fd: OwnedFd,
}

impl Netlink {
    /// Opens a `NETLINK_*` socket with a receive timeout, so a kernel that never answers cannot
    /// hang the enforcer.
    pub fn open(protocol: libc::c_int, timeout: Duration) -> io::Result<Self> {
        // SAFETY: plain socket(2) call with constant arguments; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let tv = libc::timeval {
            tv_sec: libc::time_t::try_from(timeout.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_usec: libc::suseconds_t::from(timeout.subsec_micros().min(999_999).cast_signed()),
        };
        let len = libc::socklen_t::try_from(size_of::<libc::timeval>()).unwrap_or(0);
        // SAFETY: `tv` lives across the call and `len` is its exact size.
        let rc = unsafe {
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, (&raw const tv).cast(), len)
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Sends one whole message to the kernel.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: the pointer and length describe `msg`, which outlives the call.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        match usize::try_from(n) {
            Ok(n) if n == msg.len() => Ok(()),
            Ok(_) => Err(io::Error::new(io::ErrorKind::WriteZero, "short netlink send")),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    /// Receives one datagram (one or more netlink messages) into `buf`.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the pointer and length describe `buf`, which is writable and outlives the call.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

/// Moves the calling thread (only it: network namespaces are per thread) into the network
/// namespace `ns`, an nsfs file (`/proc/<pid>/ns/net`, `/var/run/netns/<name>`). Needs
/// CAP_SYS_ADMIN over that namespace.
pub fn enter_netns(ns: &std::fs::File) -> io::Result<()> {
    // SAFETY: `ns` is an open file for the duration of the call; setns(2) only reads the
    // descriptor and changes the calling thread's namespace, no memory is passed.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SO_NETNS_COOKIE` (Linux 5.14+), which the libc crate does not define; the same number on
/// every architecture (include/uapi/asm-generic/socket.h).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The cookie of the calling thread's network namespace: what `bpf_get_netns_cookie()` returns
/// for a socket there. Read from a throwaway socket.
pub fn current_netns_cookie() -> io::Result<u64> {
    // SAFETY: socket(2) takes no pointers; a negative result is checked below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor we just opened and own alone; OwnedFd closes it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut cookie: u64 = 0;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<u64>()).unwrap_or(8);
    // SAFETY: `cookie` and `len` are valid for writes and `len` holds the size of `cookie`.
    let rc = unsafe {
        libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_NETNS_COOKIE, (&raw mut cookie).cast(), &mut len)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cookie)
}

/// The IP addresses of the interfaces of the calling thread's network namespace (getifaddrs(3),
/// which asks the kernel over a netlink socket opened in that namespace).
pub fn local_addresses() -> io::Result<Vec<std::net::IpAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes the head of a list it allocated into `head`; it is freed below
    // with freeifaddrs and not used after.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut node = head;
    while !node.is_null() {
        // SAFETY: `node` is a node of the list getifaddrs returned, alive until freeifaddrs.
        let ifa = unsafe { &*node };
        let addr = ifa.ifa_addr;
        if !addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr whose family names its real type,
            // which is what each arm reads it as.
            match i32::from(unsafe { (*addr).sa_family }) {
                libc::AF_INET => {
                    let sin = unsafe { &*addr.cast::<libc::sockaddr_in>() };
                    out.push(std::net::IpAddr::V4(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*addr.cast::<libc::sockaddr_in6>() };
                    out.push(std::net::IpAddr::V6(std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
                }
                _ => {}
            }
        }
        node = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed once; nothing borrowed from it survives.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The calling thread's id (what `bpf_get_current_pid_tgid()` returns in its low half).
pub fn gettid() -> u32 {
    // SAFETY: gettid(2) takes no arguments and cannot fail.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).unwrap_or(0)
}

/// Whether `path` is a mount point of the BPF filesystem (from /proc/self/mounts).
pub fn is_bpffs(path: &Path) -> bool {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else { return false };
    let want = path.to_string_lossy();
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_dev, dir, fstype) = (f.next(), f.next(), f.next());
        dir == Some(want.as_ref()) && fstype == Some("bpf")
    })
}

/// Mounts bpffs at `path` (as `mount -t bpf bpf PATH`; bpftool does the same when it pins).
pub fn mount_bpffs(path: &Path) -> io::Result<()> {
    let target = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the bpffs path"))?;
    let source = c"bpf";
    // SAFETY: all three strings are valid NUL-terminated C strings that outlive the call; no
    // mount data is passed.
    let rc = unsafe {
        libc::mount(source.as_ptr(), target.as_ptr(), source.as_ptr(), 0, std::ptr::null())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises this process's open-file limit (soft and hard) to at least `want`, as far as the
/// privileges allow (raising the hard limit needs CAP_SYS_RESOURCE); returns the soft limit in
/// force afterwards. For the kernel benchmark, whose workload holds 10,000 connections.
pub fn raise_nofile_limit(want: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    let raised = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max.max(want) };
    // SAFETY: `raised` is a valid rlimit that outlives the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        return Ok(want);
    }
    // Without CAP_SYS_RESOURCE: as far as the hard limit goes.
    let capped = libc::rlimit { rlim_cur: lim.rlim_max.min(want), rlim_max: lim.rlim_max };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &capped) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(capped.rlim_cur)
}

/// Gives the calling thread (the kernel worker) precedence over ordinary work on the node, so a
/// decision is enforced when it arrives rather than when the scheduler next gets to it: on a
/// busy node a waking thread otherwise waits up to a scheduler tick (4 ms at HZ=250) behind
/// other processes. SCHED_FIFO at the lowest real-time priority (1) when allowed
/// (CAP_SYS_NICE); otherwise nice -10; otherwise nothing. The worker sleeps between jobs, and
/// the kernel's real-time throttling keeps it from holding a core for long anyway. Returns what
/// was obtained, for the status.
pub fn prioritize_current_thread() -> &'static str {
    let param = libc::sched_param { sched_priority: 1 };
    // SAFETY: `param` is a valid sched_param that outlives the call; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        return "SCHED_FIFO 1";
    }
    // SAFETY: plain syscall with constant arguments; who 0 is the calling thread on Linux.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) } == 0 {
        return "nice -10";
    }
    "default (no CAP_SYS_NICE)"
}

/// The slice the API's threads ask for (EEVDF, Linux 6.12+): a waking thread whose slice is
/// shorter than that of the task on the CPU preempts it at once, instead of waiting for that task
/// to use up its own protected slice (milliseconds).
pub const EVENT_SLICE_NS: u64 = 100_000;

/// What the threads that receive decision events (the API's runtime) obtained, once one asked.
static EVENT_THREADS: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Schedules the calling thread (one of the API's runtime workers, which receive the decision
/// events) as `priority` asks, so an agent that keeps every CPU busy cannot delay its own
/// quarantine: [`deadline_or_fair`] (the default), [`prioritize_current_thread`] (`realtime`,
/// as the kernel worker) or [`fair_with_short_slice`]. Returns, and records for
/// [`event_threads_scheduling`], what was obtained.
pub fn prioritize_event_thread(priority: super::EventPriority) -> &'static str {
    let got = match priority {
        super::EventPriority::Deadline => deadline_or_fair(),
        super::EventPriority::Realtime => prioritize_current_thread(),
        super::EventPriority::Fair | super::EventPriority::Off => fair_with_short_slice(),
    };
    let _ = EVENT_THREADS.set(got);
    got
}

/// The bandwidth an event thread reserves under `--event-priority deadline`: at most
/// [`EVENT_DL_RUNTIME_NS`] of CPU in every [`EVENT_DL_PERIOD_NS`].
pub const EVENT_DL_RUNTIME_NS: u64 = 300_000;
pub const EVENT_DL_PERIOD_NS: u64 = 1_000_000;

/// SCHED_DEADLINE (linux/sched.h; not in the libc crate).
const SCHED_DEADLINE: u32 = 6;

/// The calling thread as a SCHED_DEADLINE task reserving [`EVENT_DL_RUNTIME_NS`] every
/// [`EVENT_DL_PERIOD_NS`]: it runs ahead of every fair and real-time thread the moment it wakes
/// (a quarantined workload keeping the CPU busy cannot delay it by a scheduler tick, which fair
/// scheduling can: bench/KERNEL.md), yet the kernel's bandwidth control throttles it once it has
/// used its runtime in a period, so a flood of requests takes at most 30% of a CPU per thread
/// (SCHED_FIFO has no such bound short of the node-wide real-time throttling). Threads it
/// starts are ordinary (SCHED_FLAG_RESET_ON_FORK: the kernel refuses a deadline task's fork
/// without it). Falls back to [`fair_with_short_slice`] where refused (no CAP_SYS_NICE, the
/// deadline bandwidth of the node already taken, a kernel without it).
fn deadline_or_fair() -> &'static str {
    let attr = libc::sched_attr {
        size: u32::try_from(size_of::<libc::sched_attr>()).unwrap_or(48),
        sched_policy: SCHED_DEADLINE,
        sched_flags: u64::try_from(libc::SCHED_FLAG_RESET_ON_FORK).unwrap_or(1),
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: EVENT_DL_RUNTIME_NS,
        sched_deadline: EVENT_DL_PERIOD_NS,
        sched_period: EVENT_DL_PERIOD_NS,
    };
    // SAFETY: `attr` is a valid, initialized sched_attr whose `size` is its own size, and
    // outlives the call; pid 0 is the calling thread; flags 0.
    if unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) } == 0 {
        return "SCHED_DEADLINE 300 us every 1 ms";
    }
    fair_with_short_slice()
}

/// A thread of the API's runtime other than its workers (the blocking pool: the event log's
/// fsync, reports, discovery): fair scheduling ahead of ordinary work, never real-time, which is
/// kept for the threads an event arrives on.
pub fn prioritize_blocking_thread() {
    let _ = fair_with_short_slice();
}

/// Back to fair scheduling (nice -10 and a 100 µs slice, as far as allowed) for the rest of a
/// job, once the enforcement proper is done: the kernel worker's bookkeeping (finding connects
/// in flight, the receipt) then shares the CPU instead of holding it at real-time priority, on
/// the very CPU the workload was preempted on. [`prioritize_current_thread`] restores it.
pub fn relax_current_thread() -> &'static str {
    fair_with_short_slice()
}

fn fair_with_short_slice() -> &'static str {
    let set = |nice: i32| {
        let attr = libc::sched_attr {
            size: u32::try_from(size_of::<libc::sched_attr>()).unwrap_or(48),
            sched_policy: u32::try_from(libc::SCHED_OTHER).unwrap_or(0),
            sched_flags: 0,
            sched_nice: nice,
            sched_priority: 0,
            sched_runtime: EVENT_SLICE_NS,
            sched_deadline: 0,
            sched_period: 0,
        };
        // SAFETY: `attr` is a valid, initialized sched_attr whose `size` is its own size, and
        // outlives the call; pid 0 is the calling thread; flags 0.
        unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) == 0 }
    };
    if set(-10) {
        return "SCHED_OTHER nice -10, 100 us slice";
    }
    if set(0) {
        return "SCHED_OTHER, 100 us slice (no CAP_SYS_NICE for nice -10)";
    }
    // SAFETY: plain syscall with constant arguments; who 0 is the calling thread on Linux.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) } == 0 {
        return "nice -10";
    }
    "default (no CAP_SYS_NICE)"
}

/// How the API's runtime threads are scheduled ([`prioritize_event_thread`]); `None` when
/// nothing was asked (`--event-priority off`, or not `serve`).
pub fn event_threads_scheduling() -> Option<&'static str> {
    EVENT_THREADS.get().copied()
}
