/*
 * reservoir.c - Algorithm R reservoirs and their per-instance PRNG.
 *
 * The update itself lives in marllb_reservoir.h as an inline function so the
 * per-packet path can take it without a call; the symbols here are the same
 * code for callers that link against the library (ctypes, tools).
 */
#include "marllb_reservoir.h"

#include <stddef.h>

/* splitmix64 finaliser: spreads nearby seeds (0, 1, 2, ...) over the state space. */
static uint64_t
splitmix64 (uint64_t x)
{
  x += UINT64_C (0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C (0x94d049bb133111eb);
  return x ^ (x >> 31);
}

void
marllb_rng_seed (marllb_rng_t *r, uint64_t seed)
{
  r->state = splitmix64 (seed);
}

uint64_t
marllb_rng_next (marllb_rng_t *r)
{
  return marllb_rng_next_inline (r);
}

uint32_t
marllb_rng_below (marllb_rng_t *r, uint32_t n)
{
  /* Lemire, "Fast random integer generation in an interval" (2019): the high
   * half of draw * n, rejecting the low halves below 2^32 mod n. */
  uint64_t m = (uint64_t) (uint32_t) marllb_rng_next_inline (r) * n;
  if ((uint32_t) m < n)
    {
      uint32_t threshold = -n % n;
      while ((uint32_t) m < threshold)
        m = (uint64_t) (uint32_t) marllb_rng_next_inline (r) * n;
    }
  return (uint32_t) (m >> 32);
}

int
marllb_reservoir_init (marllb_reservoir_t *r, marllb_sample_t *samples, uint32_t k,
                       uint64_t seed)
{
  if (r == NULL || samples == NULL || k == 0 || k > MARLLB_MAX_K)
    return -1;
  r->samples = samples;
  r->k = k;
  r->n = 0;
  r->seen = 0;
  marllb_rng_seed (&r->rng, seed);
  r->spill = (marllb_sample_t){ 0 };
  return 0;
}

void
marllb_reservoir_reset (marllb_reservoir_t *r)
{
  r->n = 0;
  r->seen = 0;
}

void
marllb_reservoir_add (marllb_reservoir_t *r, double value, uint64_t t_ns)
{
  marllb_reservoir_add_inline (r, value, t_ns);
}

/*
 * Sequential sampling without replacement from the union: the next draw
 * comes from input w with probability (w's undrawn population) / (all
 * undrawn population), then uniformly from w's undrawn samples.  Given that
 * draw, w's remaining samples are still a uniform subset of its remaining
 * population, so every draw is uniform over what is left of the union.  An
 * input with n = min(seen, k) never runs dry: with seen <= k it holds its
 * whole population, otherwise k samples against at most k draws.  An input
 * that does run dry (fewer samples than that) stops being drawn from.
 */
uint32_t
marllb_reservoir_merge (marllb_sample_t *out, uint32_t k, marllb_reservoir_t *in, uint32_t m,
                        marllb_rng_t *rng, uint64_t *seen)
{
  uint64_t total = 0, left = 0;
  for (uint32_t w = 0; w < m; w++)
    {
      total += in[w].seen;
      if (in[w].n == 0)
        in[w].seen = 0;
      left += in[w].seen;
    }
  *seen = total;
  uint32_t j = 0;
  for (; j < k && left > 0; j++)
    {
      uint64_t r = marllb_rng_below64_inline (rng, left);
      uint32_t w = 0;
      while (r >= in[w].seen)
        r -= in[w++].seen;
      marllb_reservoir_t *src = &in[w];
      uint32_t i = (uint32_t) marllb_rng_below64_inline (rng, src->n);
      out[j] = src->samples[i];
      src->samples[i] = src->samples[--src->n];
      src->seen--;
      left--;
      if (src->n == 0)
        {
          left -= src->seen;
          src->seen = 0;
        }
    }
  return j;
}

int
marllb_reservoir_bank_init (marllb_reservoir_bank_t *b, marllb_reservoir_t *res, uint32_t m,
                            uint64_t seed)
{
  if (b == NULL || res == NULL || m == 0 || res[0].k == 0)
    return -1;
  for (uint32_t i = 1; i < m; i++)
    if (res[i].k != res[0].k)
      return -1;
  b->res = res;
  b->m = m;
  b->k = res[0].k;
  marllb_rng_seed (&b->rng, seed);
  b->half = 0;
  b->has_half = 0;
  b->_pad = 0;
  b->spill = (marllb_sample_t){ 0 };
  return 0;
}

void
marllb_reservoir_bank_reset (marllb_reservoir_bank_t *b)
{
  for (uint32_t i = 0; i < b->m; i++)
    marllb_reservoir_reset (&b->res[i]);
}

/* The slot and the PRNG state after the update; returned by value so that the
 * batch loop keeps its state in a register. */
typedef struct
{
  uintptr_t slot;
  uint64_t state;
} bank_slow_t;

/* Updates off the common path (k < seen < 2^32 and the draw's low half not
 * below seen): the fill, seen >= 2^32 (a 64-bit draw replaces the 32-bit one),
 * and Lemire's rejection step for the 32-bit draw x. */
__attribute__ ((noinline)) static bank_slow_t
bank_slow (marllb_reservoir_bank_t *b, marllb_reservoir_t *r, uint64_t s, uint32_t x,
           uint64_t state)
{
  marllb_rng_t g = { state };
  uint64_t k = b->k, j;
  if (s <= k)
    {
      r->n = (uint32_t) s;
      return (bank_slow_t){ (uintptr_t) &r->samples[s - 1], state };
    }
  if (s > UINT32_MAX)
    j = marllb_rng_below64_inline (&g, s);
  else
    {
      uint32_t s32 = (uint32_t) s, threshold = -s32 % s32;
      uint64_t m = (uint64_t) x * s32;
      while ((uint32_t) m < threshold)
        m = (uint64_t) (uint32_t) marllb_rng_next_inline (&g) * s32;
      j = m >> 32;
    }
  uintptr_t slot = j < k ? (uintptr_t) &r->samples[j] : (uintptr_t) &b->spill;
  return (bank_slow_t){ slot, g.state };
}

/* hit when j < k, else miss, without a branch (a branch on j < k mispredicts
 * while k / seen is near 1/2; compilers turn a conditional expression back
 * into one). */
static inline uintptr_t
select_below (uint64_t j, uint64_t k, uintptr_t hit, uintptr_t miss)
{
#if defined(__x86_64__) && defined(__GNUC__)
  __asm__ ("cmpq %[k], %[j]\n\tcmovaeq %[miss], %[hit]"
           : [hit] "+r"(hit)
           : [j] "r"(j), [k] "r"(k), [miss] "r"(miss)
           : "cc");
  return hit;
#else
  uintptr_t keep = (uintptr_t) 0 - (uintptr_t) (j < k);
  return miss ^ ((hit ^ miss) & keep);
#endif
}

/* Update I with the 32-bit draw X: seen, then the slot (no out-of-bounds
 * pointer is formed: the address is integer arithmetic until selected). */
#define BANK_ONE(I, X)                                                                   \
  do                                                                                     \
    {                                                                                    \
      marllb_reservoir_t *r_ = &res[server[I]];                                          \
      uint64_t s_ = r_->seen + 1;                                                        \
      uint32_t x_ = (uint32_t) (X);                                                      \
      uintptr_t slot_;                                                                   \
      r_->seen = s_;                                                                     \
      if (__builtin_expect (s_ - k - 1 < UINT32_MAX - k, 1))                             \
        {                                                                                \
          uint64_t m_ = (uint64_t) x_ * s_;                                              \
          uint64_t j_ = m_ >> 32;                                                        \
          if (__builtin_expect ((uint32_t) m_ < (uint32_t) s_, 0))                       \
            {                                                                            \
              bank_slow_t q_ = bank_slow (b, r_, s_, x_, state);                         \
              slot_ = q_.slot;                                                           \
              state = q_.state;                                                          \
            }                                                                            \
          else                                                                           \
            slot_ = select_below (j_, k, (uintptr_t) r_->samples + j_ * sizeof (marllb_sample_t), \
                                  spill);                                                \
        }                                                                                \
      else if (s_ <= k)                                                                  \
        {                                                                                \
          r_->n = (uint32_t) s_;                                                         \
          slot_ = (uintptr_t) &r_->samples[s_ - 1];                                      \
        }                                                                                \
      else                                                                               \
        {                                                                                \
          bank_slow_t q_ = bank_slow (b, r_, s_, x_, state);                             \
          slot_ = q_.slot;                                                               \
          state = q_.state;                                                              \
        }                                                                                \
      ((marllb_sample_t *) slot_)->value = value[I];                                     \
      ((marllb_sample_t *) slot_)->t_ns = t_ns[I];                                       \
    }                                                                                    \
  while (0)

/* One wyrand output serves two updates, low half first; an odd update out
 * keeps the high half for the next call. */
void
marllb_reservoir_bank_add_batch (marllb_reservoir_bank_t *b, const uint16_t *server,
                                 const double *value, const uint64_t *t_ns, uint32_t n)
{
  marllb_reservoir_t *res = b->res;
  const uint64_t k = b->k;
  const uintptr_t spill = (uintptr_t) &b->spill;
  uint64_t state = b->rng.state;
  uint32_t i = 0;
  if (n == 0)
    return;
  if (b->has_half)
    {
      BANK_ONE (0, b->half);
      b->has_half = 0;
      i = 1;
    }
  for (; i + 2 <= n; i += 2)
    {
      marllb_rng_t g = { state };
      uint64_t x = marllb_rng_next_inline (&g);
      state = g.state;
      BANK_ONE (i, x);
      BANK_ONE (i + 1, x >> 32);
    }
  if (i < n)
    {
      marllb_rng_t g = { state };
      uint64_t x = marllb_rng_next_inline (&g);
      state = g.state;
      b->half = x >> 32;
      b->has_half = 1;
      BANK_ONE (i, x);
    }
  b->rng.state = state;
}

void
marllb_reservoir_bank_add (marllb_reservoir_bank_t *b, uint16_t server, double value,
                           uint64_t t_ns)
{
  marllb_reservoir_bank_add_batch (b, &server, &value, &t_ns, 1);
}
