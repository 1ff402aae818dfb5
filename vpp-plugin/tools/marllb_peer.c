/*
 * marllb_peer.c - a small C data-plane peer that stands in for VPP.
 *
 *   marllb-peer publish --name N [--servers 16] [--capacity C] [--k 128]
 *                [--ring 8] [--period-ms 200] [--load 0.8] [--seed 1]
 *                [--frames F] [--stress] [--print-weights] [--mode 0600]
 *   marllb-peer weights --name N [--count 1] [--interval-ms 100]
 *
 * publish: owns the region, runs a flow-level traffic model (Poisson
 * arrivals, exponential work, processor-sharing servers with 1 or 2
 * workers), dispatches every new flow by SED over the weights it reads from
 * the slot, samples flow durations (age of active flows, each tick) and
 * completion times (at completion) into per-server reservoirs, and
 * publishes one frame per period.  --stress publishes as fast as it can and
 * fills every field of frame f with f, so a reader can check that an
 * accepted frame is self-consistent.  SIGINT/SIGTERM unlink and exit 0.
 *
 * weights: attaches and prints the weights slot as JSON lines.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "marllb_dispatch.h"
#include "marllb_reservoir.h"
#include "marllb_ring.h"

#define MAX_FLOWS (1u << 16)

static volatile sig_atomic_t stop_flag;

static void
on_signal (int sig)
{
  (void) sig;
  stop_flag = 1;
}

static uint64_t
now_ns (clockid_t id)
{
  struct timespec ts;
  clock_gettime (id, &ts);
  return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static void
sleep_ns (uint64_t ns)
{
  struct timespec ts = { (time_t) (ns / 1000000000ull), (long) (ns % 1000000000ull) };
  while (nanosleep (&ts, &ts) < 0 && errno == EINTR && !stop_flag)
    ;
}

static double
uniform01 (marllb_rng_t *r)
{
  return ((double) (marllb_rng_next (r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

typedef struct
{
  const char *name;
  uint32_t servers, capacity, k, ring;
  uint64_t period_ns;
  double load, mean_work;
  uint64_t seed, frames;
  int stress, print_weights;
  mode_t mode;
  uint32_t count;
  uint64_t interval_ns;
} opts_t;

typedef struct
{
  uint32_t server;
  double remaining; /* work left, seconds at full speed */
  uint64_t start_ns;
} flow_t;

static void
usage (void)
{
  fprintf (stderr, "usage: marllb-peer publish --name N [--servers S] [--capacity C] [--k K]\n"
                   "         [--ring R] [--period-ms P] [--load L] [--seed X] [--frames F]\n"
                   "         [--stress] [--print-weights] [--mode 0600|0660]\n"
                   "       marllb-peer weights --name N [--count C] [--interval-ms I]\n");
  exit (2);
}

static int
parse (int argc, char **argv, opts_t *o)
{
  *o = (opts_t) { .servers = 16, .k = MARLLB_DEFAULT_K, .ring = 8, .period_ns = 200000000ull,
                  .load = 0.8, .mean_work = 0.05, .seed = 1, .mode = 0600, .count = 1,
                  .interval_ns = 100000000ull };
  for (int i = 2; i < argc; i++)
    {
      const char *a = argv[i];
      const char *v = i + 1 < argc ? argv[i + 1] : NULL;
      if (!strcmp (a, "--stress"))
        o->stress = 1;
      else if (!strcmp (a, "--print-weights"))
        o->print_weights = 1;
      else if (!v)
        usage ();
      else if (!strcmp (a, "--name"))
        o->name = v, i++;
      else if (!strcmp (a, "--servers"))
        o->servers = (uint32_t) strtoul (v, NULL, 10), i++;
      else if (!strcmp (a, "--capacity"))
        o->capacity = (uint32_t) strtoul (v, NULL, 10), i++;
      else if (!strcmp (a, "--k"))
        o->k = (uint32_t) strtoul (v, NULL, 10), i++;
      else if (!strcmp (a, "--ring"))
        o->ring = (uint32_t) strtoul (v, NULL, 10), i++;
      else if (!strcmp (a, "--period-ms"))
        o->period_ns = (uint64_t) (strtod (v, NULL) * 1e6), i++;
      else if (!strcmp (a, "--load"))
        o->load = strtod (v, NULL), i++;
      else if (!strcmp (a, "--seed"))
        o->seed = strtoull (v, NULL, 10), i++;
      else if (!strcmp (a, "--frames"))
        o->frames = strtoull (v, NULL, 10), i++;
      else if (!strcmp (a, "--mode"))
        o->mode = (mode_t) strtoul (v, NULL, 8), i++;
      else if (!strcmp (a, "--count"))
        o->count = (uint32_t) strtoul (v, NULL, 10), i++;
      else if (!strcmp (a, "--interval-ms"))
        o->interval_ns = (uint64_t) (strtod (v, NULL) * 1e6), i++;
      else
        usage ();
    }
  if (!o->name)
    usage ();
  if (!o->capacity)
    o->capacity = o->servers;
  return 0;
}

static void
print_weights (const marllb_weights_state_t *st, const char *status)
{
  printf ("{\"status\":\"%s\",\"decision_no\":%" PRIu64 ",\"policy_id\":%u,\"weights\":[", status,
          st->decision_no, st->policy_id);
  for (uint32_t i = 0; i < st->n; i++)
    printf ("%s%.17g", i ? "," : "", st->weights[i]);
  printf ("]}\n");
  fflush (stdout);
}

static const char *
status_name (marllb_weights_status_t s)
{
  static const char *names[] = { "new", "unchanged", "torn", "invalid", "empty" };
  return names[s];
}

/* Fill every field of a frame with its frame number (stress mode). */
static void
fill_stress (marllb_region_hdr_t *h, marllb_frame_hdr_t *f, uint64_t no)
{
  f->ts_ns = no;
  f->window_start_ns = no;
  f->num_servers = h->num_servers;
  for (uint32_t i = 0; i < h->num_servers; i++)
    {
      marllb_server_obs_t *s = marllb_server (h, f, i);
      s->active = 1;
      s->n_dur = s->n_fct = h->reservoir_k;
      s->active_flows = s->new_flows = s->completed_flows = no;
      s->dur_seen = s->fct_seen = no;
      marllb_sample_t *d = marllb_dur_samples (s), *c = marllb_fct_samples (h, s);
      for (uint32_t j = 0; j < h->reservoir_k; j++)
        {
          d[j].value = c[j].value = (double) no;
          d[j].t_ns = c[j].t_ns = no;
        }
    }
}

static int
cmd_publish (const opts_t *o)
{
  marllb_region_t region;
  int rv = marllb_region_create (&region, o->name, o->capacity, o->servers, o->ring, o->k, o->mode,
                                 MARLLB_DEFAULT_MAX_WEIGHT_RATIO, o->period_ns);
  if (rv < 0)
    {
      fprintf (stderr, "marllb-peer: cannot create region %s: %s\n", o->name, strerror (-rv));
      return 1;
    }
  marllb_region_hdr_t *h = region.hdr;
  uint32_t n = o->servers, k = o->k;

  marllb_sample_t *store = calloc ((size_t) n * 2 * k, sizeof (marllb_sample_t));
  marllb_reservoir_t *dur = calloc (n, sizeof (*dur)), *fct = calloc (n, sizeof (*fct));
  flow_t *flows = calloc (MAX_FLOWS, sizeof (flow_t));
  uint64_t *active = calloc (n, sizeof (uint64_t)), *newf = calloc (n, sizeof (uint64_t));
  uint64_t *done = calloc (n, sizeof (uint64_t));
  uint8_t *up = calloc (n, 1);
  double *workers = calloc (n, sizeof (double));
  if (!store || !dur || !fct || !flows || !active || !newf || !done || !up || !workers)
    {
      fprintf (stderr, "marllb-peer: out of memory\n");
      return 1;
    }
  double total_workers = 0;
  for (uint32_t i = 0; i < n; i++)
    {
      marllb_reservoir_init (&dur[i], store + (size_t) i * 2 * k, k, o->seed * 1000003u + 2 * i);
      marllb_reservoir_init (&fct[i], store + (size_t) i * 2 * k + k, k,
                             o->seed * 1000003u + 2 * i + 1);
      up[i] = 1;
      workers[i] = (i % 2) ? 2.0 : 1.0; /* heterogeneous: 1 and 2 workers */
      total_workers += workers[i];
    }
  marllb_rng_t rng;
  marllb_rng_seed (&rng, o->seed);
  marllb_weights_state_t wst;
  marllb_weights_state_init (&wst, n);
  uint32_t nflows = 0;
  double dt = (double) o->period_ns * 1e-9;
  double rate = o->load * total_workers / o->mean_work; /* flows per second */
  uint64_t sim_ns = now_ns (CLOCK_REALTIME), window_start = sim_ns;
  uint64_t next_tick = now_ns (CLOCK_MONOTONIC);

  for (uint64_t no = 0; !stop_flag && (!o->frames || no < o->frames); no++)
    {
      if (o->stress)
        {
          marllb_frame_hdr_t *f = marllb_frame_begin (h);
          fill_stress (h, f, f->frame_no);
          marllb_frame_commit (h, f);
          continue;
        }
      marllb_weights_status_t ws = marllb_weights_read (h, &wst);
      if (o->print_weights && ws != MARLLB_WEIGHTS_UNCHANGED && ws != MARLLB_WEIGHTS_EMPTY)
        print_weights (&wst, status_name (ws));

      /* Arrivals over the tick, dispatched by SED on the current weights. */
      double t = 0;
      for (;;)
        {
          t += -log (uniform01 (&rng)) / rate;
          if (t >= dt)
            break;
          int32_t s = marllb_sed_pick (active, wst.weights, up, n);
          if (s < 0 || nflows == MAX_FLOWS)
            continue;
          flows[nflows++] = (flow_t) { (uint32_t) s, -log (uniform01 (&rng)) * o->mean_work,
                                       sim_ns + (uint64_t) (t * 1e9) };
          active[s]++;
          newf[s]++;
        }
      sim_ns += o->period_ns;
      /* Processor sharing: each flow progresses at min(workers/active, 1). */
      for (uint32_t j = 0; j < nflows;)
        {
          flow_t *fl = &flows[j];
          double speed = fmin (workers[fl->server] / (double) active[fl->server], 1.0);
          fl->remaining -= speed * dt;
          double age = (double) (sim_ns - fl->start_ns) * 1e-9;
          if (fl->remaining <= 0)
            {
              marllb_reservoir_add (&fct[fl->server], age, sim_ns);
              done[fl->server]++;
              active[fl->server]--;
              *fl = flows[--nflows];
              continue;
            }
          marllb_reservoir_add (&dur[fl->server], age, sim_ns);
          j++;
        }

      marllb_frame_hdr_t *f = marllb_frame_begin (h);
      f->ts_ns = sim_ns;
      f->window_start_ns = window_start;
      f->num_servers = n;
      f->flags = MARLLB_FRAME_F_WINDOW_RESET;
      for (uint32_t i = 0; i < n; i++)
        {
          marllb_server_obs_t *s = marllb_server (h, f, i);
          s->active = up[i];
          s->active_flows = active[i];
          s->new_flows = newf[i];
          s->completed_flows = done[i];
          s->dur_seen = dur[i].seen;
          s->fct_seen = fct[i].seen;
          s->n_dur = dur[i].n;
          s->n_fct = fct[i].n;
          memcpy (marllb_dur_samples (s), dur[i].samples, k * sizeof (marllb_sample_t));
          memcpy (marllb_fct_samples (h, s), fct[i].samples, k * sizeof (marllb_sample_t));
          marllb_reservoir_reset (&dur[i]);
          marllb_reservoir_reset (&fct[i]);
        }
      marllb_frame_commit (h, f);
      window_start = sim_ns;

      next_tick += o->period_ns;
      uint64_t now = now_ns (CLOCK_MONOTONIC);
      if (next_tick > now)
        sleep_ns (next_tick - now);
      else
        next_tick = now; /* late: drop the missed ticks, never publish a burst */
    }
  free (store), free (dur), free (fct), free (flows), free (active), free (newf), free (done);
  free (up), free (workers);
  marllb_region_close (&region, 1);
  return 0;
}

static int
cmd_weights (const opts_t *o)
{
  marllb_region_t region;
  int rv = marllb_region_attach (&region, o->name);
  if (rv < 0)
    {
      fprintf (stderr, "marllb-peer: cannot attach region %s: %s\n", o->name, strerror (-rv));
      return 1;
    }
  marllb_weights_state_t st;
  marllb_weights_state_init (&st, region.hdr->num_servers);
  for (uint32_t i = 0; i < o->count && !stop_flag; i++)
    {
      if (i)
        sleep_ns (o->interval_ns);
      marllb_weights_status_t s = marllb_weights_read (region.hdr, &st);
      print_weights (&st, status_name (s));
    }
  marllb_region_close (&region, 0);
  return 0;
}

int
main (int argc, char **argv)
{
  if (argc < 2)
    usage ();
  struct sigaction sa;
  memset (&sa, 0, sizeof (sa));
  sa.sa_handler = on_signal;
  sigaction (SIGINT, &sa, NULL);
  sigaction (SIGTERM, &sa, NULL);
  opts_t o;
  parse (argc, argv, &o);
  if (!strcmp (argv[1], "publish"))
    return cmd_publish (&o);
  if (!strcmp (argv[1], "weights"))
    return cmd_weights (&o);
  usage ();
  return 2;
}
