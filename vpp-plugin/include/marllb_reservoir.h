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

/* Uniform integer in [0, n), n >= 1: Lemire's multiply-shift on a 64-bit draw
 * with its rejection step, which runs with probability below n / 2^64. */
static inline uint64_t
marllb_rng_below64_inline (marllb_rng_t *r, uint64_t n)
{
  marllb_u128_t m = (marllb_u128_t) marllb_rng_next_inline (r) * n;
  if (__builtin_expect ((uint64_t) m < n, 0))
    {
      uint64_t threshold = -n % n;
      while ((uint64_t) m < threshold)
        m = (marllb_u128_t) marllb_rng_next_inline (r) * n;
    }
  return (uint64_t) (m >> 64);
}

/* Algorithm R: item s (1-based) fills slot s - 1 while s <= k, then replaces
 * slot j ~ U[0, s) when j < k.  The PRNG is drawn only past the fill.  Plain
 * branches measured faster than a branch-free select here: a select makes
 * every update store through an address that waits on the PRNG chain. */
static inline void
marllb_reservoir_add_inline (marllb_reservoir_t *r, double value, uint64_t t_ns)
{
  uint64_t s = ++r->seen;
  uint64_t k = r->k;
  uint64_t j = s - 1;
  if (s <= k)
    r->n = (uint32_t) s;
  else
    j = marllb_rng_below64_inline (&r->rng, s);
  if (j < k)
    {
      r->samples[j].value = value;
      r->samples[j].t_ns = t_ns;
    }
}

#ifdef __cplusplus
}
#endif

#endif /* MARLLB_RESERVOIR_H */
