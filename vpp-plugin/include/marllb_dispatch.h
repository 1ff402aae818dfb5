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
