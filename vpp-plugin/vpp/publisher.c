/*
 * publisher.c - the main thread's periodic work, as a VLIB process node:
 * read the weights slot, close the window on every thread, merge the
 * threads' stages (marllb_vpp.h) into one frame and publish it.
 */
#include "marllb_vpp.h"

static int
marllb_all_staged (const marllb_main_t *mm, u64 window)
{
  for (u32 i = 0; i < vec_len (mm->threads); i++)
    if (__atomic_load_n (&mm->threads[i].stage.window, __ATOMIC_ACQUIRE) != window)
      return 0;
  return 1;
}

/* Mark the stages that closed `window` fresh and take their counters; a
 * late thread keeps its previous counters. */
static void
marllb_gather (marllb_main_t *mm, u64 window)
{
  u32 n = mm->n_servers;
  u8 *fresh = mm->fresh;
  for (u32 i = 0; i < vec_len (mm->threads); i++)
    {
      marllb_stage_t *st = &mm->threads[i].stage;
      fresh[i] = __atomic_load_n (&st->window, __ATOMIC_ACQUIRE) == window;
      if (!fresh[i])
        {
          mm->late++;
          continue;
        }
      marllb_counts_t *c = &mm->counts[i];
      clib_memcpy_fast (c->active, st->active, n * sizeof (u64));
      clib_memcpy_fast (c->new_flows, st->new_flows, n * sizeof (u64));
      clib_memcpy_fast (c->completed, st->completed, n * sizeof (u64));
      c->untracked = st->untracked;
    }
}

/* Merge quantity q (0 duration, 1 completion time) of server s over the
 * fresh stages into out[k]; returns the samples written. */
static u32
marllb_merge (marllb_main_t *mm, u32 s, int q, marllb_sample_t *out, u64 *seen)
{
  vec_reset_length (mm->merge_in);
  for (u32 i = 0; i < vec_len (mm->threads); i++)
    if (mm->fresh[i])
      {
        marllb_stage_t *st = &mm->threads[i].stage;
        vec_add1 (mm->merge_in, q ? st->fct[s] : st->dur[s]);
      }
  return marllb_reservoir_merge (out, MARLLB_DEFAULT_K, mm->merge_in, vec_len (mm->merge_in),
                                 &mm->merge_rng, seen);
}

static void
marllb_publish_tick (vlib_main_t *vm, marllb_main_t *mm)
{
  marllb_region_hdr_t *h = mm->region.hdr;
  if (marllb_weights_read (h, &mm->weights) == MARLLB_WEIGHTS_NEW)
    marllb_view_publish (mm);

  /* Close the window everywhere.  Threads on dedicated cores answer within
   * microseconds; on a busy machine a thread may wait for a core, so look
   * every MARLLB_VPP_GATHER_WAIT, up to MARLLB_VPP_GATHER_WAITS times. */
  u64 gen = mm->config_gen;
  u64 window = mm->window + 1;
  u64 window_start = mm->window_start_ns;
  mm->window_start_ns = marllb_now_ns (mm, vm);
  __atomic_store_n (&mm->window, window, __ATOMIC_RELEASE);
  for (u32 i = 0; i < vec_len (mm->threads); i++)
    vlib_node_set_interrupt_pending (vlib_get_main_by_index (i), marllb_snapshot_node.index);
  for (u32 waits = 0; waits < MARLLB_VPP_GATHER_WAITS; waits++)
    {
      vlib_process_suspend (vm, MARLLB_VPP_GATHER_WAIT);
      /* A CLI or API call may have rebuilt the banks while we slept. */
      if (gen != mm->config_gen)
        return;
      if (marllb_all_staged (mm, window))
        break;
    }

  marllb_gather (mm, window);

  marllb_frame_hdr_t *f = marllb_frame_begin (h);
  f->ts_ns = marllb_now_ns (mm, vm);
  f->window_start_ns = window_start;
  f->num_servers = mm->n_servers;
  f->flags = MARLLB_FRAME_F_WINDOW_RESET;
  for (u32 s = 0; s < mm->n_servers; s++)
    {
      marllb_server_obs_t *o = marllb_server (h, f, s);
      o->active = mm->view.up[s];
      o->active_flows = o->new_flows = o->completed_flows = 0;
      for (u32 i = 0; i < vec_len (mm->counts); i++)
        {
          o->active_flows += mm->counts[i].active[s];
          o->new_flows += mm->counts[i].new_flows[s];
          o->completed_flows += mm->counts[i].completed[s];
        }
      o->n_dur = marllb_merge (mm, s, 0, marllb_dur_samples (o), &o->dur_seen);
      o->n_fct = marllb_merge (mm, s, 1, marllb_fct_samples (h, o), &o->fct_seen);
    }
  marllb_frame_commit (h, f);
}

/*
 * A process node is a cooperative thread on the main thread: it runs only
 * between node dispatches and yields in vlib_process_wait_* or _suspend, so
 * it never races the CLI, API or lb's updates, all on the main thread.
 */
static uword
marllb_publisher_fn (vlib_main_t *vm, vlib_node_runtime_t *rt, vlib_frame_t *frame)
{
  marllb_main_t *mm = &marllb_main;
  f64 next = vlib_time_now (vm);
  u64 gen = mm->config_gen;
  while (1)
    {
      f64 period = mm->period_ms * 1e-3;
      if (gen != mm->config_gen)
        {
          gen = mm->config_gen;
          next = vlib_time_now (vm);
        }
      next += period;
      f64 now = vlib_time_now (vm);
      if (next < now) /* fell behind: restart the schedule, no burst */
        next = now + period;
      vlib_process_suspend (vm, next - now);
      if (mm->region.hdr && gen == mm->config_gen)
        marllb_publish_tick (vm, mm);
    }
  return 0;
}

VLIB_REGISTER_NODE (marllb_publisher_node) = {
  .function = marllb_publisher_fn,
  .type = VLIB_NODE_TYPE_PROCESS,
  .name = "marllb-publisher",
  /* 128 KiB: marllb_weights_read copies up to 1024 weights on the stack. */
  .process_log2_n_stack_bytes = 17,
};
