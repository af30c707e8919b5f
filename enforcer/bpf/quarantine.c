// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// Interlock's quarantine: refuses new connections (and UDP sends) from quarantined cgroups, and
// drops every packet of their live sockets to and from a refused destination, so one map write
// silences all of a workload's established connections at once (cgroup_skb ingress/egress).
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
//   il_netns       cgroup id -> netns cookie        (where the workload's sockets live)
//
// Socket termination is not here: destroy.c (a BPF TCP iterator calling bpf_sock_destroy) and,
// where that cannot load, netlink SOCK_DESTROY (enforcer/src/kernel/diag.rs) destroy sockets.
// Either way each socket costs the kernel's own abort (tcp_abort: a reset built and sent, the
// socket unhashed), a few microseconds, tens of milliseconds for 10,000 (bench/enforcer.txt);
// the packet filter below makes the sockets mute before that, in one write.
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

// The network namespace each workload cgroup last connected or sent from, by its cookie
// (bpf_get_netns_cookie): a pod's sockets live in the pod's namespace, and the enforcer can only
// find and destroy them from there (enforcer/src/kernel/netns.rs). LRU: a node's busiest
// cgroups stay, a removed cgroup's entry ages out.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);   // cgroup id
	__type(value, __u64); // netns cookie
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} il_netns SEC(".maps");

// Records the caller's namespace: a lookup per connect, a write only when it changed.
static __always_inline void note_netns(struct bpf_sock_addr *ctx, __u64 cgroup_id)
{
	__u64 cookie = bpf_get_netns_cookie(ctx);
	__u64 *known = bpf_map_lookup_elem(&il_netns, &cgroup_id);
	if (!known || *known != cookie)
		bpf_map_update_elem(&il_netns, &cgroup_id, &cookie, BPF_ANY);
}

// 1: let the call (or packet) through; 0: refuse it (the syscall fails with EPERM, the packet
// is dropped). `count`: count the refusal under the quarantine's tag (connects and sends, not
// packets: the counter says how often the workload tried).
static __always_inline int decide_for(__u64 cgroup_id, struct dest_key *key, int count)
{
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
	if (!count)
		return 0;
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

static __always_inline int decide(struct bpf_sock_addr *ctx, struct dest_key *key)
{
	__u64 cgroup_id = bpf_get_current_cgroup_id();
	note_netns(ctx, cgroup_id);
	return decide_for(cgroup_id, key, 1);
}

// An IPv4 address (network byte order, copied as bytes) as its IPv4-mapped IPv6 form.
static __always_inline void put_ip4(struct dest_key *key, __u32 ip4)
{
	key->addr[10] = 0xff;
	key->addr[11] = 0xff;
	__builtin_memcpy(&key->addr[12], &ip4, 4);
}

// An IPv6 address given as the four 32-bit words the contexts let programs load.
static __always_inline void put_ip6(struct dest_key *key, __u32 w0, __u32 w1, __u32 w2, __u32 w3)
{
	__builtin_memcpy(&key->addr[0], &w0, 4);
	__builtin_memcpy(&key->addr[4], &w1, 4);
	__builtin_memcpy(&key->addr[8], &w2, 4);
	__builtin_memcpy(&key->addr[12], &w3, 4);
}

static __always_inline int decide4(struct bpf_sock_addr *ctx)
{
	struct dest_key key;
	__builtin_memset(&key, 0, sizeof(key));
	put_ip4(&key, ctx->user_ip4);
	key.port = (__u16)ctx->user_port;
	return decide(ctx, &key);
}

static __always_inline int decide6(struct bpf_sock_addr *ctx)
{
	struct dest_key key;
	__builtin_memset(&key, 0, sizeof(key));
	// The context allows only 4-byte loads of user_ip6, one word at a time.
	put_ip6(&key, ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]);
	key.port = (__u16)ctx->user_port;
	return decide(ctx, &key);
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

// A live socket's packets. The socket's own remote address and port are the destination the
// quarantine is checked against (the same il_dests entries as connect), and its cgroup is the
// socket's, not the current task's (ingress runs in softirq). Sockets outside the managed root
// never get here: these programs are attached to the root only.
#define ETH_P_IP_BE 0x0008   // htons(0x0800) on a little-endian host
#define ETH_P_IPV6_BE 0xdd86 // htons(0x86dd)
#define IPPROTO_TCP_ 6
#define TCP_FLAG_RST 0x04

static __always_inline int skb_decide(struct __sk_buff *skb)
{
	__u64 cgroup_id = bpf_skb_cgroup_id(skb);
	// Most packets belong to a cgroup that is not quarantined: one lookup and out.
	if (!bpf_map_lookup_elem(&il_quarantine, &cgroup_id))
		return 1;
	struct dest_key key;
	__builtin_memset(&key, 0, sizeof(key));
	__u32 family = skb->family;
	if (family == 2) { // AF_INET
		put_ip4(&key, skb->remote_ip4);
	} else if (family == 10) { // AF_INET6
		put_ip6(&key, skb->remote_ip6[0], skb->remote_ip6[1], skb->remote_ip6[2], skb->remote_ip6[3]);
	} else {
		return 1;
	}
	// remote_port is in network byte order, but the kernel hands it shifted into the upper
	// 16 bits on little-endian hosts (and not on big-endian ones): take whichever half is set.
	__u32 rp = skb->remote_port;
	key.port = (__u16)(rp > 0xffff ? rp >> 16 : rp);
	return decide_for(cgroup_id, &key, 0);
}

// 1 when the packet is a TCP reset. In both directions a cgroup_skb program sees the packet from
// its IP header on (the kernel pushes the headers back for ingress).
static __always_inline int is_tcp_rst(struct __sk_buff *skb)
{
	__u8 b[2];
	__u32 tcp_off;
	if (skb->protocol == ETH_P_IP_BE) {
		if (bpf_skb_load_bytes(skb, 0, &b[0], 1) || bpf_skb_load_bytes(skb, 9, &b[1], 1))
			return 0;
		if (b[1] != IPPROTO_TCP_)
			return 0;
		tcp_off = (__u32)(b[0] & 0x0f) * 4;
	} else if (skb->protocol == ETH_P_IPV6_BE) {
		if (bpf_skb_load_bytes(skb, 6, &b[1], 1) || b[1] != IPPROTO_TCP_)
			return 0;
		tcp_off = 40;
	} else {
		return 0;
	}
	if (tcp_off < 20 || tcp_off > 60)
		return 0;
	if (bpf_skb_load_bytes(skb, tcp_off + 13, &b[0], 1))
		return 0;
	return (b[0] & TCP_FLAG_RST) != 0;
}

// TCP resets pass both ways, every other packet of a silenced socket is dropped. Out: the reset
// the enforcer's SOCK_DESTROY sends, so the peer (say, the proxy) drops its end at once instead of
// waiting for a timeout. In: a reset only ends the socket (it carries no data). A connect() in
// flight when the quarantine lands never connects: its SYN (or SYN-ACK) is dropped and it waits
// out its SYN retries (seconds), unless a reset answers it first; the next connect() is refused.
SEC("cgroup_skb/ingress")
int interlock_skb_ingress(struct __sk_buff *skb)
{
	if (skb_decide(skb))
		return 1;
	return is_tcp_rst(skb);
}

SEC("cgroup_skb/egress")
int interlock_skb_egress(struct __sk_buff *skb)
{
	if (skb_decide(skb))
		return 1;
	return is_tcp_rst(skb);
}

// GPL-compatible so that the kernel lets the programs use every helper they may need; the
// helpers used today are not GPL-only.
char LICENSE[] SEC("license") = "Dual BSD/GPL";
