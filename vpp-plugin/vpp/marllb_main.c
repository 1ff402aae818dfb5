/*
 * marllb_main.c - plugin registration, initialisation and reconfiguration:
 * the region, the per-thread banks, the dispatch view and lb's VIP updates.
 * Everything here runs on the main thread.
 */
#include <grp.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vnet/plugin/plugin.h>
#include <vpp/app/version.h>

#include "marllb_vpp.h"

marllb_main_t marllb_main;

/* default_disabled: the plugin creates a shm region and takes over lb's
 * choice of AS for the bound VIP, so loading it is an explicit decision
 * (startup.conf: plugins { plugin marllb_plugin.so { enable } }). */
VLIB_PLUGIN_REGISTER () = {
  .version = VPP_BUILD_VER,
  .description = "MARLLB control-plane integration for the lb plugin",
  .default_disabled = 1,
};

static void
marllb_reservoirs_build (marllb_reservoir_t **dur, marllb_reservoir_t **fct,
                         marllb_sample_t **samples, u32 n, u64 seed)
{
  u32 k = MARLLB_DEFAULT_K;
  vec_validate (*dur, n - 1);
  vec_validate (*fct, n - 1);
  vec_validate_aligned (*samples, 2 * n * k - 1, CLIB_CACHE_LINE_BYTES);
  for (u32 s = 0; s < n; s++)
    {
      marllb_reservoir_init (&(*dur)[s], *samples + 2 * s * k, k, seed + 2 * s);
      marllb_reservoir_init (&(*fct)[s], *samples + (2 * s + 1) * k, k, seed + 2 * s + 1);
    }
}

/* Rebuild one thread's bank for n servers; the thread is parked or idle. */
static void
marllb_bank_build (marllb_main_t *mm, marllb_thread_t *t, u32 thread_index, u32 n)
{
  marllb_stage_t *st = &t->stage;
  marllb_counts_t *c = &mm->counts[thread_index];
  u64 **counters[] = { &t->active,  &t->new_flows,  &t->completed, &st->active,
                       &st->new_flows, &st->completed, &c->active, &c->new_flows,
                       &c->completed };
  for (u32 i = 0; i < ARRAY_LEN (counters); i++)
    {
      vec_free (*counters[i]);
      vec_validate_aligned (*counters[i], n - 1, CLIB_CACHE_LINE_BYTES);
    }
  vec_free (t->dur), vec_free (t->fct), vec_free (t->samples);
  vec_free (st->dur), vec_free (st->fct), vec_free (st->samples);
  /* Distinct PRNG streams per thread and server. */
  marllb_reservoirs_build (&t->dur, &t->fct, &t->samples, n, (u64) thread_index << 32);
  marllb_reservoir_bank_init (&t->dur_bank, t->dur, n, ((u64) thread_index << 32) | 0xd0a7);
  marllb_reservoirs_build (&st->dur, &st->fct, &st->samples, n, 0);
  clib_memset (t->flows, 0, vec_bytes (t->flows));
  t->untracked = st->untracked = c->untracked = 0;
  t->sweep = 0;
  t->window = st->window = mm->window;
  /* The old views may name more servers than the new arrays hold: drop
   * them.  view_seq 0 differs from any published sequence, so the thread
   * copies the new view on its next packet. */
  t->view[0].vip_index = t->view[1].vip_index = ~0;
  t->view[0].n = t->view[1].n = 0;
  t->view_seq = 0;
}

/* (Re)create the region and rebuild the banks; workers are parked. */
static clib_error_t *
marllb_configure (marllb_main_t *mm, const char *name, u32 n, u32 period_ms)
{
  if (n == 0 || n > MARLLB_MAX_SERVERS)
    return clib_error_return (0, "servers %u out of range: want 1..%u", n, MARLLB_MAX_SERVERS);
  if (period_ms == 0 || period_ms > 60000)
    return clib_error_return (0, "period %u ms out of range: want 1..60000", period_ms);

  marllb_region_t r;
  int rv = marllb_region_create (&r, name, n, n, MARLLB_VPP_RING_LEN, MARLLB_DEFAULT_K,
                                 MARLLB_VPP_REGION_MODE, MARLLB_DEFAULT_MAX_WEIGHT_RATIO,
                                 (u64) period_ms * 1000000);
  if (rv < 0)
    return clib_error_return (0,
                              "cannot create region /dev/shm/marllb-%s: %s (want a name "
                              "without '/' and a writable /dev/shm)",
                              name, strerror (-rv));
  /* Mode 0660 lets the daemon attach when it runs in group vpp. */
  struct group *g = getgrnam (MARLLB_VPP_REGION_GROUP);
  mm->region_group_ok = g && chown (r.path, (uid_t) -1, g->gr_gid) == 0;

  /* Same name: create already unlinked the old file, so only unmap it.
   * name may point into the old region_name: copy it before freeing. */
  int same = mm->region.hdr && !strcmp ((char *) mm->region_name, name);
  u8 *new_name = format (0, "%s%c", name, 0);
  marllb_region_close (&mm->region, !same);
  mm->region = r;
  vec_free (mm->region_name);
  mm->region_name = new_name;
  mm->n_servers = n;
  mm->period_ms = period_ms;
  marllb_weights_state_init (&mm->weights, n);
  mm->window_start_ns = marllb_now_ns (mm, vlib_get_main ());
  mm->late = 0;
  for (u32 i = 0; i < vec_len (mm->threads); i++)
    marllb_bank_build (mm, &mm->threads[i], i, n);
  mm->config_gen++;
  marllb_view_publish (mm);
  return 0;
}

void
marllb_view_publish (marllb_main_t *mm)
{
  marllb_view_t *v = &mm->view;
  marllb_backend_t *be = mm->vip_index < vec_len (mm->backends) ? mm->backends[mm->vip_index] : 0;
  u64 s = mm->view_seq;
  __atomic_store_n (&mm->view_seq, s + 1, __ATOMIC_RELAXED);
  __atomic_thread_fence (__ATOMIC_RELEASE);
  v->vip_index = mm->vip_index;
  v->n = mm->n_servers;
  for (u32 i = 0; i < v->n; i++)
    {
      int have = i < vec_len (be);
      v->as_index[i] = have ? be[i].as_index : 0;
      v->up[i] = have && be[i].lb_weight > 0;
      v->weight[i] = mm->weights.weights[i];
    }
  __atomic_store_n (&mm->view_seq, s + 2, __ATOMIC_RELEASE);
}

clib_error_t *
marllb_set (marllb_main_t *mm, const marllb_set_args_t *a)
{
  const char *old = mm->region_name ? (char *) mm->region_name : MARLLB_VPP_DEFAULT_REGION;
  const char *name = a->region ? a->region : old;
  u32 n = a->servers ? a->servers : mm->n_servers ? mm->n_servers : MARLLB_VPP_DEFAULT_SERVERS;
  u32 period = a->period_ms ? a->period_ms
               : mm->period_ms ? mm->period_ms
                               : MARLLB_VPP_DEFAULT_PERIOD_MS;
  if (a->timeout_s > 3600)
    return clib_error_return (0, "timeout %u s out of range: want 1..3600", a->timeout_s);
  if (!mm->region.hdr || strcmp (name, old) || n != mm->n_servers || period != mm->period_ms)
    {
      clib_error_t *err = marllb_configure (mm, name, n, period);
      if (err)
        return err;
    }
  if (a->timeout_s)
    mm->flow_timeout_ns = (u64) a->timeout_s * 1000000000ull;
  if (a->set_vip)
    {
      mm->vip_index = a->vip_index;
      marllb_view_publish (mm);
    }
  return 0;
}

/* Servers are the VIP's ASs in address order, so server i names the same
 * backend across restarts of VPP as long as the set is the same. */
static int
marllb_backend_cmp (void *a, void *b)
{
  const marllb_backend_t *x = a, *y = b;
  int c = ip46_address_cmp (&x->addr, &y->addr);
  return c ? c : (x->as_index > y->as_index) - (x->as_index < y->as_index);
}

void
marllb_vip_update (u32 vip_index, const u32 *as_index, const ip46_address_t *addr,
                   const u8 *lb_weight, u32 n)
{
  marllb_main_t *mm = &marllb_main;
  vec_validate (mm->backends, vip_index);
  marllb_backend_t **be = &mm->backends[vip_index];
  vec_reset_length (*be);
  for (u32 i = 0; i < n; i++)
    {
      marllb_backend_t b = { .addr = addr[i], .as_index = as_index[i], .lb_weight = lb_weight[i] };
      vec_add1 (*be, b);
    }
  vec_sort_with_function (*be, marllb_backend_cmp);
  if (vip_index == mm->vip_index && mm->region.hdr)
    marllb_view_publish (mm);
}

static clib_error_t *
marllb_init (vlib_main_t *vm)
{
  marllb_main_t *mm = &marllb_main;
  struct timespec ts;
  clock_gettime (CLOCK_REALTIME, &ts);
  mm->unix_anchor_ns = (u64) ts.tv_sec * 1000000000ull + (u64) ts.tv_nsec;
  mm->vlib_anchor = vlib_time_now (vm);
  mm->log_class = vlib_log_register_class ("marllb", 0);
  mm->vip_index = ~0;
  mm->flow_timeout_ns = (u64) MARLLB_VPP_DEFAULT_TIMEOUT_S * 1000000000ull;
  marllb_rng_seed (&mm->merge_rng, mm->unix_anchor_ns);

  /* One bank per vlib thread, indexed by vm->thread_index.  Views start
   * unbound, so a thread never dispatches before its first copy. */
  u32 n_threads = vlib_get_thread_main ()->n_vlib_mains;
  vec_validate_aligned (mm->threads, n_threads - 1, CLIB_CACHE_LINE_BYTES);
  vec_validate (mm->counts, n_threads - 1);
  vec_validate (mm->fresh, n_threads - 1);
  for (u32 i = 0; i < n_threads; i++)
    {
      marllb_thread_t *t = &mm->threads[i];
      vec_validate_aligned (t->flows, MARLLB_VPP_FLOW_MASK, CLIB_CACHE_LINE_BYTES);
      t->view[0].vip_index = t->view[1].vip_index = ~0;
    }

  clib_error_t *err = marllb_configure (mm, MARLLB_VPP_DEFAULT_REGION,
                                        MARLLB_VPP_DEFAULT_SERVERS, MARLLB_VPP_DEFAULT_PERIOD_MS);
  if (err)
    {
      /* VPP still starts; `set marllb region <name>` retries. */
      vlib_log_err (mm->log_class, "%U", format_clib_error, err);
      clib_error_free (err);
    }
  return 0;
}

VLIB_INIT_FUNCTION (marllb_init);

/* Unlink the region on a clean shutdown, so no reader attaches to a dead
 * producer's file (a crash leaves it; the heartbeat then goes stale). */
static clib_error_t *
marllb_exit (vlib_main_t *vm)
{
  marllb_region_close (&marllb_main.region, 1);
  return 0;
}

VLIB_MAIN_LOOP_EXIT_FUNCTION (marllb_exit);
