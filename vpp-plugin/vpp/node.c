/*
 * node.c - the per-packet side of the glue, run by every VPP thread on its
 * own bank (marllb_vpp.h):
 *
 *   marllb_pick_as()      lb's new-flow branch calls it: SED over the
 *                         thread's active flows and the weights in force,
 *                         then the flow enters the thread's flow table.
 *   marllb-observe-ip4/6  ip4-unicast / ip6-unicast features on the client
 *                         side: every packet of a tracked flow offers its age
 *                         to the duration reservoir; TCP FIN or RST ends the
 *                         flow and offers its completion time.
 *   marllb-snapshot       interrupt-mode input node the publisher raises once
 *                         per period: ends timed-out flows (lb's flow-table
 *                         timeout, emulated on our table) and stages the
 *                         thread's window for the main thread.
 */
#include <vnet/feature/feature.h>
#include <vnet/tcp/tcp_packet.h>
#include <vnet/udp/udp_packet.h>

#include "marllb_vpp.h"

/* splitmix64's finaliser: a cheap, well-mixed 64-bit hash step. */
static_always_inline u64
marllb_mix64 (u64 x)
{
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* Key of the packet's 5-tuple (ports 0 unless TCP or UDP, as lb does) and
 * its TCP flags.  b's current data is the IP header. */
static_always_inline u64
marllb_flow_key (vlib_buffer_t *b, u8 is_ip4, u8 *tcp_flags)
{
  u64 a, c = 0;
  u8 proto;
  void *l4;
  if (is_ip4)
    {
      ip4_header_t *ip = vlib_buffer_get_current (b);
      a = ((u64) ip->src_address.as_u32 << 32) | ip->dst_address.as_u32;
      proto = ip->protocol;
      l4 = ip4_next_header (ip);
    }
  else
    {
      ip6_header_t *ip = vlib_buffer_get_current (b);
      a = ip->src_address.as_u64[0] ^ marllb_mix64 (ip->src_address.as_u64[1]);
      c = ip->dst_address.as_u64[0] ^ marllb_mix64 (ip->dst_address.as_u64[1]);
      proto = ip->protocol;
      l4 = ip + 1;
    }
  u64 ports = 0;
  *tcp_flags = 0;
  if (proto == IP_PROTOCOL_TCP || proto == IP_PROTOCOL_UDP)
    {
      udp_header_t *u = l4; /* ports sit at the same offsets in TCP */
      ports = ((u64) u->src_port << 16) | u->dst_port;
      if (proto == IP_PROTOCOL_TCP)
        *tcp_flags = ((tcp_header_t *) l4)->flags;
    }
  u64 k = marllb_mix64 (a ^ marllb_mix64 (c ^ (ports << 8 | proto)));
  return k ? k : 1;
}

/* The thread's dispatch view, refreshed from the shared one when the main
 * thread published a new sequence.  The copy goes to the spare half and is
 * used only if the sequence did not move meanwhile. */
static_always_inline marllb_view_t *
marllb_thread_view (marllb_main_t *mm, marllb_thread_t *t)
{
  u64 s = __atomic_load_n (&mm->view_seq, __ATOMIC_ACQUIRE);
  if (PREDICT_FALSE (s != t->view_seq) && !(s & 1))
    {
      marllb_view_t *next = &t->view[t->cur ^ 1];
      const marllb_view_t *src = &mm->view;
      u32 n = clib_min (src->n, vec_len (t->active));
      next->vip_index = src->vip_index;
      next->n = n;
      clib_memcpy_fast (next->as_index, src->as_index, n * sizeof (src->as_index[0]));
      clib_memcpy_fast (next->up, src->up, n * sizeof (src->up[0]));
      clib_memcpy_fast (next->weight, src->weight, n * sizeof (src->weight[0]));
      __atomic_thread_fence (__ATOMIC_ACQUIRE);
      if (__atomic_load_n (&mm->view_seq, __ATOMIC_RELAXED) == s)
        {
          t->cur ^= 1;
          t->view_seq = s;
        }
    }
  return &t->view[t->cur];
}

/* A flow ends at end_ns: its completion time goes to the reservoir. */
static_always_inline void
marllb_flow_finish (marllb_thread_t *t, marllb_flow_t *f, u64 end_ns)
{
  u32 s = f->server;
  f64 fct = end_ns > f->start_ns ? (f64) (end_ns - f->start_ns) * 1e-9 : 0.0;
  marllb_reservoir_add_inline (&t->fct[s], fct, end_ns);
  t->completed[s]++;
  t->active[s]--;
  f->key = 0;
}

/* A flow lives in any slot of its key's bucket of MARLLB_VPP_FLOW_WAYS. */
static_always_inline marllb_flow_t *
marllb_flow_bucket (marllb_thread_t *t, u64 key)
{
  return &t->flows[key & MARLLB_VPP_FLOW_MASK & ~(u64) (MARLLB_VPP_FLOW_WAYS - 1)];
}

static_always_inline marllb_flow_t *
marllb_flow_find (marllb_thread_t *t, u64 key)
{
  marllb_flow_t *b = marllb_flow_bucket (t, key);
  for (u32 i = 0; i < MARLLB_VPP_FLOW_WAYS; i++)
    if (b[i].key == key)
      return &b[i];
  return 0;
}

/* Enter a new flow; 0 when every slot of its bucket holds a live flow. */
static_always_inline int
marllb_flow_start (const marllb_main_t *mm, marllb_thread_t *t, u64 key, u32 server, u64 now)
{
  /* The same 5-tuple again means lb's entry expired: that flow ended. */
  marllb_flow_t *b = marllb_flow_bucket (t, key), *f = marllb_flow_find (t, key);
  for (u32 i = 0; i < MARLLB_VPP_FLOW_WAYS && !f; i++)
    if (!b[i].key || b[i].last_ns + mm->flow_timeout_ns <= now)
      f = &b[i];
  if (!f)
    return 0;
  if (f->key)
    marllb_flow_finish (t, f, f->last_ns);
  f->key = key;
  f->server = server;
  f->start_ns = f->last_ns = now;
  return 1;
}

u32
marllb_pick_as (vlib_main_t *vm, vlib_buffer_t *b, u8 is_ip4, u32 vip_index, u32 fallback_as)
{
  marllb_main_t *mm = &marllb_main;
  marllb_thread_t *t = vec_elt_at_index (mm->threads, vm->thread_index);
  marllb_view_t *v = marllb_thread_view (mm, t);
  if (vip_index != v->vip_index)
    return fallback_as;
  i32 s = marllb_sed_pick (t->active, v->weight, v->up, v->n);
  if (s < 0)
    return fallback_as;
  u8 tcp_flags;
  u64 key = marllb_flow_key (b, is_ip4, &tcp_flags);
  t->new_flows[s]++;
  if (marllb_flow_start (mm, t, key, (u32) s, marllb_now_ns (mm, vm)))
    t->active[s]++;
  else
    t->untracked++;
  return v->as_index[s];
}

#define foreach_marllb_observe_error                                                               \
  _ (TRACKED, "packets of tracked flows")                                                         \
  _ (FINISHED, "flows ended by FIN or RST")

typedef enum
{
#define _(sym, str) MARLLB_OBSERVE_ERROR_##sym,
  foreach_marllb_observe_error
#undef _
    MARLLB_OBSERVE_N_ERROR,
} marllb_observe_error_t;

static char *marllb_observe_error_strings[] = {
#define _(sym, str) str,
  foreach_marllb_observe_error
#undef _
};

static_always_inline uword
marllb_observe_inline (vlib_main_t *vm, vlib_node_runtime_t *node, vlib_frame_t *frame, u8 is_ip4)
{
  marllb_main_t *mm = &marllb_main;
  marllb_thread_t *t = vec_elt_at_index (mm->threads, vm->thread_index);
  vlib_buffer_t *bufs[VLIB_FRAME_SIZE], **b = bufs;
  u16 nexts[VLIB_FRAME_SIZE], *next = nexts;
  u32 *from = vlib_frame_vector_args (frame);
  u32 n_left = frame->n_vectors, n_tracked = 0, n_finished = 0;
  /* One clock read per frame: packets of a frame arrived together. */
  u64 now = marllb_now_ns (mm, vm);
  /* The frame's flow ages, offered to the dur reservoirs in one batch. */
  u16 age_server[VLIB_FRAME_SIZE];
  f64 age_value[VLIB_FRAME_SIZE];
  u64 age_ns[VLIB_FRAME_SIZE];

  vlib_get_buffers (vm, from, bufs, n_left);
  for (; n_left > 0; n_left--, b++, next++)
    {
      vnet_feature_next_u16 (next, b[0]);
      u8 tcp_flags;
      marllb_flow_t *f = marllb_flow_find (t, marllb_flow_key (b[0], is_ip4, &tcp_flags));
      if (!f)
        continue;
      f->last_ns = now;
      age_server[n_tracked] = (u16) f->server;
      age_value[n_tracked] = now > f->start_ns ? (f64) (now - f->start_ns) * 1e-9 : 0.0;
      age_ns[n_tracked] = now;
      n_tracked++;
      if (tcp_flags & (TCP_FLAG_FIN | TCP_FLAG_RST))
        {
          marllb_flow_finish (t, f, now);
          n_finished++;
        }
    }
  marllb_reservoir_bank_add_batch (&t->dur_bank, age_server, age_value, age_ns, n_tracked);
  vlib_buffer_enqueue_to_next (vm, node, from, nexts, frame->n_vectors);
  vlib_node_increment_counter (vm, node->node_index, MARLLB_OBSERVE_ERROR_TRACKED, n_tracked);
  vlib_node_increment_counter (vm, node->node_index, MARLLB_OBSERVE_ERROR_FINISHED, n_finished);
  return frame->n_vectors;
}

VLIB_NODE_FN (marllb_observe_ip4_node) (vlib_main_t *vm, vlib_node_runtime_t *node,
                                        vlib_frame_t *frame)
{
  return marllb_observe_inline (vm, node, frame, 1);
}

VLIB_NODE_FN (marllb_observe_ip6_node) (vlib_main_t *vm, vlib_node_runtime_t *node,
                                        vlib_frame_t *frame)
{
  return marllb_observe_inline (vm, node, frame, 0);
}

/* Feature nodes take their next node from the arc (vnet_feature_next);
 * the one static next is only a placeholder VPP requires. */
VLIB_REGISTER_NODE (marllb_observe_ip4_node) = {
  .name = "marllb-observe-ip4",
  .vector_size = sizeof (u32),
  .type = VLIB_NODE_TYPE_INTERNAL,
  .n_errors = MARLLB_OBSERVE_N_ERROR,
  .error_strings = marllb_observe_error_strings,
  .n_next_nodes = 1,
  .next_nodes = { [0] = "ip4-drop" },
};

VLIB_REGISTER_NODE (marllb_observe_ip6_node) = {
  .name = "marllb-observe-ip6",
  .vector_size = sizeof (u32),
  .type = VLIB_NODE_TYPE_INTERNAL,
  .n_errors = MARLLB_OBSERVE_N_ERROR,
  .error_strings = marllb_observe_error_strings,
  .n_next_nodes = 1,
  .next_nodes = { [0] = "ip6-drop" },
};

/* Before ip4-lookup, which hands VIP traffic to lb through its DPO. */
VNET_FEATURE_INIT (marllb_observe_ip4_feature, static) = {
  .arc_name = "ip4-unicast",
  .node_name = "marllb-observe-ip4",
  .runs_before = VNET_FEATURES ("ip4-lookup"),
};

VNET_FEATURE_INIT (marllb_observe_ip6_feature, static) = {
  .arc_name = "ip6-unicast",
  .node_name = "marllb-observe-ip6",
  .runs_before = VNET_FEATURES ("ip6-lookup"),
};

/* Sweep part of the flow table for timeouts, then stage the window. */
static void
marllb_thread_close_window (marllb_main_t *mm, marllb_thread_t *t, u64 window, u64 now)
{
  for (u32 i = 0; i < MARLLB_VPP_SWEEP; i++)
    {
      marllb_flow_t *f = &t->flows[t->sweep++ & MARLLB_VPP_FLOW_MASK];
      if (f->key && f->last_ns + mm->flow_timeout_ns <= now)
        marllb_flow_finish (t, f, f->last_ns);
    }

  marllb_stage_t *st = &t->stage;
  u32 n = vec_len (t->active);
  clib_memcpy_fast (st->active, t->active, n * sizeof (u64));
  clib_memcpy_fast (st->new_flows, t->new_flows, n * sizeof (u64));
  clib_memcpy_fast (st->completed, t->completed, n * sizeof (u64));
  st->untracked = t->untracked;
  for (u32 s = 0; s < n; s++)
    {
      marllb_reservoir_t *from[2] = { &t->dur[s], &t->fct[s] };
      marllb_reservoir_t *to[2] = { &st->dur[s], &st->fct[s] };
      for (int q = 0; q < 2; q++)
        {
          to[q]->n = from[q]->n;
          to[q]->seen = from[q]->seen;
          clib_memcpy_fast (to[q]->samples, from[q]->samples,
                            from[q]->n * sizeof (marllb_sample_t));
          marllb_reservoir_reset (from[q]);
        }
    }
  /* Last, with release: the main thread reads the stage once it sees it. */
  __atomic_store_n (&st->window, window, __ATOMIC_RELEASE);
  t->window = window;
}

VLIB_NODE_FN (marllb_snapshot_node) (vlib_main_t *vm, vlib_node_runtime_t *node,
                                     vlib_frame_t *frame)
{
  marllb_main_t *mm = &marllb_main;
  marllb_thread_t *t = vec_elt_at_index (mm->threads, vm->thread_index);
  u64 window = __atomic_load_n (&mm->window, __ATOMIC_ACQUIRE);
  if (window != t->window)
    marllb_thread_close_window (mm, t, window, marllb_now_ns (mm, vm));
  return 0;
}

/* An input node in interrupt state runs only when raised, on the thread it
 * was raised for (vlib_node_set_interrupt_pending): the main thread's way
 * to run code on an idle worker without a lock. */
VLIB_REGISTER_NODE (marllb_snapshot_node) = {
  .name = "marllb-snapshot",
  .type = VLIB_NODE_TYPE_INPUT,
  .state = VLIB_NODE_STATE_INTERRUPT,
};
