/*
 * bench_dispatch.c - nanoseconds per new-flow pick of the stateful rules
 * (marllb_peak_ewma_pick, marllb_prequal_pick) beside the SED pick
 * (marllb_sed_pick), measured in the same run over 16 and 64 servers.
 *
 * Each contender cycles through SETS precomputed server states (active
 * counts, peak-EWMA states, probe pools of 16; weights 1, 2 or 4, a server in
 * eight down) and a stream of flow hashes, so neither the branch predictor
 * nor the caches see one repeated input.  Before each Prequal pick one slot
 * of its pool (cyclically) takes the next probe of a precomputed stream, as
 * the simulator's refresh does; that 32-byte copy is timed with the pick
 * (Q_RIF 0.84, two uses per probe, no probe too old).  A figure is the median of --reps
 * timed passes of --picks picks, the three contenders interleaved; every
 * pick's result folds into a printed checksum so none is dead code.
 *
 * Prints one JSON line: {"servers": [16, 64], "sed_ns": [...],
 * "peak_ewma_ns": [...], "prequal_ns": [...], "picks": P, "reps": R,
 * "checksum": C}.
 * usage: marllb-bench-dispatch [--quick] [--picks P] [--reps R]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "marllb_dispatch.h"

#define SETS 256u
#define MAX_SERVERS 64u
#define POOL 16u
#define MAX_REPS 101
#define TAU_NS 1e10

typedef struct
{
  uint64_t active[SETS][MAX_SERVERS];
  marllb_peak_ewma_t ewma[SETS][MAX_SERVERS];
  marllb_probe_t pool[SETS][POOL];
  double weight[MAX_SERVERS];
  uint8_t up[MAX_SERVERS];
  uint64_t hash[SETS * 4];
  marllb_probe_t stream[SETS * 4];
} input_t;

static uint64_t
splitmix (uint64_t *state)
{
  uint64_t z = (*state += UINT64_C (0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static double
now_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static void
fill (input_t *in, uint32_t n, uint64_t now)
{
  uint64_t st = 20261204;
  for (uint32_t i = 0; i < n; i++)
    {
      in->weight[i] = (double) (1u << (splitmix (&st) % 3));
      in->up[i] = (uint8_t) (i % 8 != 5);
    }
  for (uint32_t k = 0; k < SETS; k++)
    {
      for (uint32_t i = 0; i < n; i++)
        {
          in->active[k][i] = splitmix (&st) % 12;
          in->ewma[k][i].ewma = 0.05 + (double) (splitmix (&st) % 1000) * 1e-3;
          in->ewma[k][i].stamp_ns = now - splitmix (&st) % 2000000000u;
        }
      for (uint32_t j = 0; j < POOL; j++)
        {
          marllb_probe_t *p = &in->pool[k][j];
          p->server = (int32_t) (splitmix (&st) % n);
          p->rif = (uint32_t) (splitmix (&st) % 12);
          p->latency = 0.1 * (double) (p->rif + 1) / in->weight[p->server];
          p->t_ns = now - splitmix (&st) % 100000000u;
          p->uses = 0;
          p->reserved = 0;
        }
    }
  for (uint32_t h = 0; h < SETS * 4; h++)
    {
      in->hash[h] = splitmix (&st);
      marllb_probe_t *p = &in->stream[h];
      p->server = (int32_t) (splitmix (&st) % n);
      p->rif = (uint32_t) (splitmix (&st) % 12);
      p->latency = 0.1 * (double) (p->rif + 1) / in->weight[p->server];
      p->t_ns = now;
      p->uses = 0;
      p->reserved = 0;
    }
}

typedef enum
{
  SED,
  PEAK_EWMA,
  PREQUAL,
  CONTENDERS
} contender_t;

/* One timed pass: ns per pick. */
static double
pass (input_t *in, uint32_t n, contender_t who, uint64_t picks, uint64_t now, uint64_t *sum)
{
  uint64_t acc = 0;
  double t0 = now_s ();
  for (uint64_t i = 0; i < picks; i++)
    {
      uint32_t k = (uint32_t) (i % SETS);
      uint64_t h = in->hash[i % (SETS * 4)];
      int32_t s;
      if (who == SED)
        s = marllb_sed_pick (in->active[k], in->weight, in->up, n);
      else if (who == PEAK_EWMA)
        s = marllb_peak_ewma_pick (in->active[k], in->weight, in->up, in->ewma[k], n, h, now,
                                   TAU_NS);
      else
        {
          in->pool[k][i % POOL] = in->stream[i % (SETS * 4)];
          s = marllb_prequal_pick (in->pool[k], POOL, in->up, n, h, now, UINT64_MAX, 0.84, 2);
        }
      acc += (uint64_t) (s + 1);
    }
  double dt = now_s () - t0;
  *sum += acc;
  return dt * 1e9 / (double) picks;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

int
main (int argc, char **argv)
{
  uint64_t picks = 1u << 21;
  int reps = 9;
  for (int i = 1; i < argc; i++)
    {
      if (strcmp (argv[i], "--quick") == 0)
        {
          picks = 1u << 18;
          reps = 5;
        }
      else if (strcmp (argv[i], "--picks") == 0 && i + 1 < argc)
        picks = strtoull (argv[++i], NULL, 10);
      else if (strcmp (argv[i], "--reps") == 0 && i + 1 < argc)
        reps = atoi (argv[++i]);
      else
        {
          fprintf (stderr, "usage: %s [--quick] [--picks P] [--reps R]\n", argv[0]);
          return 2;
        }
    }
  if (reps < 1 || reps > MAX_REPS || picks == 0)
    {
      fprintf (stderr, "%s: --reps must be in 1..%d and --picks > 0\n", argv[0], MAX_REPS);
      return 2;
    }
  input_t *in = malloc (sizeof (*in));
  if (!in)
    return 1;
  const uint32_t sizes[2] = { 16, 64 };
  double med[2][CONTENDERS];
  uint64_t sum = 0, now = UINT64_C (100000000000);
  for (int z = 0; z < 2; z++)
    {
      fill (in, sizes[z], now);
      double t[CONTENDERS][MAX_REPS];
      for (int c = 0; c < CONTENDERS; c++)
        pass (in, sizes[z], (contender_t) c, picks / 4 + 1, now, &sum); /* warm-up */
      for (int r = 0; r < reps; r++)
        for (int c = 0; c < CONTENDERS; c++)
          t[c][r] = pass (in, sizes[z], (contender_t) c, picks, now, &sum);
      for (int c = 0; c < CONTENDERS; c++)
        {
          qsort (t[c], (size_t) reps, sizeof (double), cmp_double);
          med[z][c] = t[c][reps / 2];
        }
    }
  printf ("{\"servers\": [%u, %u], \"sed_ns\": [%.3f, %.3f], \"peak_ewma_ns\": [%.3f, %.3f], "
          "\"prequal_ns\": [%.3f, %.3f], \"picks\": %" PRIu64 ", \"reps\": %d, "
          "\"checksum\": %" PRIu64 "}\n",
          sizes[0], sizes[1], med[0][SED], med[1][SED], med[0][PEAK_EWMA], med[1][PEAK_EWMA],
          med[0][PREQUAL], med[1][PREQUAL], picks, reps, sum);
  free (in);
  return 0;
}
