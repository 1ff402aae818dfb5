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
 * updated a frame at a time.  Updates through the bank ignore the
 * reservoirs' own rng fields.  A batch takes one of two paths:
 *
 * scalar: each update takes one 32-bit draw of the bank's wyrand (rng), the
 * low then the high half of an output, whether or not it is used (the fill
 * does not use it); while seen < 2^32 the slot is Lemire's multiply-shift of
 * that draw by seen, with the exact rejection step.  At seen >= 2^32 the
 * update discards its half and draws 64 bits instead.
 *
 * avx2 (x86-64 CPUs with AVX2, chosen at init): the batch is cut into
 * chunks of up to 256 updates and each chunk into groups of 8 (the last one
 * partial).  Each group takes one output of four xoshiro256++ generators
 * (lane): draw 2g is the low and draw 2g + 1 the high half of generator g's
 * output, and update 8q + l of the chunk uses draw l of group q (draws of a
 * partial group's missing updates are discarded).  The slot is Lemire's
 * multiply-shift of the draw by seen; when its low half falls below seen,
 * the exact rejection step redraws from rng (low 32 bits of each output),
 * in update order.  A chunk in which some seen would reach 2^31 takes the
 * scalar path instead.  The two paths give different (equally uniform)
 * samples from the same seed.
 */
enum
{
  MARLLB_BANK_SCALAR = 0,
  MARLLB_BANK_AVX2 = 1,
};

typedef struct marllb_reservoir_bank
{
  marllb_reservoir_t *res; /* caller-owned, m reservoirs of size k */
  uint32_t m;
  uint32_t k;
  marllb_rng_t rng;
  uint64_t half;  /* the unused high half of the last output, when has_half */
  uint32_t has_half;
  uint32_t path;         /* MARLLB_BANK_SCALAR or MARLLB_BANK_AVX2 */
  marllb_sample_t spill; /* write target of rejected values */
  uint64_t lane[16];     /* avx2: word w of generator g is lane[4 w + g] */
  marllb_sample_t *base; /* avx2: res[s].samples == base + s * stride for every s */
  uint32_t stride;
  uint32_t avx2_ok; /* the CPU has AVX2 and the samples are laid out as above */
} marllb_reservoir_bank_t;

/* Returns 0, or -1 when res is NULL, m is 0 or the reservoirs' k differ.
 * Takes the avx2 path when the CPU has AVX2 and every res[s].samples is
 * res[0].samples + s * stride for one stride >= k (the sample layout is
 * recorded here: re-init the bank after moving the arrays). */
int marllb_reservoir_bank_init (marllb_reservoir_bank_t *b, marllb_reservoir_t *res, uint32_t m,
                                uint64_t seed);
/* Choose the batch path (MARLLB_BANK_AVX2 falls back to scalar where it is
 * not available); returns the path now in effect.  For tests and benchmarks. */
int marllb_reservoir_bank_set_path (marllb_reservoir_bank_t *b, int path);
/* Reset every reservoir of the bank (a new publication window). */
void marllb_reservoir_bank_reset (marllb_reservoir_bank_t *b);
/* Offer value[i], observed at t_ns[i], to reservoir server[i] for i < n, in
 * order (Algorithm R per reservoir); every server[i] must be < m.  On the
 * scalar path, the same result as n calls of marllb_reservoir_bank_add. */
void marllb_reservoir_bank_add_batch (marllb_reservoir_bank_t *b, const uint16_t *server,
                                      const double *value, const uint64_t *t_ns, uint32_t n);
/* One update through the bank, always on the scalar path. */
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
