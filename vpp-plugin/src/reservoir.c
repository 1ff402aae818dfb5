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
