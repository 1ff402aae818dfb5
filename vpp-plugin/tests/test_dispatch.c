/*
 * test_dispatch.c - behaviour of the dispatch rules: choices, ties, down
 * servers, alias-table masses and sampling, Maglev balance and disruption.
 *
 * Checks stay active in Release builds (no assert()); exit status 1 on any
 * failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

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

int
main (void)
{
  test_sed ();
  test_lsq ();
  test_p2 ();
  test_alias ();
  test_maglev ();
  if (failures)
    {
      fprintf (stderr, "test_dispatch: %d check(s) failed\n", failures);
      return 1;
    }
  printf ("test_dispatch: ok\n");
  return 0;
}
