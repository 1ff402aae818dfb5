/*
 * marllb_dispatch.h - per-new-flow server selection rules.
 *
 * The Python twin is marllbd/dataplane/dispatch.py; tests/dataplane/
 * test_dispatch_conformance.py runs the same randomized vectors through both
 * and asserts identical choices.  All rules pick among servers whose `up`
 * entry is non-zero and return -1 when none is up.  Ties break toward the
 * lowest server index.  Randomness (power of two, WCMP) comes from the
 * caller's 64-bit flow hash, never from a global PRNG.
 *
 * Build with -ffp-contract=off so floating-point results match Python's.
 */
#ifndef MARLLB_DISPATCH_H
#define MARLLB_DISPATCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* SED: argmin ((double) active[i] + 1.0) / weight[i] over up servers whose
 * weight is finite and > 0 (others are never picked).  Scores are computed by
 * that one division and compared with '<' by ascending index. */
int32_t marllb_sed_pick (const uint64_t *active, const double *weight, const uint8_t *up,
                         uint32_t n);

/* LSQ: argmin active[i] over up servers (weights play no part). */
int32_t marllb_lsq_pick (const uint64_t *active, const uint8_t *up, uint32_t n);

/* Power of two choices over the k eligible servers (up, and with use_sed
 * also a finite weight > 0), ranked by index: rank r1 = (lo32 * k) >> 32 from
 * the low 32 bits of the hash, r2 = (hi32 * (k - 1)) >> 32 from the high 32
 * bits, plus one when r2 >= r1.  The better of the two by SED score
 * (use_sed != 0) or by active flows wins; on a tie the lower index.  One
 * eligible server is always picked. */
int32_t marllb_p2_pick (const uint64_t *active, const double *weight, const uint8_t *up,
                        uint32_t n, uint64_t hash, int use_sed);

/* Peak-EWMA (Finagle / Linkerd): per server, a peak-sensitive EWMA of the
 * flow completion times this LB observed and the time of its last update.
 * ewma < 0 (MARLLB_PEAK_EWMA_NONE) means no completion seen yet.  Units: the
 * sample's unit is the caller's (the simulator uses seconds); times are ns. */
typedef struct marllb_peak_ewma
{
  double ewma;
  uint64_t stamp_ns;
} marllb_peak_ewma_t;
_Static_assert (sizeof (marllb_peak_ewma_t) == 16, "marllb_peak_ewma_t is shared with Python");

#define MARLLB_PEAK_EWMA_NONE (-1.0)
/* The cost of a server without a sample that already has active flows: far
 * above any completion time, so it is picked only against another such
 * server (Finagle's penalty); one with no active flow costs 0 (tried once). */
#define MARLLB_PEAK_EWMA_PENALTY 1e30

/* Every server: no sample (ewma = MARLLB_PEAK_EWMA_NONE, stamp 0). */
void marllb_peak_ewma_init (marllb_peak_ewma_t *state, uint32_t n);

/* A completion of `sample` on server s at now_ns: with w = exp (-dt / tau_ns),
 * dt = now_ns - stamp_ns (0 if negative), the EWMA becomes the sample when
 * it has none or the sample exceeds it (peak), else ewma * w + sample *
 * (1 - w); the stamp becomes now_ns. */
void marllb_peak_ewma_update (marllb_peak_ewma_t *state, uint32_t s, double sample,
                              uint64_t now_ns, double tau_ns);

/* Power of two choices (the ranks of marllb_p2_pick with use_sed) over up
 * servers with a finite weight > 0, by score = cost x decay, lower wins, ties
 * to the lower index; -1 when nothing is eligible.  cost = ((double)
 * active[i] + 1.0) * ewma / weight[i], decay = exp (-dt / tau_ns) of the
 * EWMA's age dt at now_ns (Finagle decays at read time; not written back):
 * dividing by the weight keeps configured capacities in play.  A server
 * without a sample scores (active == 0 ? 0 : MARLLB_PEAK_EWMA_PENALTY +
 * active) / weight, undecayed.  When both candidates have samples the
 * fresher stamp's decay to now is a common factor: only the older cost is
 * decayed, by the stamps' difference (stamps after now count as now), so the
 * pick costs one exp. */
int32_t marllb_peak_ewma_pick (const uint64_t *active, const double *weight, const uint8_t *up,
                               const marllb_peak_ewma_t *state, uint32_t n, uint64_t hash,
                               uint64_t now_ns, double tau_ns);

/* Prequal (Wydrowski et al., NSDI 2024): one LB's pool of probe results.  A
 * probe is the answer of server `server` at t_ns: its requests in flight
 * (rif, over all LBs) and its latency estimate.  server < 0 is an empty
 * slot.  In production a probe is a control-plane RPC to the server. */
typedef struct marllb_probe
{
  uint64_t t_ns;
  double latency;
  uint32_t rif;
  int32_t server;
  uint32_t uses;
  uint32_t reserved; /* 0 */
} marllb_probe_t;
_Static_assert (sizeof (marllb_probe_t) == 32, "marllb_probe_t is shared with Python");

#define MARLLB_PREQUAL_MAX_POOL 32u

/* The hot-cold lexicographic pick over a pool of `size` (<= 32) slots, which
 * it updates in place:
 *   1. drops (server = -1) every probe on a server >= n or down, older than
 *      max_age_ns (now_ns - t_ns, 0 if negative), or used max_uses times;
 *   2. with m probes left, the hot threshold is the rank-j RIF, j = (uint32)
 *      (q_rif * (m - 1)) (0-based, ascending): a probe is hot when more than
 *      j probes have a lower RIF; the pick is the cold probe with the lowest
 *      latency, ties to the lower slot.  (The lowest RIF is never hot, so the
 *      paper's all-hot case, fewest in flight, cannot arise.)  The picked
 *      probe's rif and uses grow by one (this flow is now in flight there),
 *      and a probe used max_uses times leaves the pool (server = -1);
 *   3. an empty pool: a uniform up server from the hash (rank (lo32 * n_up)
 *      >> 32 among up servers), or -1 when none is up.
 * Returns the server.  q_rif in [0, 1]. */
int32_t marllb_prequal_pick (marllb_probe_t *pool, uint32_t size, const uint8_t *up, uint32_t n,
                             uint64_t hash, uint64_t now_ns, uint64_t max_age_ns, double q_rif,
                             uint32_t max_uses);

/* prequal-w: marllb_prequal_pick with the weights scaling its scores.  A
 * probe's latency counts as latency / weight[server]; only servers whose
 * weight is finite and > 0 are eligible (a probe on another is dropped, and
 * an empty pool draws its uniform server among the eligible up ones).  The
 * hot test is unchanged.  Weights are multipliers: all ones pick exactly as
 * marllb_prequal_pick does. */
int32_t marllb_prequal_w_pick (marllb_probe_t *pool, uint32_t size, const uint8_t *up,
                               const double *weight, uint32_t n, uint64_t hash, uint64_t now_ns,
                               uint64_t max_age_ns, double q_rif, uint32_t max_uses);

/* Alias-method WCMP (Vose).  Column c = (lo32 * n) >> 32 of the hash; the
 * pick is c when hi32 < prob[c], else alias[c].  Servers that are down or
 * have a non-finite or non-positive weight get probability 0. */
typedef struct marllb_alias
{
  uint32_t n;
  uint32_t *prob;  /* caller-owned, n entries */
  int32_t *alias;  /* caller-owned, n entries */
} marllb_alias_t;

/* Builds the table in integer arithmetic (see dispatch.c for the exact
 * steps) and sets a->n = n.  Returns 0, or -1 when no up server has a finite
 * positive weight or scratch memory cannot be allocated; the table then holds
 * prob 0 and alias -1 everywhere, so marllb_alias_pick returns -1. */
int marllb_alias_build (marllb_alias_t *a, const double *weight, const uint8_t *up, uint32_t n);
int32_t marllb_alias_pick (const marllb_alias_t *a, uint64_t hash);

/* Maglev lookup table of size m (prime) over up servers; each gets floor or
 * ceil of m / n_up entries.  Returns 0, or -1 (table all -1) when no server
 * is up, m is not prime or scratch memory cannot be allocated. */
int marllb_maglev_build (int32_t *table, uint32_t m, const uint8_t *up, uint32_t n);
static inline int32_t
marllb_maglev_pick (const int32_t *table, uint32_t m, uint64_t hash)
{
  return table[hash % m];
}

#ifdef __cplusplus
}
#endif

#endif /* MARLLB_DISPATCH_H */
