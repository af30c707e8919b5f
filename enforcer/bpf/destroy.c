// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Interlock's socket destruction for `terminate: workload`: a BPF TCP iterator (iter/tcp,
// Linux 6.5+ for the kfunc) that walks every TCP socket of the enforcer's network namespace in
// the kernel, keeps the full sockets whose cgroup (the one they were created in) is listed in
// il_destroy_cgroups, and aborts each with the bpf_sock_destroy kfunc (tcp_abort: a reset to the
// peer, ECONNABORTED to the owner). Reading the iterator runs it (it writes nothing to the
// reader); what it did is counted in il_destroy_stats, and the first IL_LISTED sockets acted on
// are kept in il_destroy_listed, which is what the receipt counts and lists.
//
// Nothing is written to the reader per socket on purpose: when the iterator's output buffer
// fills, the kernel stops, rolls the last socket's output back and shows it again on the next
// read; the socket would by then be destroyed, so its record would be lost (measured: 18 of
// 10,001 with a 64-byte record each).
//
// Why: the netlink path (enforcer/src/kernel/diag.rs) first dumps the workload's sockets to user
// space (one walk of the hash, 10,000 messages) and then sends one SOCK_DESTROY per socket,
// each looked up again by its 4-tuple. Here the walk, the match and the abort are one pass in
// the kernel, and nothing but the record crosses to user space.
//
// Separate from quarantine.c on purpose: this object needs a kfunc and CO-RE, which an older
// kernel may refuse; when it does, the enforcer says so loudly and destroys through netlink, and
// the quarantine programs are not affected.
//
// The kfunc: aya (the loader) does not resolve `__ksym` externs, so the call is written as a
// call to a helper with a placeholder number (IL_KFUNC_PLACEHOLDER); the enforcer rewrites that
// one instruction into a kfunc call (BPF_PSEUDO_KFUNC_CALL, the vmlinux BTF id of
// bpf_sock_destroy) before loading (enforcer/src/kernel/iter.rs). The verifier then checks it
// like any kfunc call: the kernel allows it from TCP/UDP iterators only.
//
// Build: clang -target bpf -g -O2 (enforcer/build.rs).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

// Kernel types, as much of them as is read here; CO-RE (preserve_access_index) finds the fields
// at their offsets in the running kernel's BTF.
struct kernfs_node {
	__u64 id;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct sock_cgroup_data {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct in6_addr {
	__u8 s6_addr[16];
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	struct sock_cgroup_data sk_cgrp_data;
} __attribute__((preserve_access_index));

struct tcp_sock;
struct seq_file;

// The iterator's context (struct bpf_iter__tcp in the kernel, the same three members in unions):
// its layout is the iterator's ABI, so it is not relocated.
struct bpf_iter_meta {
	struct seq_file *seq;
	__u64 session_id;
	__u64 seq_num;
};

struct bpf_iter__tcp {
	struct bpf_iter_meta *meta;
	struct sock_common *sk_common;
	__u32 uid;
};

// Rewritten into the bpf_sock_destroy kfunc call before loading (see above). The number is no
// helper's: were it ever loaded unrewritten, the verifier would refuse the program.
#define IL_KFUNC_PLACEHOLDER 0x7ff1
static long (*il_sock_destroy)(struct sock_common *sk) = (void *)IL_KFUNC_PLACEHOLDER;

// The cgroups whose sockets to destroy: filled by the enforcer just before it reads the
// iterator, emptied just after.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} il_destroy_cgroups SEC(".maps");

// Sharding across readers: the reading thread's id -> (shard, shards). A socket is acted on
// by the reader whose shard is its cookie modulo shards; a reader not listed takes them all.
struct shard {
	__u32 index;
	__u32 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct shard);
} il_destroy_shards SEC(".maps");

// One socket acted on (mirrored in enforcer/src/kernel/iter.rs).
struct destroyed {
	__u64 cookie;
	__u64 cgroup_id;
	__u32 uid;
	__s32 result;     // bpf_sock_destroy's: 0, or a negative errno
	__u8 family;
	__u8 state;       // before the abort
	__u16 local_port; // host byte order
	__u16 remote_port; // network byte order
	__u16 _pad;
	__u8 local[16];   // IPv4: the first 4 bytes
	__u8 remote[16];
};

#define IL_LISTED 100

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, IL_LISTED);
	__type(key, __u32);
	__type(value, struct destroyed);
} il_destroy_listed SEC(".maps");

// Per run (the enforcer zeroes it first): sockets acted on, destroyed, and refused by the kfunc.
struct stats {
	__u64 seen;
	__u64 destroyed;
	__u64 failed;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stats);
} il_destroy_stats SEC(".maps");

#define AF_INET_ 2
#define TCP_LISTEN_ 10

SEC("iter/tcp")
int interlock_destroy_tcp(struct bpf_iter__tcp *ctx)
{
	struct sock_common *skc = ctx->sk_common;
	if (!skc)
		return 0;
	// Full sockets only: a TIME_WAIT or request socket has no owner to abort and no cgroup.
	struct sock *sk = (struct sock *)bpf_skc_to_tcp_sock(skc);
	if (!sk)
		return 0;
	if (sk->__sk_common.skc_state == TCP_LISTEN_)
		return 0;
	struct cgroup *cg = sk->sk_cgrp_data.cgroup;
	if (!cg)
		return 0;
	struct kernfs_node *kn = cg->kn;
	if (!kn)
		return 0;
	__u64 cgroup_id = kn->id;
	if (!bpf_map_lookup_elem(&il_destroy_cgroups, &cgroup_id))
		return 0;
	__u64 cookie = bpf_get_socket_cookie(skc);
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct shard *sh = bpf_map_lookup_elem(&il_destroy_shards, &tid);
	if (sh && sh->count > 1 && cookie % sh->count != sh->index)
		return 0;

	__u32 zero = 0;
	struct stats *st = bpf_map_lookup_elem(&il_destroy_stats, &zero);
	if (!st)
		return 0;
	// Two readers may run at once (shards): the slot is whoever's the counter gave.
	__u64 n = __sync_fetch_and_add(&st->seen, 1);
	struct destroyed *d = 0;
	if (n < IL_LISTED) {
		__u32 slot = (__u32)n;
		d = bpf_map_lookup_elem(&il_destroy_listed, &slot);
	}
	if (d) {
		d->cookie = cookie;
		d->cgroup_id = cgroup_id;
		d->uid = ctx->uid;
		d->family = (__u8)sk->__sk_common.skc_family;
		d->state = sk->__sk_common.skc_state;
		d->local_port = sk->__sk_common.skc_num;
		d->remote_port = sk->__sk_common.skc_dport;
		if (d->family == AF_INET_) {
			__u32 l = sk->__sk_common.skc_rcv_saddr, r = sk->__sk_common.skc_daddr;
			__builtin_memset(&d->local, 0, 16);
			__builtin_memset(&d->remote, 0, 16);
			__builtin_memcpy(&d->local[0], &l, 4);
			__builtin_memcpy(&d->remote[0], &r, 4);
		} else {
			bpf_probe_read_kernel(&d->local, 16, &sk->__sk_common.skc_v6_rcv_saddr);
			bpf_probe_read_kernel(&d->remote, 16, &sk->__sk_common.skc_v6_daddr);
		}
	}
	long r = il_sock_destroy(skc);
	if (d)
		d->result = (__s32)r;
	if (r == 0)
		__sync_fetch_and_add(&st->destroyed, 1);
	else
		__sync_fetch_and_add(&st->failed, 1);
	return 0;
}

// bpf_sock_destroy is a GPL-only kfunc.
char LICENSE[] SEC("license") = "Dual BSD/GPL";
