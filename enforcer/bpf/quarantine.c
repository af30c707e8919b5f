// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Interlock's quarantine: refuses new connections (and UDP sends) from quarantined cgroups.
//
// Attached by the enforcer (enforcer/src/kernel/) to its managed cgroup root only, so it never
// runs for the host's own cgroups: the kernel runs a cgroup's effective programs, which are the
// ones attached to it or to an ancestor.
//
// Maps (pinned by name under the enforcer's bpffs directory, so enforcement survives a daemon
// restart; the byte layouts are mirrored in enforcer/src/kernel/plan.rs, keep them in step):
//   il_quarantine  cgroup id -> struct quarantine   (who is quarantined, until when, how)
//   il_dests       struct dest_key -> u8            (blocked, or with block_all allowed, ip:port)
//   il_refusals    tag -> struct refusals           (refused attempts per decision)
//
// Socket termination is not here: the enforcer destroys sockets with netlink SOCK_DESTROY (see
// enforcer/src/kernel/diag.rs for why).
//
// Build: clang -target bpf -g -O2 (enforcer/build.rs).

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// An IPv4 destination is kept as its IPv4-mapped IPv6 address (::ffff:a.b.c.d), so that
// connect6 on a dual-stack socket to ::ffff:127.0.0.1 hits the same entry as connect4 to
// 127.0.0.1 (RFC 4291 section 2.5.5.2).

struct quarantine {
	__u64 expires_ns; // bpf_ktime_get_ns() (CLOCK_MONOTONIC) deadline; 0: no expiry
	__u64 tag;        // key of this quarantine's counter in il_refusals
	__u32 block_all;  // 0: refuse the il_dests entries; 1: refuse all but them
	__u32 _pad;
};

struct dest_key {
	__u64 cgroup_id;
	__u8 addr[16];    // IPv6, or IPv4-mapped IPv6
	__u16 port;       // network byte order
	__u8 _pad[6];
};

struct refusals {
	__u64 count;
	__u64 last_ns;    // bpf_ktime_get_ns() of the latest refusal
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct quarantine);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} il_quarantine SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct dest_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} il_dests SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct refusals);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} il_refusals SEC(".maps");

// 1: let the call through; 0: refuse it (the syscall fails with EPERM).
static __always_inline int decide(struct dest_key *key)
{
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	struct quarantine *q = bpf_map_lookup_elem(&il_quarantine, &cgroup_id);
	if (!q)
		return 1;
	__u64 now = bpf_ktime_get_ns();
	// Lazy expiry: an expired entry no longer refuses anything, even while the daemon that
	// would sweep it is down.
	if (q->expires_ns != 0 && now >= q->expires_ns)
		return 1;
	key->cgroup_id = cgroup_id;
	int listed = bpf_map_lookup_elem(&il_dests, key) != 0;
	int refuse = q->block_all ? !listed : listed;
	if (!refuse)
		return 1;
	__u64 tag = q->tag;
	struct refusals *r = bpf_map_lookup_elem(&il_refusals, &tag);
	if (r) {
		__sync_fetch_and_add(&r->count, 1);
		r->last_ns = now;
	} else {
		// The daemon creates the counter with the quarantine; this covers a counter swept
		// early (or lost) so a refusal is never uncounted.
		struct refusals first = { .count = 1, .last_ns = now };
		bpf_map_update_elem(&il_refusals, &tag, &first, BPF_NOEXIST);
	}
	return 0;
}

static __always_inline int decide4(struct bpf_sock_addr *ctx)
{
	struct dest_key key;
	__builtin_memset(&key, 0, sizeof(key));
	key.addr[10] = 0xff;
	key.addr[11] = 0xff;
	__u32 ip4 = ctx->user_ip4; // network byte order, copied as bytes
	__builtin_memcpy(&key.addr[12], &ip4, 4);
	key.port = (__u16)ctx->user_port;
	return decide(&key);
}

static __always_inline int decide6(struct bpf_sock_addr *ctx)
{
	struct dest_key key;
	__builtin_memset(&key, 0, sizeof(key));
	// The context allows only 4-byte loads of user_ip6, one word at a time.
	__u32 w0 = ctx->user_ip6[0];
	__u32 w1 = ctx->user_ip6[1];
	__u32 w2 = ctx->user_ip6[2];
	__u32 w3 = ctx->user_ip6[3];
	__builtin_memcpy(&key.addr[0], &w0, 4);
	__builtin_memcpy(&key.addr[4], &w1, 4);
	__builtin_memcpy(&key.addr[8], &w2, 4);
	__builtin_memcpy(&key.addr[12], &w3, 4);
	key.port = (__u16)ctx->user_port;
	return decide(&key);
}

SEC("cgroup/connect4")
int interlock_connect4(struct bpf_sock_addr *ctx)
{
	return decide4(ctx);
}

SEC("cgroup/connect6")
int interlock_connect6(struct bpf_sock_addr *ctx)
{
	return decide6(ctx);
}

// UDP without connect() never reaches the connect hooks: with block_all, a quarantined
// workload's datagrams are refused here too.
SEC("cgroup/sendmsg4")
int interlock_sendmsg4(struct bpf_sock_addr *ctx)
{
	return decide4(ctx);
}

SEC("cgroup/sendmsg6")
int interlock_sendmsg6(struct bpf_sock_addr *ctx)
{
	return decide6(ctx);
}

// GPL-compatible so that the kernel lets the programs use every helper they may need; the
// helpers used today are not GPL-only.
char LICENSE[] SEC("license") = "Dual BSD/GPL";
