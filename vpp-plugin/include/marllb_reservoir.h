/*
 * marllb_reservoir.h - Algorithm R reservoirs for per-flow features.
 *
 * One reservoir per server per quantity (flow duration, completion time),
 * k samples each (default MARLLB_DEFAULT_K), reset at the start of every
 * publication window.  Randomness comes from a small per-instance PRNG;
 * nothing here calls rand(), locks or allocates on the update path.
 */
#ifndef MARLLB_RESERVOIR_H
#define MARLLB_RESERVOIR_H

#include <stdint.h>

#include "marllb_shm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-instance PRNG state (wyrand: one 64-bit add and one 128-bit multiply). */
typedef struct marllb_rng
{
  uint64_t state;
} marllb_rng_t;

void marllb_rng_seed (marllb_rng_t *r, uint64_t seed);
uint64_t marllb_rng_next (marllb_rng_t *r);

/* Uniform integer in [0, n) by multiply-shift (Lemire) of a 32-bit draw; 0 when n is 0. */
uint32_t marllb_rng_below (marllb_rng_t *r, uint32_t n);

typedef struct marllb_reservoir
{
  marllb_sample_t *samples; /* caller-owned array of k samples */
  uint32_t k;
  uint32_t n;    /* valid samples: min(seen, k) */
  uint64_t seen; /* values offered since the last reset */
  marllb_rng_t rng;
  marllb_sample_t spill; /* write target of rejected values (branch-free update) */
} marllb_reservoir_t;

/* Returns 0, or -1 when samples is NULL or k is 0 or above MARLLB_MAX_K. */
int marllb_reservoir_init (marllb_reservoir_t *r, marllb_sample_t *samples, uint32_t k,
                           uint64_t seed);
/* Start a new publication window: forget all samples, keep the PRNG stream. */
void marllb_reservoir_reset (marllb_reservoir_t *r);
/* Offer one value observed at t_ns (Algorithm R). */
void marllb_reservoir_add (marllb_reservoir_t *r, double value, uint64_t t_ns);

/* Merge m reservoirs, each a uniform sample of its own stream, into out[k]: a
 * uniform sample without replacement of the union of the streams (used to
 * combine per-thread reservoirs).  Uniform when every input holds
 * n = min(seen, k) samples.  Returns the samples written, min(k, sum of
 * seen), and stores the sum of seen in *seen.  Consumes the inputs: their
 * samples are reordered and their n and seen count down to what was not
 * drawn.  Draws from rng. */
uint32_t marllb_reservoir_merge (marllb_sample_t *out, uint32_t k, marllb_reservoir_t *in,
                                 uint32_t m, marllb_rng_t *rng, uint64_t *seen);

/*
 * A bank: m reservoirs of the same k (one quantity of one worker thread)
 * sharing one PRNG, updated a frame at a time.  Each update takes one 32-bit
 * draw, the low then the high half of a wyrand output, whether or not it is
 * used (the fill does not use it); while seen < 2^32 the slot is Lemire's
 * multiply-shift of that draw by seen, with the exact rejection step.  At
 * seen >= 2^32 the update discards its half and draws 64 bits instead.
 * Updates through the bank ignore the reservoirs' own rng fields.
 */
typedef struct marllb_reservoir_bank
{
  marllb_reservoir_t *res; /* caller-owned, m reservoirs of size k */
  uint32_t m;
  uint32_t k;
  marllb_rng_t rng;
  uint64_t half;  /* the unused high half of the last output, when has_half */
  uint32_t has_half;
  uint32_t _pad;
  marllb_sample_t spill; /* write target of rejected values */
} marllb_reservoir_bank_t;

/* Returns 0, or -1 when res is NULL, m is 0 or the reservoirs' k differ. */
int marllb_reservoir_bank_init (marllb_reservoir_bank_t *b, marllb_reservoir_t *res, uint32_t m,
                                uint64_t seed);
/* Reset every reservoir of the bank (a new publication window). */
void marllb_reservoir_bank_reset (marllb_reservoir_bank_t *b);
/* Offer value[i], observed at t_ns[i], to reservoir server[i] for i < n, in
 * order; every server[i] must be < m.  Same result as n calls of
 * marllb_reservoir_bank_add. */
void marllb_reservoir_bank_add_batch (marllb_reservoir_bank_t *b, const uint16_t *server,
                                      const double *value, const uint64_t *t_ns, uint32_t n);
/* One update through the bank: a batch of one. */
void marllb_reservoir_bank_add (marllb_reservoir_bank_t *b, uint16_t server, double value,
                                uint64_t t_ns);

/*
 * Inline hot path, for per-packet callers that want the update without a call.
 * marllb_reservoir_add is this same code behind a function symbol.
 */
#ifndef __SIZEOF_INT128__
#error "marllb_reservoir.h needs a compiler with unsigned __int128 (gcc or clang, 64-bit)"
#endif
__extension__ typedef unsigned __int128 marllb_u128_t;

static inline uint64_t
marllb_rng_next_inline (marllb_rng_t *r)
{
  r->state += UINT64_C (0xa0761d6478bd642f);
  marllb_u128_t m = (marllb_u128_t) r->state * (r->state ^ UINT64_C (0xe7037ed1a0b428db));
  return (uint64_t) (m >> 64) ^ (uint64_t) m;
}

/* Lemire's rejection step for marllb_rng_below64_inline, out of line: it runs
 * with probability below n / 2^64.  It takes the draw x rather than the
 * product x * n, so the caller's loop keeps one 64-bit value alive for it. */
__attribute__ ((noinline, cold, unused)) static uint64_t
marllb_rng_below64_retry (marllb_rng_t *r, uint64_t n, uint64_t x)
{
  uint64_t threshold = -n % n;
  marllb_u128_t m = (marllb_u128_t) x * n;
  while ((uint64_t) m < threshold)
    m = (marllb_u128_t) marllb_rng_next_inline (r) * n;
  return (uint64_t) (m >> 64);
}

/* Uniform integer in [0, n), n >= 1: Lemire's multiply-shift on a 64-bit draw
 * with its rejection step (no division unless the low half falls below n). */
static inline uint64_t
marllb_rng_below64_inline (marllb_rng_t *r, uint64_t n)
{
  uint64_t x = marllb_rng_next_inline (r);
  marllb_u128_t m = (marllb_u128_t) x * n;
  if (__builtin_expect ((uint64_t) m < n, 0))
    return marllb_rng_below64_retry (r, n, x);
  return (uint64_t) (m >> 64);
}

/* Past this many times k values in a window, the update takes a branch on
 * j < k instead of the branch-free store (see marllb_reservoir_add_inline). */
#define MARLLB_RESERVOIR_BRANCH_AT 16u

/* Algorithm R: item s (1-based) fills slot s - 1 while s <= k, then replaces
 * slot j ~ U[0, s) when j < k.  The PRNG is drawn only past the fill.
 *
 * Past the fill, j < k is a coin that comes up heads with probability k / s.
 * While k / s is large (a window that starts with a reset spends its first
 * 16 k values there, and that is where most replacements happen) a branch on
 * it mispredicts often, so the store is unconditional and only its address is
 * selected, without a branch: samples[j] when j < k, else the reservoir's own
 * spill slot, which nobody reads.  Once k / s <= 1/16 the branch is right
 * nearly always and cheaper than a store on every update, so the update
 * branches there.  The fill branch stays a branch: it flips once per window. */
static inline void
marllb_reservoir_add_inline (marllb_reservoir_t *r, double value, uint64_t t_ns)
{
  uint64_t s = ++r->seen;
  uint64_t k = r->k;
  marllb_sample_t *slot;
  if (s <= k)
    {
      r->n = (uint32_t) s;
      slot = &r->samples[s - 1];
    }
  else if (s <= MARLLB_RESERVOIR_BRANCH_AT * k)
    {
      uint64_t j = marllb_rng_below64_inline (&r->rng, s);
      /* Integer arithmetic, not a conditional expression, which compilers
       * turn back into a branch; no out-of-bounds pointer is formed. */
      uintptr_t keep = (uintptr_t) 0 - (uintptr_t) (j < k);
      uintptr_t hit = (uintptr_t) r->samples + (uintptr_t) j * sizeof (marllb_sample_t);
      uintptr_t miss = (uintptr_t) &r->spill;
      slot = (marllb_sample_t *) (miss ^ ((hit ^ miss) & keep));
    }
  else
    {
      uint64_t j = marllb_rng_below64_inline (&r->rng, s);
      if (j >= k)
        return;
      slot = &r->samples[j];
    }
  slot->value = value;
  slot->t_ns = t_ns;
}

#ifdef __cplusplus
}
#endif

#endif /* MARLLB_RESERVOIR_H */
