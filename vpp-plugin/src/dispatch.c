/*
 * dispatch.c - per-new-flow server selection rules (SED, LSQ, power of two,
 * peak-EWMA, Prequal's hot-cold lexicographic rule and its weighted twin,
 * alias-method WCMP,
 * Maglev).
 *
 * Every floating-point expression here is written out operation by operation
 * in the same order as marllbd/dataplane/dispatch.py; with -ffp-contract=off
 * (no fused multiply-add) and SSE2 doubles the two produce the same bits.
 * The exact rules, which the README repeats as part of contract 2:
 *
 *   eligible (SED, sed2, WCMP): up[i] != 0 and weight[i] finite and > 0.
 *   eligible (LSQ, lsq2, Maglev): up[i] != 0.
 *   SED score: ((double) active[i] + 1.0) / weight[i], compared with a strict
 *     '<' in a scan by ascending index, so the lowest index wins ties.
 *   hash halves: lo = hash & 0xffffffff, hi = hash >> 32;
 *     below(x, k) = (x * k) >> 32 in 64-bit unsigned arithmetic.
 */
#include <math.h>
#include <stdlib.h>

#include "marllb_dispatch.h"

/* Full column of the alias table: accept always (the alias is the column). */
#define ALIAS_FULL UINT32_MAX
/* Probability mass of one alias column: 2^32 threshold units. */
#define ALIAS_COLUMN (UINT64_C (1) << 32)

/* Finite and > 0, written as two comparisons that NaN fails, without branches. */
static inline int
weight_ok (double w)
{
  return (w > 0.0) & (w < INFINITY);
}

static inline double
sed_score (uint64_t active, double weight)
{
  return ((double) active + 1.0) / weight;
}

/* Uniform-ish index in [0, k) from a 32-bit value by multiply-shift. */
static inline uint32_t
below (uint64_t x32, uint32_t k)
{
  return (uint32_t) ((x32 * (uint64_t) k) >> 32);
}

int32_t
marllb_sed_pick (const uint64_t *active, const double *weight, const uint8_t *up, uint32_t n)
{
  int32_t best = -1;
  double best_score = 0.0;
  for (uint32_t i = 0; i < n; i++)
    {
      if (!up[i] || !weight_ok (weight[i]))
        continue;
      double s = sed_score (active[i], weight[i]);
      if (best < 0 || s < best_score)
        {
          best = (int32_t) i;
          best_score = s;
        }
    }
  return best;
}

int32_t
marllb_lsq_pick (const uint64_t *active, const uint8_t *up, uint32_t n)
{
  int32_t best = -1;
  for (uint32_t i = 0; i < n; i++)
    if (up[i] && (best < 0 || active[i] < active[best]))
      best = (int32_t) i;
  return best;
}

static inline int
p2_eligible (const double *weight, const uint8_t *up, uint32_t i, int use_sed)
{
  return (up[i] != 0) & ((use_sed == 0) | weight_ok (weight[i]));
}

/* The two candidates of power of two choices among the eligible servers;
 * returns 0 (and sets *lo <= *hi) or -1 when none is eligible. */
static inline int
p2_pair (const double *weight, const uint8_t *up, uint32_t n, uint64_t hash, int use_sed,
         uint32_t *lo_out, uint32_t *hi_out)
{
  uint32_t n_ok = 0;
  for (uint32_t i = 0; i < n; i++)
    n_ok += (uint32_t) p2_eligible (weight, up, i, use_sed);
  if (n_ok == 0)
    return -1;

  /* Two distinct ranks among the eligible servers: r1 from the low half of
   * the hash, r2 from the high half over the n_ok - 1 ranks other than r1.
   * A single eligible server is both candidates. */
  uint32_t r_lo = 0, r_hi = 0;
  if (n_ok > 1)
    {
      uint32_t r1 = below (hash & 0xffffffffu, n_ok);
      uint32_t r2 = below (hash >> 32, n_ok - 1);
      r2 += (uint32_t) (r2 >= r1);
      r_lo = r1 < r2 ? r1 : r2;
      r_hi = r1 < r2 ? r2 : r1;
    }
  /* Ranks follow server order, so lo gets the lower server index. */
  uint32_t lo = 0, hi = 0, rank = 0;
  for (uint32_t i = 0; i < n; i++)
    {
      if (!p2_eligible (weight, up, i, use_sed))
        continue;
      if (rank == r_lo)
        lo = i;
      if (rank == r_hi)
        {
          hi = i;
          break;
        }
      rank++;
    }
  *lo_out = lo;
  *hi_out = hi;
  return 0;
}

int32_t
marllb_p2_pick (const uint64_t *active, const double *weight, const uint8_t *up, uint32_t n,
                uint64_t hash, int use_sed)
{
  uint32_t lo, hi;
  if (p2_pair (weight, up, n, hash, use_sed, &lo, &hi) < 0)
    return -1;
  int hi_better = use_sed ? sed_score (active[hi], weight[hi]) < sed_score (active[lo], weight[lo])
                          : active[hi] < active[lo];
  return (int32_t) (hi_better ? hi : lo);
}

void
marllb_peak_ewma_init (marllb_peak_ewma_t *state, uint32_t n)
{
  for (uint32_t i = 0; i < n; i++)
    {
      state[i].ewma = MARLLB_PEAK_EWMA_NONE;
      state[i].stamp_ns = 0;
    }
}

/* exp (-(now - stamp) / tau), 1 when now is not after stamp. */
static inline double
decay_weight (uint64_t stamp_ns, uint64_t now_ns, double tau_ns)
{
  if (now_ns <= stamp_ns)
    return 1.0;
  double dt = (double) (now_ns - stamp_ns);
  return exp (-dt / tau_ns);
}

void
marllb_peak_ewma_update (marllb_peak_ewma_t *state, uint32_t s, double sample, uint64_t now_ns,
                         double tau_ns)
{
  marllb_peak_ewma_t *e = &state[s];
  if (e->ewma < 0.0 || sample > e->ewma)
    e->ewma = sample;
  else
    {
      double w = decay_weight (e->stamp_ns, now_ns, tau_ns);
      e->ewma = e->ewma * w + sample * (1.0 - w);
    }
  e->stamp_ns = now_ns;
}

/* (active + 1) x ewma / weight: the cost before its decay. */
static inline double
peak_ewma_cost (uint64_t active, double weight, const marllb_peak_ewma_t *e)
{
  return ((double) active + 1.0) * e->ewma / weight;
}

/* A server without a sample: 0 when idle, else the penalty, over its weight. */
static inline double
peak_ewma_unsampled (uint64_t active, double weight)
{
  return (active == 0 ? 0.0 : MARLLB_PEAK_EWMA_PENALTY + (double) active) / weight;
}

int32_t
marllb_peak_ewma_pick (const uint64_t *active, const double *weight, const uint8_t *up,
                       const marllb_peak_ewma_t *state, uint32_t n, uint64_t hash,
                       uint64_t now_ns, double tau_ns)
{
  uint32_t lo, hi;
  if (p2_pair (weight, up, n, hash, 1, &lo, &hi) < 0)
    return -1;
  if (lo == hi)
    return (int32_t) lo;
  const marllb_peak_ewma_t *e_lo = &state[lo], *e_hi = &state[hi];
  double s_lo, s_hi;
  if (e_lo->ewma >= 0.0 && e_hi->ewma >= 0.0)
    {
      /* Both decayed to now share the fresher stamp's decay, so only the older
       * one is decayed, by the stamps' difference: one exp. */
      uint64_t t_lo = e_lo->stamp_ns < now_ns ? e_lo->stamp_ns : now_ns;
      uint64_t t_hi = e_hi->stamp_ns < now_ns ? e_hi->stamp_ns : now_ns;
      s_lo = peak_ewma_cost (active[lo], weight[lo], e_lo);
      s_hi = peak_ewma_cost (active[hi], weight[hi], e_hi);
      if (t_hi > t_lo)
        s_lo = s_lo * decay_weight (t_lo, t_hi, tau_ns);
      else if (t_lo > t_hi)
        s_hi = s_hi * decay_weight (t_hi, t_lo, tau_ns);
    }
  else
    {
      s_lo = e_lo->ewma < 0.0 ? peak_ewma_unsampled (active[lo], weight[lo])
                              : peak_ewma_cost (active[lo], weight[lo], e_lo)
                                    * decay_weight (e_lo->stamp_ns, now_ns, tau_ns);
      s_hi = e_hi->ewma < 0.0 ? peak_ewma_unsampled (active[hi], weight[hi])
                              : peak_ewma_cost (active[hi], weight[hi], e_hi)
                                    * decay_weight (e_hi->stamp_ns, now_ns, tau_ns);
    }
  return (int32_t) (s_hi < s_lo ? hi : lo);
}

/* A server prequal may pick: up, and with weights (prequal-w) a finite weight > 0. */
static inline int
prequal_eligible (const uint8_t *up, const double *weight, uint32_t s)
{
  return up[s] != 0 && (weight == NULL || weight_ok (weight[s]));
}

/* A probe the pick may use: on an eligible server of the set, young enough, and
 * not used up. */
static inline int
probe_ok (const marllb_probe_t *p, const uint8_t *up, const double *weight, uint32_t n,
          uint64_t now_ns, uint64_t max_age_ns, uint32_t max_uses)
{
  /* (A negative server converts to a value >= n.) */
  if ((uint32_t) p->server >= n || p->uses >= max_uses
      || !prequal_eligible (up, weight, (uint32_t) p->server))
    return 0;
  return now_ns <= p->t_ns || now_ns - p->t_ns <= max_age_ns;
}

/* A probe's latency, over its server's weight with weights (prequal-w). */
static inline double
probe_score (const marllb_probe_t *p, const double *weight)
{
  return weight ? p->latency / weight[p->server] : p->latency;
}

/* marllb_prequal_pick (weight NULL) and marllb_prequal_w_pick. */
static int32_t
prequal_pick (marllb_probe_t *pool, uint32_t size, const uint8_t *up, const double *weight,
              uint32_t n, uint64_t hash, uint64_t now_ns, uint64_t max_age_ns, double q_rif,
              uint32_t max_uses)
{
  if (size > MARLLB_PREQUAL_MAX_POOL)
    size = MARLLB_PREQUAL_MAX_POOL;
  /* One pass: drop unusable probes, count the rest, find the lowest score. */
  uint32_t m = 0;
  int32_t best = -1;
  double best_score = 0.0;
  for (uint32_t i = 0; i < size; i++)
    {
      if (!probe_ok (&pool[i], up, weight, n, now_ns, max_age_ns, max_uses))
        {
          pool[i].server = -1;
          continue;
        }
      m++;
      double score = probe_score (&pool[i], weight);
      if (best < 0 || score < best_score)
        {
          best = (int32_t) i;
          best_score = score;
        }
    }
  if (m == 0)
    {
      uint32_t n_ok = 0;
      for (uint32_t i = 0; i < n; i++)
        n_ok += prequal_eligible (up, weight, i);
      if (n_ok == 0)
        return -1;
      uint32_t r = below (hash & 0xffffffffu, n_ok);
      for (uint32_t i = 0; i < n; i++)
        if (prequal_eligible (up, weight, i) && r-- == 0)
          return (int32_t) i;
    }
  uint32_t j = (uint32_t) (q_rif * (double) (m - 1));
  /* Candidates by ascending (score, slot) until a cold one: each hot one is
   * masked out.  At most m - 1 - j probes are hot, so this ends. */
  uint32_t hot = 0;
  for (;;)
    {
      uint32_t below_best = 0;
      for (uint32_t i = 0; i < size; i++)
        below_best += pool[i].server >= 0 && pool[i].rif < pool[best].rif;
      if (below_best <= j)
        break;
      hot |= UINT32_C (1) << best;
      best = -1;
      for (uint32_t i = 0; i < size; i++)
        {
          if (pool[i].server < 0 || (hot >> i & 1u))
            continue;
          double score = probe_score (&pool[i], weight);
          if (best < 0 || score < best_score)
            {
              best = (int32_t) i;
              best_score = score;
            }
        }
    }
  int32_t server = pool[best].server;
  pool[best].rif++;
  if (++pool[best].uses >= max_uses)
    pool[best].server = -1; /* used up: the slot is free for the next probe */
  return server;
}

int32_t
marllb_prequal_pick (marllb_probe_t *pool, uint32_t size, const uint8_t *up, uint32_t n,
                     uint64_t hash, uint64_t now_ns, uint64_t max_age_ns, double q_rif,
                     uint32_t max_uses)
{
  return prequal_pick (pool, size, up, NULL, n, hash, now_ns, max_age_ns, q_rif, max_uses);
}

int32_t
marllb_prequal_w_pick (marllb_probe_t *pool, uint32_t size, const uint8_t *up,
                       const double *weight, uint32_t n, uint64_t hash, uint64_t now_ns,
                       uint64_t max_age_ns, double q_rif, uint32_t max_uses)
{
  return prequal_pick (pool, size, up, weight, n, hash, now_ns, max_age_ns, q_rif, max_uses);
}

static void
alias_fail (marllb_alias_t *a, uint32_t n)
{
  a->n = n;
  for (uint32_t i = 0; i < n; i++)
    {
      a->prob[i] = 0;
      a->alias[i] = -1;
    }
}

/*
 * Vose's alias method in integer arithmetic.  Each server gets an integer
 * mass q[i] in units of 2^-32 column, the masses summing exactly to
 * n * 2^32; the pairing below then conserves mass exactly, so no column is
 * left over with a rounding residue.
 *
 *   wmax  = max eligible weight (first index attaining it is jmax)
 *   u[i]  = weight[i] / wmax            (0 for ineligible servers)
 *   S     = u[0] + u[1] + ... (ascending index)
 *   q[i]  = (uint64) (u[i] * (double) n / S * 2^32)   (truncation)
 *   q[jmax] absorbs n * 2^32 - sum(q)  (a few units either way)
 *
 * Worklists are stacks filled by ascending index and popped from the top:
 * small = {q < 2^32}, large = {q >= 2^32}.  Each step pops s from small,
 * reads l at the top of large, sets prob[s] = q[s], alias[s] = l, and takes
 * 2^32 - q[s] from q[l]; l moves to small when it drops below 2^32.  The
 * columns left in large are exactly full (prob = UINT32_MAX, alias = self);
 * small is then empty because the remaining mass equals 2^32 per column.
 */
int
marllb_alias_build (marllb_alias_t *a, const double *weight, const uint8_t *up, uint32_t n)
{
  double wmax = 0.0;
  uint32_t jmax = 0;
  for (uint32_t i = 0; i < n; i++)
    if (up[i] && weight_ok (weight[i]) && weight[i] > wmax)
      {
        wmax = weight[i];
        jmax = i;
      }
  if (wmax == 0.0)
    {
      alias_fail (a, n);
      return -1;
    }

  uint64_t *q = malloc ((size_t) n * sizeof (*q));
  uint32_t *work = malloc ((size_t) n * sizeof (*work));
  if (!q || !work)
    {
      free (q);
      free (work);
      alias_fail (a, n);
      return -1;
    }

  double s = 0.0;
  for (uint32_t i = 0; i < n; i++)
    if (up[i] && weight_ok (weight[i]))
      s += weight[i] / wmax;
  double nd = (double) n;
  uint64_t total = 0;
  for (uint32_t i = 0; i < n; i++)
    {
      double p = 0.0;
      if (up[i] && weight_ok (weight[i]))
        p = weight[i] / wmax * nd / s;
      q[i] = (uint64_t) (p * 4294967296.0);
      total += q[i];
    }
  uint64_t target = (uint64_t) n * ALIAS_COLUMN;
  if (total > target)
    q[jmax] -= total - target;
  else
    q[jmax] += target - total;

  /* small grows up from work[0], large grows down from work[n - 1]. */
  uint32_t ns = 0, nl = 0;
  for (uint32_t i = 0; i < n; i++)
    {
      if (q[i] < ALIAS_COLUMN)
        work[ns++] = i;
      else
        work[n - 1 - nl++] = i;
    }
  while (ns > 0 && nl > 0)
    {
      uint32_t sm = work[--ns];
      uint32_t lg = work[n - nl];
      a->prob[sm] = (uint32_t) q[sm];
      a->alias[sm] = (int32_t) lg;
      q[lg] -= ALIAS_COLUMN - q[sm];
      if (q[lg] < ALIAS_COLUMN)
        {
          nl--;
          work[ns++] = lg;
        }
    }
  while (nl > 0)
    {
      uint32_t lg = work[n - nl--];
      a->prob[lg] = ALIAS_FULL;
      a->alias[lg] = (int32_t) lg;
    }
  a->n = n;
  free (q);
  free (work);
  return 0;
}

int32_t
marllb_alias_pick (const marllb_alias_t *a, uint64_t hash)
{
  if (a->n == 0)
    return -1;
  uint32_t col = below (hash & 0xffffffffu, a->n);
  return (hash >> 32) < a->prob[col] ? (int32_t) col : a->alias[col];
}

/* splitmix64's output function applied to x + golden gamma. */
static inline uint64_t
mix64 (uint64_t x)
{
  uint64_t z = x + UINT64_C (0x9e3779b97f4a7c15);
  z = (z ^ (z >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  z = (z ^ (z >> 27)) * UINT64_C (0x94d049bb133111eb);
  return z ^ (z >> 31);
}

static int
is_prime (uint32_t m)
{
  if (m < 2)
    return 0;
  for (uint64_t d = 2; d * d <= m; d++)
    if (m % d == 0)
      return 0;
  return 1;
}

/*
 * Maglev (Eisenbud et al., NSDI 2016) population: server i walks the
 * permutation offset_i, offset_i + skip_i, ... (mod m) with
 *   offset_i = mix64(2 i) % m,  skip_i = mix64(2 i + 1) % (m - 1) + 1,
 * and the up servers, in ascending index order, take turns claiming their
 * next free slot until the table is full.  m prime makes every walk a full
 * permutation, so the loop ends; each up server ends with floor or ceil of
 * m / n_up entries.
 */
int
marllb_maglev_build (int32_t *table, uint32_t m, const uint8_t *up, uint32_t n)
{
  for (uint32_t j = 0; j < m; j++)
    table[j] = -1;
  uint32_t n_up = 0;
  for (uint32_t i = 0; i < n; i++)
    n_up += up[i] != 0;
  if (n_up == 0 || !is_prime (m))
    return -1;

  uint32_t *pos = malloc ((size_t) n * sizeof (*pos));
  uint32_t *skip = malloc ((size_t) n * sizeof (*skip));
  if (!pos || !skip)
    {
      free (pos);
      free (skip);
      return -1;
    }
  for (uint32_t i = 0; i < n; i++)
    {
      pos[i] = (uint32_t) (mix64 (2 * (uint64_t) i) % m);
      skip[i] = (uint32_t) (mix64 (2 * (uint64_t) i + 1) % (m - 1)) + 1;
    }

  uint32_t filled = 0;
  while (filled < m)
    for (uint32_t i = 0; i < n && filled < m; i++)
      {
        if (!up[i])
          continue;
        while (table[pos[i]] >= 0)
          pos[i] = (uint32_t) (((uint64_t) pos[i] + skip[i]) % m);
        table[pos[i]] = (int32_t) i;
        pos[i] = (uint32_t) (((uint64_t) pos[i] + skip[i]) % m);
        filled++;
      }
  free (pos);
  free (skip);
  return 0;
}
