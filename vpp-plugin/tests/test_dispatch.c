/*
 * test_dispatch.c - behaviour of the dispatch rules: choices, ties, down
 * servers, alias-table masses and sampling, Maglev balance and disruption,
 * peak-EWMA and Prequal by hand and against the shared vectors file that the
 * Python twin's test reads too (argv[1], dispatch_vectors.txt).
 *
 * Checks stay active in Release builds (no assert()); exit status 1 on any
 * failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "marllb_dispatch.h"

static int failures;

#define CHECK(cond)                                                                          \
  do                                                                                         \
    {                                                                                        \
      if (!(cond))                                                                           \
        {                                                                                    \
          fprintf (stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
          failures++;                                                                        \
        }                                                                                    \
    }                                                                                        \
  while (0)

#define N_OF(a) ((uint32_t) (sizeof (a) / sizeof ((a)[0])))

/* splitmix64: a deterministic stream of test hashes. */
static uint64_t
next_hash (uint64_t *state)
{
  uint64_t z = (*state += UINT64_C (0x9e3779b97f4a7c15));
  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static void
test_sed (void)
{
  uint64_t active[] = { 3, 3, 3, 3 };
  double weight[] = { 1.0, 2.0, 2.0, 1.0 };
  uint8_t up[] = { 1, 1, 1, 1 };
  /* Equal load: the higher weight wins; the tie between 1 and 2 goes low. */
  CHECK (marllb_sed_pick (active, weight, up, 4) == 1);
  up[1] = 0;
  CHECK (marllb_sed_pick (active, weight, up, 4) == 2);
  /* (5 + 1) / 2 = 3 > (1 + 1) / 1 = 2: load outweighs weight. */
  active[2] = 5;
  active[3] = 1;
  CHECK (marllb_sed_pick (active, weight, up, 4) == 3);

  /* Non-finite or non-positive weights are never picked. */
  uint64_t a2[] = { 9, 0, 0, 0, 0 };
  double w2[] = { 1.0, 0.0, -1.0, NAN, INFINITY };
  uint8_t u2[] = { 1, 1, 1, 1, 1 };
  CHECK (marllb_sed_pick (a2, w2, u2, 5) == 0);
  u2[0] = 0;
  CHECK (marllb_sed_pick (a2, w2, u2, 5) == -1);

  uint8_t none[] = { 0, 0, 0, 0 };
  CHECK (marllb_sed_pick (active, weight, none, 4) == -1);
  CHECK (marllb_sed_pick (active, weight, up, 0) == -1);
}

static void
test_lsq (void)
{
  uint64_t active[] = { 4, 2, 7, 2 };
  uint8_t up[] = { 1, 1, 1, 1 };
  CHECK (marllb_lsq_pick (active, up, 4) == 1);
  up[1] = 0;
  CHECK (marllb_lsq_pick (active, up, 4) == 3);
  up[3] = 0;
  CHECK (marllb_lsq_pick (active, up, 4) == 0);
  uint8_t none[] = { 0, 0, 0, 0 };
  CHECK (marllb_lsq_pick (active, none, 4) == -1);
}

static void
test_p2 (void)
{
  uint64_t active[] = { 5, 1, 5, 0, 5 };
  double weight[] = { 1.0, 1.0, 1.0, 1.0, 1.0 };
  uint8_t up[] = { 1, 1, 1, 1, 1 };

  /* k = 5: r1 = (2^31 * 5) >> 32 = 2; r2 = (0 * 4) >> 32 = 0 -> servers 2, 0;
   * equal load, so the lower index. */
  uint64_t h = UINT64_C (0x80000000);
  CHECK (marllb_p2_pick (active, weight, up, 5, h, 0) == 0);
  /* r1 = 2, r2 = (2^31 * 4) >> 32 = 2 -> skips r1 -> 3: server 3 is idle. */
  h = (UINT64_C (0x80000000) << 32) | UINT64_C (0x80000000);
  CHECK (marllb_p2_pick (active, weight, up, 5, h, 0) == 3);
  /* SED with weight 4 on server 2: (5 + 1) / 4 < (0 + 1) / 1 is false. */
  weight[2] = 4.0;
  CHECK (marllb_p2_pick (active, weight, up, 5, h, 1) == 3);
  weight[3] = 0.25;
  CHECK (marllb_p2_pick (active, weight, up, 5, h, 1) == 2);

  /* Candidates are distinct: with equal load the pair's lower index wins, so
   * the last eligible server never does. */
  uint64_t flat[] = { 2, 2, 2, 2, 2, 2 };
  double ones[] = { 1, 1, 1, 1, 1, 1 };
  uint8_t up6[] = { 1, 0, 1, 1, 0, 1 };
  uint64_t st = 42;
  uint32_t seen[6] = { 0 };
  for (int t = 0; t < 20000; t++)
    {
      int32_t c = marllb_p2_pick (flat, ones, up6, 6, next_hash (&st), t & 1);
      CHECK (c >= 0 && c < 6);
      if (c >= 0 && c < 6)
        seen[c]++;
    }
  CHECK (seen[1] == 0 && seen[4] == 0 && seen[5] == 0);
  CHECK (seen[0] > 0 && seen[2] > 0 && seen[3] > 0);

  /* sed2 skips bad weights; one eligible server is always the pick. */
  double bad[] = { NAN, 1.0, 0.0, -2.0, INFINITY };
  for (int t = 0; t < 100; t++)
    {
      uint64_t hh = next_hash (&st);
      CHECK (marllb_p2_pick (active, bad, up, 5, hh, 1) == 1);
    }
  uint8_t none[] = { 0, 0, 0, 0, 0 };
  CHECK (marllb_p2_pick (active, weight, none, 5, 123, 0) == -1);
  CHECK (marllb_p2_pick (active, weight, none, 5, 123, 1) == -1);
}

/* Exact selection probability of each server implied by an alias table. */
static void
alias_masses (const marllb_alias_t *a, double *mass)
{
  for (uint32_t i = 0; i < a->n; i++)
    mass[i] = 0.0;
  for (uint32_t c = 0; c < a->n; c++)
    {
      /* A full column has alias == c, so the remainder returns to c. */
      double accept = a->prob[c] / 4294967296.0;
      mass[c] += accept / a->n;
      if (a->alias[c] >= 0)
        mass[a->alias[c]] += (1.0 - accept) / a->n;
    }
}

static void
test_alias (void)
{
  enum
  {
    N = 6
  };
  double weight[N] = { 1.0, 3.0, 0.5, 2.0, 7.0, 1.5 };
  uint8_t up[N] = { 1, 1, 1, 0, 1, 1 };
  uint32_t prob[N];
  int32_t alias[N];
  marllb_alias_t a = { 0, prob, alias };
  CHECK (marllb_alias_build (&a, weight, up, N) == 0);
  CHECK (a.n == N);

  double total = 0.0;
  for (int i = 0; i < N; i++)
    total += up[i] ? weight[i] : 0.0;
  double mass[N];
  alias_masses (&a, mass);
  for (int i = 0; i < N; i++)
    CHECK (fabs (mass[i] - (up[i] ? weight[i] / total : 0.0)) < 1e-8);

  uint32_t count[N] = { 0 };
  uint64_t st = 7;
  const int draws = 1000000;
  for (int t = 0; t < draws; t++)
    {
      int32_t c = marllb_alias_pick (&a, next_hash (&st));
      CHECK (c >= 0 && c < N);
      if (c >= 0 && c < N)
        count[c]++;
    }
  CHECK (count[3] == 0);
  for (int i = 0; i < N; i++)
    CHECK (fabs ((double) count[i] / draws - mass[i]) < 0.003);

  /* Equal weights: every column is full and maps to itself. */
  double eq[N] = { 2, 2, 2, 2, 2, 2 };
  uint8_t all[N] = { 1, 1, 1, 1, 1, 1 };
  CHECK (marllb_alias_build (&a, eq, all, N) == 0);
  for (int i = 0; i < N; i++)
    CHECK (prob[i] == UINT32_MAX && alias[i] == i);

  /* Nothing eligible: -1, and the table picks -1. */
  double bad[N] = { 0.0, -1.0, NAN, INFINITY, 1.0, 1.0 };
  uint8_t up2[N] = { 1, 1, 1, 1, 0, 0 };
  CHECK (marllb_alias_build (&a, bad, up2, N) == -1);
  CHECK (marllb_alias_pick (&a, 0) == -1);
  CHECK (marllb_alias_pick (&a, UINT64_MAX) == -1);
  marllb_alias_t empty = { 0, prob, alias };
  CHECK (marllb_alias_build (&empty, eq, all, 0) == -1);
  CHECK (marllb_alias_pick (&empty, 99) == -1);
}

static void
maglev_counts (const int32_t *table, uint32_t m, uint32_t *count, uint32_t n)
{
  for (uint32_t i = 0; i < n; i++)
    count[i] = 0;
  for (uint32_t j = 0; j < m; j++)
    count[table[j]]++;
}

static void
test_maglev (void)
{
  enum
  {
    N = 10,
    M = 65537
  };
  int32_t *t1 = malloc (M * sizeof (*t1));
  int32_t *t2 = malloc (M * sizeof (*t2));
  CHECK (t1 && t2);
  if (!t1 || !t2)
    return;
  uint8_t up[N] = { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
  CHECK (marllb_maglev_build (t1, M, up, N) == 0);
  uint32_t count[N];
  maglev_counts (t1, M, count, N);
  uint32_t lo = M, hi = 0;
  for (int i = 0; i < N; i++)
    {
      lo = count[i] < lo ? count[i] : lo;
      hi = count[i] > hi ? count[i] : hi;
    }
  CHECK (hi - lo <= 1);

  /* Server 4 goes down: its entries move, under 1% of the others do (about
   * 0.3% measured). */
  up[4] = 0;
  CHECK (marllb_maglev_build (t2, M, up, N) == 0);
  maglev_counts (t2, M, count, N);
  CHECK (count[4] == 0);
  uint32_t kept_slots = 0, moved = 0;
  for (uint32_t j = 0; j < M; j++)
    if (t1[j] != 4)
      {
        kept_slots++;
        moved += t2[j] != t1[j];
      }
  CHECK (moved * 100u < kept_slots);

  uint64_t st = 3;
  for (int t = 0; t < 1000; t++)
    {
      uint64_t h = next_hash (&st);
      CHECK (marllb_maglev_pick (t2, M, h) == t2[h % M]);
    }

  uint8_t none[N] = { 0 };
  CHECK (marllb_maglev_build (t1, 251, none, N) == -1);
  CHECK (t1[0] == -1 && t1[250] == -1);
  CHECK (marllb_maglev_build (t1, 250, up, N) == -1);
  CHECK (marllb_maglev_build (t1, 1, up, N) == -1);
  /* Fewer slots than servers: the table still fills, one entry each. */
  CHECK (marllb_maglev_build (t1, 2, up, N) == 0);
  CHECK (t1[0] != t1[1] && t1[0] >= 0 && t1[1] >= 0);
  free (t1);
  free (t2);
}

static void
test_peak_ewma (void)
{
  marllb_peak_ewma_t st[3];
  marllb_peak_ewma_init (st, 3);
  CHECK (st[0].ewma < 0.0 && st[2].stamp_ns == 0);
  /* The first sample is taken as it is; a larger one jumps (peak). */
  marllb_peak_ewma_update (st, 1, 0.2, 1000, 1e9);
  CHECK (st[1].ewma == 0.2 && st[1].stamp_ns == 1000);
  marllb_peak_ewma_update (st, 1, 0.5, 2000, 1e9);
  CHECK (st[1].ewma == 0.5);
  /* A smaller one one tau later: 0.5 w + 0.1 (1 - w), w = exp (-1). */
  marllb_peak_ewma_update (st, 1, 0.1, 2000 + 1000000000u, 1e9);
  double w = exp (-1.0);
  CHECK (fabs (st[1].ewma - (0.5 * w + 0.1 * (1.0 - w))) < 1e-15);

  uint64_t active[] = { 0, 3, 3 };
  double weight[] = { 1.0, 1.0, 1.0 };
  uint8_t up[] = { 1, 1, 1 };
  /* Hash 0: ranks 0 and 1.  Server 0 has no sample and no flow: cost 0. */
  CHECK (marllb_peak_ewma_pick (active, weight, up, st, 3, 0, 2000 + 1000000000u, 1e9) == 0);
  /* With a flow and still no sample it costs the penalty: server 1 wins. */
  active[0] = 1;
  CHECK (marllb_peak_ewma_pick (active, weight, up, st, 3, 0, 2000 + 1000000000u, 1e9) == 1);
  /* Sampled servers: (3 + 1) x 0.1 beats (1 + 1) x 0.3 (= 0.4 < 0.6)... */
  marllb_peak_ewma_update (st, 0, 0.3, 5000000000u, 1e9);
  st[1].ewma = 0.1;
  st[1].stamp_ns = 5000000000u;
  CHECK (marllb_peak_ewma_pick (active, weight, up, st, 3, 0, 5000000000u, 1e9) == 1);
  /* ... unless server 0 has twice the weight (0.6 / 2 < 0.4). */
  weight[0] = 2.0;
  CHECK (marllb_peak_ewma_pick (active, weight, up, st, 3, 0, 5000000000u, 1e9) == 0);
  /* Decay at read time: server 1's sample is 2 tau older, 0.4 e^-2 < 0.3. */
  weight[0] = 1.0;
  st[1].ewma = 0.4;
  st[1].stamp_ns = 3000000000u;
  CHECK (marllb_peak_ewma_pick (active, weight, up, st, 3, 0, 5000000000u, 1e9) == 1);
  uint8_t none[] = { 0, 0, 0 };
  CHECK (marllb_peak_ewma_pick (active, weight, none, st, 3, 0, 0, 1e9) == -1);
}

static void
set_probe (marllb_probe_t *p, int32_t server, uint32_t rif, double latency, uint64_t t_ns)
{
  p->server = server;
  p->rif = rif;
  p->latency = latency;
  p->t_ns = t_ns;
  p->uses = 0;
  p->reserved = 0;
}

static void
test_prequal (void)
{
  marllb_probe_t pool[6];
  uint8_t up[] = { 1, 1, 1, 1 };
  uint64_t now = 2000000000u, age = 1000000000u;
  set_probe (&pool[0], 0, 5, 0.10, now);
  set_probe (&pool[1], 1, 1, 0.30, now);
  set_probe (&pool[2], 2, 9, 0.05, now);
  set_probe (&pool[3], 3, 2, 0.20, now);
  set_probe (&pool[4], 1, 0, 0.40, now);
  set_probe (&pool[5], -1, 0, 0.0, 0);
  /* m = 5, j = (int) (0.84 * 4) = 3: server 2's probe (4 lower RIFs) is hot,
   * so the coldest-latency cold probe is server 0's; it now counts one more
   * flow in flight. */
  CHECK (marllb_prequal_pick (pool, 6, up, 4, 0, now, age, 0.84, 3) == 0);
  CHECK (pool[0].rif == 6 && pool[0].uses == 1);
  /* q = 1: nothing is hot, the lowest latency wins. */
  CHECK (marllb_prequal_pick (pool, 6, up, 4, 0, now, age, 1.0, 3) == 2);
  /* A down server's probe is dropped; so is one older than max_age. */
  up[2] = 0;
  pool[0].t_ns = now - age - 1;
  CHECK (marllb_prequal_pick (pool, 6, up, 4, 0, now, age, 1.0, 3) == 3);
  CHECK (pool[2].server == -1 && pool[0].server == -1);
  /* Reuse is bounded: with max_uses 1 each pick consumes its probe. */
  CHECK (marllb_prequal_pick (pool, 6, up, 4, 0, now, age, 1.0, 1) == 1);
  CHECK (pool[1].server == -1 && pool[3].server == -1 && pool[4].server == 1);
  CHECK (marllb_prequal_pick (pool, 6, up, 4, 0, now, age, 1.0, 1) == 1);
  CHECK (pool[4].server == -1);
  /* Empty pool: a uniform up server from the hash (lo32 = 2^31 of 3 up -> rank 1). */
  CHECK (marllb_prequal_pick (pool, 6, up, 4, UINT64_C (0x80000000), now, age, 0.84, 3) == 1);
  uint8_t none[] = { 0, 0, 0, 0 };
  CHECK (marllb_prequal_pick (pool, 6, none, 4, 0, now, age, 0.84, 3) == -1);
}

static void
test_prequal_w (void)
{
  marllb_probe_t pool[4];
  uint8_t up[] = { 1, 1, 1 };
  uint64_t now = 2000000000u, age = 1000000000u;
  double ones[] = { 1.0, 1.0, 1.0 };
  set_probe (&pool[0], 0, 1, 0.10, now);
  set_probe (&pool[1], 1, 1, 0.15, now);
  set_probe (&pool[2], 2, 1, 0.30, now);
  set_probe (&pool[3], -1, 0, 0.0, 0);
  /* Weights of one: Prequal's pick (lowest latency). */
  CHECK (marllb_prequal_w_pick (pool, 4, up, ones, 3, 0, now, age, 1.0, 8) == 0);
  /* Server 1 weighted 2: 0.15 / 2 < 0.10 / 1, so it wins. */
  double w[] = { 1.0, 2.0, 1.0 };
  CHECK (marllb_prequal_w_pick (pool, 4, up, w, 3, 0, now, age, 1.0, 8) == 1);
  /* A weight that is not finite and > 0 drops the server's probe. */
  double bad[] = { 1.0, NAN, 1.0 };
  CHECK (marllb_prequal_w_pick (pool, 4, up, bad, 3, 0, now, age, 1.0, 8) == 0);
  CHECK (pool[1].server == -1);
  /* Empty pool: a uniform eligible server, lo32 = 2^31 -> rank 1; with server 0's
   * weight 0 that is server 2 of {1, 2} (prequal's would be server 1 of {0, 1, 2}). */
  for (int i = 0; i < 4; i++)
    pool[i].server = -1;
  double zero0[] = { 0.0, 1.0, 1.0 };
  uint64_t half = UINT64_C (0x80000000);
  CHECK (marllb_prequal_pick (pool, 4, up, 3, half, now, age, 1.0, 8) == 1);
  CHECK (marllb_prequal_w_pick (pool, 4, up, zero0, 3, half, now, age, 1.0, 8) == 2);
  up[1] = 0;
  double none[] = { 0.0, 1.0, -1.0 };
  CHECK (marllb_prequal_w_pick (pool, 4, up, none, 3, 0, now, age, 1.0, 8) == -1);
}

/* The shared vectors file: one case per line (see tests/dataplane/dispatch_vectors.py). */
static char *tok_save;

static char *
tok (char *line)
{
  return strtok_r (line, " \n", &tok_save);
}

static uint64_t
next_u64 (void)
{
  char *t = tok (NULL);
  if (!t)
    {
      failures++;
      return 0;
    }
  return strtoull (t, NULL, 10);
}

static int64_t
next_i64 (void)
{
  char *t = tok (NULL);
  if (!t)
    {
      failures++;
      return 0;
    }
  return strtoll (t, NULL, 10);
}

static double
next_f64 (void)
{
  char *t = tok (NULL);
  if (!t)
    {
      failures++;
      return 0.0;
    }
  return strtod (t, NULL);
}

#define MAX_N 64u

static int
vector_pe_update (int lineno)
{
  marllb_peak_ewma_t st;
  st.ewma = next_f64 ();
  st.stamp_ns = next_u64 ();
  double sample = next_f64 ();
  uint64_t now = next_u64 ();
  double tau = next_f64 ();
  double ewma = next_f64 ();
  uint64_t stamp = next_u64 ();
  marllb_peak_ewma_update (&st, 0, sample, now, tau);
  /* Bitwise: both sides compute the same operations in the same order. */
  if (memcmp (&st.ewma, &ewma, sizeof ewma) != 0 || st.stamp_ns != stamp)
    {
      fprintf (stderr, "vectors line %d: pe_update gives %a at %llu, expected %a at %llu\n",
               lineno, st.ewma, (unsigned long long) st.stamp_ns, ewma,
               (unsigned long long) stamp);
      return 1;
    }
  return 0;
}

static int
vector_pe_pick (int lineno)
{
  uint32_t n = (uint32_t) next_u64 ();
  uint64_t now = next_u64 ();
  double tau = next_f64 ();
  uint32_t k = (uint32_t) next_u64 ();
  uint64_t hash[8];
  int32_t expected[8];
  uint64_t active[MAX_N];
  double weight[MAX_N];
  uint8_t up[MAX_N];
  marllb_peak_ewma_t st[MAX_N];
  if (n > MAX_N || k > 8)
    return 1;
  for (uint32_t i = 0; i < k; i++)
    {
      hash[i] = next_u64 ();
      expected[i] = (int32_t) next_i64 ();
    }
  for (uint32_t i = 0; i < n; i++)
    active[i] = next_u64 ();
  for (uint32_t i = 0; i < n; i++)
    weight[i] = next_f64 ();
  for (uint32_t i = 0; i < n; i++)
    up[i] = (uint8_t) next_u64 ();
  for (uint32_t i = 0; i < n; i++)
    st[i].ewma = next_f64 ();
  for (uint32_t i = 0; i < n; i++)
    st[i].stamp_ns = next_u64 ();
  int bad = 0;
  for (uint32_t i = 0; i < k; i++)
    {
      int32_t got = marllb_peak_ewma_pick (active, weight, up, st, n, hash[i], now, tau);
      if (got != expected[i])
        {
          fprintf (stderr, "vectors line %d: pe_pick hash %llu gives %d, expected %d\n", lineno,
                   (unsigned long long) hash[i], got, expected[i]);
          bad = 1;
        }
    }
  return bad;
}

/* A pq_pick line, or with `weighted` a pqw_pick line (weight[n] after up[n]). */
static int
vector_pq_pick (int lineno, int weighted)
{
  uint32_t size = (uint32_t) next_u64 ();
  uint32_t n = (uint32_t) next_u64 ();
  uint64_t hash = next_u64 ();
  uint64_t now = next_u64 ();
  uint64_t max_age = next_u64 ();
  double q = next_f64 ();
  uint32_t max_uses = (uint32_t) next_u64 ();
  int32_t expected = (int32_t) next_i64 ();
  uint8_t up[MAX_N];
  marllb_probe_t pool[MARLLB_PREQUAL_MAX_POOL];
  if (n > MAX_N || size > MARLLB_PREQUAL_MAX_POOL)
    return 1;
  double weight[MAX_N];
  for (uint32_t i = 0; i < n; i++)
    up[i] = (uint8_t) next_u64 ();
  if (weighted)
    for (uint32_t i = 0; i < n; i++)
      weight[i] = next_f64 ();
  for (uint32_t i = 0; i < size; i++)
    {
      pool[i].t_ns = next_u64 ();
      pool[i].latency = next_f64 ();
      pool[i].rif = (uint32_t) next_u64 ();
      pool[i].server = (int32_t) next_i64 ();
      pool[i].uses = (uint32_t) next_u64 ();
      pool[i].reserved = 0;
    }
  int32_t got = weighted ? marllb_prequal_w_pick (pool, size, up, weight, n, hash, now, max_age,
                                                 q, max_uses)
                         : marllb_prequal_pick (pool, size, up, n, hash, now, max_age, q, max_uses);
  int bad = got != expected;
  for (uint32_t i = 0; i < size; i++)
    {
      uint32_t rif = (uint32_t) next_u64 ();
      int32_t server = (int32_t) next_i64 ();
      uint32_t uses = (uint32_t) next_u64 ();
      bad |= pool[i].rif != rif || pool[i].server != server || pool[i].uses != uses;
    }
  if (bad)
    fprintf (stderr, "vectors line %d: %s gives %d (or a different pool), expected %d\n",
             lineno, weighted ? "pqw_pick" : "pq_pick", got, expected);
  return bad;
}

static void
test_vectors (const char *path)
{
  FILE *f = fopen (path, "r");
  if (!f)
    {
      fprintf (stderr, "test_dispatch: cannot open the vectors file %s\n", path);
      failures++;
      return;
    }
  char *line = NULL;
  size_t cap = 0;
  int lineno = 0, cases = 0, kinds[4] = { 0 };
  while (getline (&line, &cap, f) > 0)
    {
      lineno++;
      char *kind = tok (line);
      if (!kind || kind[0] == '#')
        continue;
      cases++;
      if (strcmp (kind, "pe_update") == 0)
        failures += vector_pe_update (lineno), kinds[0]++;
      else if (strcmp (kind, "pe_pick") == 0)
        failures += vector_pe_pick (lineno), kinds[1]++;
      else if (strcmp (kind, "pq_pick") == 0)
        failures += vector_pq_pick (lineno, 0), kinds[2]++;
      else if (strcmp (kind, "pqw_pick") == 0)
        failures += vector_pq_pick (lineno, 1), kinds[3]++;
      else
        {
          fprintf (stderr, "vectors line %d: unknown case kind %s\n", lineno, kind);
          failures++;
        }
    }
  free (line);
  fclose (f);
  /* Every kind is present: an empty or truncated file must not pass. */
  CHECK (kinds[0] > 0 && kinds[1] > 0 && kinds[2] > 0 && kinds[3] > 0);
  CHECK (cases > 100);
}

int
main (int argc, char **argv)
{
  test_sed ();
  test_lsq ();
  test_p2 ();
  test_alias ();
  test_maglev ();
  test_peak_ewma ();
  test_prequal ();
  test_prequal_w ();
  if (argc < 2)
    {
      fprintf (stderr, "usage: test_dispatch VECTORS_FILE (vpp-plugin/tests/dispatch_vectors.txt)\n");
      return 2;
    }
  test_vectors (argv[1]);
  if (failures)
    {
      fprintf (stderr, "test_dispatch: %d check(s) failed\n", failures);
      return 1;
    }
  printf ("test_dispatch: ok\n");
  return 0;
}
