/*
 * marllb_vpp.h - state shared by the MARLLB glue's files: the plugin's main
 * struct, the per-thread banks, and the two functions the lb plugin calls.
 *
 * Threads and ownership (VPP runs one vlib_main_t per thread; thread 0 is
 * the main thread, the others are workers):
 *
 *   per-packet path (any thread): marllb_pick_as() on a new lb flow and the
 *     marllb-observe-ip4/ip6 feature nodes write only their own thread's
 *     bank: counters, reservoirs, flow table.  No locks, logs, allocation
 *     or rand().  What they read of the main struct changes only under the
 *     barrier (clock anchors, timeout) or under the view's seqlock.
 *   main thread: CLI, API, lb's VIP updates and the publisher process.
 *     Reconfiguration (servers, region, period) runs from CLI/API handlers,
 *     which VPP runs with the workers parked at the barrier, so banks are
 *     rebuilt without racing the packet path.
 *
 * Main -> threads: the dispatch view (bound VIP, server -> AS map, up flags,
 * weights) sits under a seqlock; a thread copies it into the spare half of
 * its own double buffer and flips only when the copy was clean.
 *
 * Threads -> main (merging): at each publish tick the main thread bumps
 * `window` and raises marllb-snapshot, an interrupt-mode input node, on every
 * thread.  Each thread copies its counters and reservoirs into its own
 * staging area, resets its reservoirs, and release-stores the window number
 * into stage.window last: that number is the thread's publication sequence.
 * Once every stage carries that window, or after MARLLB_VPP_GATHER_WAITS
 * looks, the main thread reads every stage whose window equals the one it
 * asked for (acquire).  A thread writes its stage
 * only when the window moves, and only the main thread moves it, so a stage
 * tagged with the current window cannot change while it is read.  Counters
 * are summed over threads; reservoirs are merged with
 * marllb_reservoir_merge() into one uniform k-sample per server.  A thread
 * that has not answered in time is counted late: its last counters are
 * reused and its samples of that window are dropped.
 */
#ifndef MARLLB_VPP_H
#define MARLLB_VPP_H

#include <vnet/vnet.h>
#include <vnet/ip/ip.h>

#include "marllb_dispatch.h"
#include "marllb_reservoir.h"
#include "marllb_ring.h"

#define MARLLB_VPP_DEFAULT_REGION "vpp"
#define MARLLB_VPP_DEFAULT_SERVERS 16
#define MARLLB_VPP_DEFAULT_PERIOD_MS 200
#define MARLLB_VPP_DEFAULT_TIMEOUT_S 40 /* lb's default flow timeout */
#define MARLLB_VPP_RING_LEN 8
#define MARLLB_VPP_REGION_MODE 0660
#define MARLLB_VPP_REGION_GROUP "vpp"
/* Per-thread flow table: 2^17 slots of 32 bytes (4 MiB) in buckets of 4. */
#define MARLLB_VPP_FLOW_LOG2 17
#define MARLLB_VPP_FLOW_MASK ((1u << MARLLB_VPP_FLOW_LOG2) - 1)
#define MARLLB_VPP_FLOW_WAYS 4
/* Slots each snapshot examines for timed-out flows: a full pass every
 * 64 periods (12.8 s at 200 ms). */
#define MARLLB_VPP_SWEEP ((1u << MARLLB_VPP_FLOW_LOG2) / 64)
/* The publisher looks for the threads' snapshots every 1 ms, 20 times at
 * most, before counting the missing ones late. */
#define MARLLB_VPP_GATHER_WAIT 1e-3
#define MARLLB_VPP_GATHER_WAITS 20

/* One tracked flow of the bound VIP; key 0 marks a free slot. */
typedef struct
{
  u64 key;      /* 64-bit hash of the 5-tuple, never 0 */
  u64 start_ns; /* CLOCK_REALTIME ns of the first packet */
  u64 last_ns;  /* of the latest packet seen */
  u32 server;
  u32 _pad;
} marllb_flow_t;

/* What new flows are dispatched with; one shared copy, one pair per thread. */
typedef struct
{
  u32 vip_index; /* lb VIP marllb dispatches for; ~0 = none */
  u32 n;         /* servers */
  u32 as_index[MARLLB_MAX_SERVERS];
  u8 up[MARLLB_MAX_SERVERS];
  f64 weight[MARLLB_MAX_SERVERS];
} marllb_view_t;

/* A thread's end-of-window copy, read by the main thread (see above). */
typedef struct
{
  u64 window;
  u64 untracked;
  u64 *active, *new_flows, *completed; /* vec, one per server */
  marllb_reservoir_t *dur, *fct;       /* vec; samples point into `samples` */
  marllb_sample_t *samples;            /* vec, 2 * servers * k */
} marllb_stage_t;

typedef struct
{
  CLIB_CACHE_LINE_ALIGN_MARK (cacheline0);
  u64 view_seq; /* shared sequence that view[cur] was copied at */
  u32 cur;
  u32 sweep;     /* next flow-table slot the timeout sweep examines */
  u64 window;    /* last window this thread closed */
  u64 untracked; /* new flows not tracked: their bucket was full of live flows */
  u64 *active, *new_flows, *completed;
  marllb_reservoir_t *dur, *fct;
  marllb_reservoir_bank_t dur_bank; /* over dur: a frame's ages in one batch */
  marllb_sample_t *samples;
  marllb_flow_t *flows;
  marllb_stage_t stage;
  marllb_view_t view[2];
} marllb_thread_t;

/* One application server of an lb VIP, as lb reported it. */
typedef struct
{
  ip46_address_t addr;
  u32 as_index;
  u8 lb_weight; /* 0 = draining: marks the server down */
} marllb_backend_t;

/* The main thread's last good copy of one thread's counters. */
typedef struct
{
  u64 *active, *new_flows, *completed;
  u64 untracked;
} marllb_counts_t;

typedef struct
{
  /* configuration */
  u8 *region_name; /* vec, NUL-terminated */
  u32 n_servers;
  u32 period_ms;
  u32 vip_index; /* bound lb VIP, ~0 = none */
  u64 flow_timeout_ns;
  u64 config_gen; /* bumped by every reconfiguration */

  /* the region and the control plane's weights */
  marllb_region_t region;
  u8 region_group_ok; /* group set to MARLLB_VPP_REGION_GROUP */
  marllb_weights_state_t weights;

  /* main -> threads */
  u64 view_seq;
  marllb_view_t view;
  marllb_backend_t **backends; /* per lb VIP index, sorted by address */

  /* threads -> main */
  u64 window;
  u64 window_start_ns;
  u64 late;
  marllb_thread_t *threads;
  marllb_counts_t *counts;
  u8 *fresh; /* per thread: its stage closed the window being published */
  marllb_reservoir_t *merge_in;
  marllb_rng_t merge_rng;

  /* clock: CLOCK_REALTIME ns = unix_anchor_ns + (vlib time - vlib_anchor) */
  u64 unix_anchor_ns;
  f64 vlib_anchor;

  u16 msg_id_base;
  vlib_log_class_t log_class;
} marllb_main_t;

extern marllb_main_t marllb_main;
extern vlib_node_registration_t marllb_snapshot_node;
extern vlib_node_registration_t marllb_publisher_node;

static_always_inline u64
marllb_now_ns (const marllb_main_t *mm, vlib_main_t *vm)
{
  f64 d = vlib_time_now (vm) - mm->vlib_anchor;
  return mm->unix_anchor_ns + (u64) (d > 0 ? d * 1e9 : 0);
}

/*
 * Hooks for the lb plugin (see README.md, "Where it hooks into lb").  VPP
 * loads plugins with RTLD_LOCAL and builds them with -fvisibility=hidden, so
 * lb finds these with vlib_get_plugin_symbol ("marllb_plugin.so", name).
 */

/* Worker or main thread, lb's new-flow branch: the AS for a new flow of
 * vip_index whose packet b starts at its IP header; fallback_as (lb's own
 * choice) when marllb does not serve that VIP or no server is up. */
__clib_export u32 marllb_pick_as (vlib_main_t *vm, vlib_buffer_t *b, u8 is_ip4, u32 vip_index,
                                  u32 fallback_as);
/* Main thread, whenever lb rebuilds a VIP's new-flow table: the VIP's ASs
 * in use (addresses, AS indexes, lb weights). */
__clib_export void marllb_vip_update (u32 vip_index, const u32 *as_index,
                                      const ip46_address_t *addr, const u8 *lb_weight, u32 n);

/* What `set marllb` and the marllb_set message change; 0 / NULL keeps. */
typedef struct
{
  const char *region;
  u32 servers;
  u32 period_ms;
  u32 timeout_s;
  u8 set_vip;
  u32 vip_index; /* with set_vip: the lb VIP to serve, ~0 for none */
} marllb_set_args_t;

/* Main thread, under the barrier (CLI and API handlers): apply a; a new
 * region, server count or period recreates the region and rebuilds the
 * per-thread banks.  NULL or a clib error naming the bad value. */
clib_error_t *marllb_set (marllb_main_t *mm, const marllb_set_args_t *a);
/* Main thread: republish the dispatch view to the threads. */
void marllb_view_publish (marllb_main_t *mm);

#endif /* MARLLB_VPP_H */
