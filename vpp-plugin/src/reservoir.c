/*
 * reservoir.c - Algorithm R reservoirs and their per-instance PRNG.
 *
 * The update itself lives in marllb_reservoir.h as an inline function so the
 * per-packet path can take it without a call; the symbols here are the same
 * code for callers that link against the library (ctypes, tools).
 */
#include "marllb_reservoir.h"

#include <stddef.h>

/* The avx2 batch path: x86-64 with gcc or clang (-DMARLLB_NO_AVX2 leaves it out). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MARLLB_NO_AVX2)
#define MARLLB_AVX2 1
#include <immintrin.h>
#endif

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

/* The avx2 path's sample layout: res[s].samples == base + s * stride, with
 * stride >= k and every byte offset below 2^32 (it works on 32-bit offsets). */
static int
bank_layout (marllb_reservoir_bank_t *b)
{
  uintptr_t base = (uintptr_t) b->res[0].samples, stride = b->k;
  if (b->m > 1)
    {
      uintptr_t d = (uintptr_t) b->res[1].samples - base;
      if (d % sizeof (marllb_sample_t) != 0)
        return 0;
      stride = d / sizeof (marllb_sample_t);
    }
  if (stride < b->k || ((uint64_t) (b->m - 1) * stride + b->k) > (UINT64_C (1) << 28))
    return 0;
  for (uint32_t s = 1; s < b->m; s++)
    if ((uintptr_t) b->res[s].samples != base + s * stride * sizeof (marllb_sample_t))
      return 0;
  b->base = b->res[0].samples;
  b->stride = (uint32_t) stride;
  return 1;
}

static int
cpu_has_avx2 (void)
{
#ifdef MARLLB_AVX2
  __builtin_cpu_init ();
  return __builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("popcnt");
#else
  return 0;
#endif
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
  b->spill = (marllb_sample_t){ 0 };
  /* Outputs 2..17 of the splitmix64 sequence from seed (rng took output 1).
   * splitmix64 is a bijection of distinct inputs, so no generator is all zero. */
  for (uint64_t q = 0; q < 16; q++)
    b->lane[q] = splitmix64 (seed + (q + 1) * UINT64_C (0x9e3779b97f4a7c15));
  b->base = NULL;
  b->stride = 0;
  b->avx2_ok = bank_layout (b) && cpu_has_avx2 ();
  b->path = b->avx2_ok ? MARLLB_BANK_AVX2 : MARLLB_BANK_SCALAR;
  return 0;
}

int
marllb_reservoir_bank_set_path (marllb_reservoir_bank_t *b, int path)
{
  b->path = path == MARLLB_BANK_AVX2 && b->avx2_ok ? MARLLB_BANK_AVX2 : MARLLB_BANK_SCALAR;
  return (int) b->path;
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
static void
bank_batch_scalar (marllb_reservoir_bank_t *b, const uint16_t *server, const double *value,
                   const uint64_t *t_ns, uint32_t n)
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

#ifdef MARLLB_AVX2
/*
 * The avx2 path, per chunk of up to CHUNK updates:
 * 1. scalar: seen = ++res[server[i]].seen in order (repeated servers count
 *    up as in the scalar path); seen[i] kept as u32.
 * 2. 8 updates per step: draw x, slot = (x * seen) >> 32 (x = 2^32 - 1 in
 *    the fill, which gives seen - 1), keep = slot < k; the byte offset of
 *    each kept slot and its update's index are compressed to the front of
 *    two arrays (movemask, permutation table, vpermd).
 *    Lemire's rejection step is needed only where the low half of x * seen
 *    is below seen; while seen < 2^18, one check per chunk (every low half
 *    >= a bound on seen) stands in for a check per group.
 * 3. scalar: n = seen for the fill updates (seen <= k), if the chunk has
 *    some, then the kept updates written in order, so a later update to a
 *    slot wins.
 */
#define AVX2_FN __attribute__ ((target ("avx2,popcnt")))
#define CHUNK 256u

/* Entry m: the indices of m's set bits, lowest first, one per byte. */
static const uint64_t compress_lut[256] = {
  0x0, 0x0, 0x1, 0x100, 0x2, 0x200, 0x201, 0x20100, 0x3, 0x300, 0x301, 0x30100, 0x302, 0x30200,
  0x30201, 0x3020100, 0x4, 0x400, 0x401, 0x40100, 0x402, 0x40200, 0x40201, 0x4020100, 0x403,
  0x40300, 0x40301, 0x4030100, 0x40302, 0x4030200, 0x4030201, 0x403020100, 0x5, 0x500, 0x501,
  0x50100, 0x502, 0x50200, 0x50201, 0x5020100, 0x503, 0x50300, 0x50301, 0x5030100, 0x50302,
  0x5030200, 0x5030201, 0x503020100, 0x504, 0x50400, 0x50401, 0x5040100, 0x50402, 0x5040200,
  0x5040201, 0x504020100, 0x50403, 0x5040300, 0x5040301, 0x504030100, 0x5040302, 0x504030200,
  0x504030201, 0x50403020100, 0x6, 0x600, 0x601, 0x60100, 0x602, 0x60200, 0x60201, 0x6020100,
  0x603, 0x60300, 0x60301, 0x6030100, 0x60302, 0x6030200, 0x6030201, 0x603020100, 0x604, 0x60400,
  0x60401, 0x6040100, 0x60402, 0x6040200, 0x6040201, 0x604020100, 0x60403, 0x6040300, 0x6040301,
  0x604030100, 0x6040302, 0x604030200, 0x604030201, 0x60403020100, 0x605, 0x60500, 0x60501,
  0x6050100, 0x60502, 0x6050200, 0x6050201, 0x605020100, 0x60503, 0x6050300, 0x6050301,
  0x605030100, 0x6050302, 0x605030200, 0x605030201, 0x60503020100, 0x60504, 0x6050400, 0x6050401,
  0x605040100, 0x6050402, 0x605040200, 0x605040201, 0x60504020100, 0x6050403, 0x605040300,
  0x605040301, 0x60504030100, 0x605040302, 0x60504030200, 0x60504030201, 0x6050403020100, 0x7,
  0x700, 0x701, 0x70100, 0x702, 0x70200, 0x70201, 0x7020100, 0x703, 0x70300, 0x70301, 0x7030100,
  0x70302, 0x7030200, 0x7030201, 0x703020100, 0x704, 0x70400, 0x70401, 0x7040100, 0x70402,
  0x7040200, 0x7040201, 0x704020100, 0x70403, 0x7040300, 0x7040301, 0x704030100, 0x7040302,
  0x704030200, 0x704030201, 0x70403020100, 0x705, 0x70500, 0x70501, 0x7050100, 0x70502, 0x7050200,
  0x7050201, 0x705020100, 0x70503, 0x7050300, 0x7050301, 0x705030100, 0x7050302, 0x705030200,
  0x705030201, 0x70503020100, 0x70504, 0x7050400, 0x7050401, 0x705040100, 0x7050402, 0x705040200,
  0x705040201, 0x70504020100, 0x7050403, 0x705040300, 0x705040301, 0x70504030100, 0x705040302,
  0x70504030200, 0x70504030201, 0x7050403020100, 0x706, 0x70600, 0x70601, 0x7060100, 0x70602,
  0x7060200, 0x7060201, 0x706020100, 0x70603, 0x7060300, 0x7060301, 0x706030100, 0x7060302,
  0x706030200, 0x706030201, 0x70603020100, 0x70604, 0x7060400, 0x7060401, 0x706040100, 0x7060402,
  0x706040200, 0x706040201, 0x70604020100, 0x7060403, 0x706040300, 0x706040301, 0x70604030100,
  0x706040302, 0x70604030200, 0x70604030201, 0x7060403020100, 0x70605, 0x7060500, 0x7060501,
  0x706050100, 0x7060502, 0x706050200, 0x706050201, 0x70605020100, 0x7060503, 0x706050300,
  0x706050301, 0x70605030100, 0x706050302, 0x70605030200, 0x70605030201, 0x7060503020100,
  0x7060504, 0x706050400, 0x706050401, 0x70605040100, 0x706050402, 0x70605040200, 0x70605040201,
  0x7060504020100, 0x706050403, 0x70605040300, 0x70605040301, 0x7060504030100, 0x70605040302,
  0x7060504030200, 0x7060504030201, 0x706050403020100,
};

#define ROTL64(v, r) _mm256_or_si256 (_mm256_slli_epi64 (v, r), _mm256_srli_epi64 (v, 64 - (r)))

typedef struct
{
  __m256i s0, s1, s2, s3;
} lanes_t;

/* xoshiro256++ (Blackman and Vigna), four generators side by side. */
AVX2_FN static inline __m256i
lanes_next (lanes_t *g)
{
  __m256i out = _mm256_add_epi64 (ROTL64 (_mm256_add_epi64 (g->s0, g->s3), 23), g->s0);
  __m256i t = _mm256_slli_epi64 (g->s1, 17);
  g->s2 = _mm256_xor_si256 (g->s2, g->s0);
  g->s3 = _mm256_xor_si256 (g->s3, g->s1);
  g->s1 = _mm256_xor_si256 (g->s1, g->s2);
  g->s0 = _mm256_xor_si256 (g->s0, g->s3);
  g->s2 = _mm256_xor_si256 (g->s2, t);
  g->s3 = ROTL64 (g->s3, 45);
  return out;
}

/* Lemire's rejection step for the lanes l < lanes whose low half lo[l] fell
 * below seen s[l]: redraw from rng, in lane order. */
__attribute__ ((noinline, cold)) static void
bank_reject (marllb_reservoir_bank_t *b, uint32_t *j, const uint32_t *lo, const uint32_t *s,
             uint32_t lanes)
{
  for (uint32_t l = 0; l < lanes; l++)
    if (lo[l] < s[l])
      {
        uint32_t threshold = -s[l] % s[l];
        uint64_t m = (uint64_t) j[l] << 32 | lo[l];
        while ((uint32_t) m < threshold)
          m = (uint64_t) (uint32_t) marllb_rng_next_inline (&b->rng) * s[l];
        j[l] = (uint32_t) (m >> 32);
      }
}

/* Undo step 1 of a chunk before the scalar path takes it over. */
__attribute__ ((noinline, cold)) static void
bank_undo (marllb_reservoir_t *res, const uint16_t *server, uint32_t n)
{
  for (uint32_t i = 0; i < n; i++)
    res[server[i]].seen--;
}

typedef struct
{
  __m256i k, k1, stride16, ones;
} group_const_t;

/* Step 2 for the 8 updates whose seen starts at seen[0] (lanes with bit l of
 * valid); at holds their indices in the chunk.  Returns the number kept and
 * ORs the fill lanes into *fill.  exact = 1 takes Lemire's rejection step
 * where a lane needs it; exact = 0 folds both products into *lo_min instead,
 * whose even 32-bit lanes hold the minimum low halves (the caller checks them
 * against a bound on seen afterwards; the odd lanes are high halves). */
AVX2_FN __attribute__ ((always_inline)) static inline size_t
bank_group (marllb_reservoir_bank_t *b, lanes_t *g, const group_const_t *c, const uint32_t *seen,
            __m256i srv, __m256i at, uint32_t valid, uint32_t *kept_off, uint32_t *kept_at,
            __m256i *fill, __m256i *lo_min, int exact)
{
  __m256i s = _mm256_loadu_si256 ((const __m256i *) seen);
  /* seen of the odd lanes in the low halves of the 64-bit lanes */
  __m256i s_odd = _mm256_loadu_si256 ((const __m256i *) (seen + 1));
  __m256i f = _mm256_cmpgt_epi32 (c->k1, s);
  __m256i x = _mm256_or_si256 (lanes_next (g), f);
  *fill = _mm256_or_si256 (*fill, f);
  __m256i even = _mm256_mul_epu32 (x, s);
  __m256i odd = _mm256_mul_epu32 (_mm256_srli_epi64 (x, 32), s_odd);
  __m256i j = _mm256_blend_epi32 (_mm256_srli_epi64 (even, 32), odd, 0xaa);
  if (!exact)
    *lo_min = _mm256_min_epu32 (*lo_min, _mm256_min_epu32 (even, odd));
  else
    {
      __m256i lo = _mm256_blend_epi32 (even, _mm256_slli_epi64 (odd, 32), 0xaa);
      __m256i pass = _mm256_cmpeq_epi32 (_mm256_max_epu32 (lo, s), lo); /* lo >= s */
      if (__builtin_expect (!_mm256_testc_si256 (pass, c->ones), 0))
        {
          uint32_t jv[8], lov[8], sv[8];
          _mm256_storeu_si256 ((__m256i *) jv, j);
          _mm256_storeu_si256 ((__m256i *) lov, lo);
          _mm256_storeu_si256 ((__m256i *) sv, s);
          bank_reject (b, jv, lov, sv, (uint32_t) __builtin_popcount (valid));
          j = _mm256_loadu_si256 ((const __m256i *) jv);
        }
    }
  __m256i below_k = _mm256_cmpgt_epi32 (c->k, j);
  uint32_t keep = valid & (uint32_t) _mm256_movemask_ps (_mm256_castsi256_ps (below_k));
  __m256i off = _mm256_add_epi32 (_mm256_mullo_epi32 (srv, c->stride16), _mm256_slli_epi32 (j, 4));
  __m256i perm = _mm256_cvtepu8_epi32 (_mm_loadl_epi64 ((const __m128i *) &compress_lut[keep]));
  _mm256_storeu_si256 ((__m256i *) kept_off, _mm256_permutevar8x32_epi32 (off, perm));
  _mm256_storeu_si256 ((__m256i *) kept_at, _mm256_add_epi32 (perm, at));
  return (size_t) __builtin_popcount (keep);
}

/* Step 2 over a chunk, from the generators' state in b->lane, which it
 * advances.  Returns the number kept.  With exact = 0 it returns UINT32_MAX
 * (b->lane left as it was) unless every low half is >= bound, a bound on the
 * chunk's seen: then no lane needed the rejection step. */
AVX2_FN __attribute__ ((always_inline)) static inline uint32_t
bank_draw (marllb_reservoir_bank_t *b, const uint16_t *server, const uint32_t *seen, size_t n,
           uint32_t *kept_off, uint32_t *kept_at, __m256i *fill, uint32_t bound, int exact)
{
  lanes_t g = { _mm256_loadu_si256 ((const __m256i *) &b->lane[0]),
                _mm256_loadu_si256 ((const __m256i *) &b->lane[4]),
                _mm256_loadu_si256 ((const __m256i *) &b->lane[8]),
                _mm256_loadu_si256 ((const __m256i *) &b->lane[12]) };
  const group_const_t c = { _mm256_set1_epi32 ((int) b->k), _mm256_set1_epi32 ((int) b->k + 1),
                            _mm256_set1_epi32 ((int) (b->stride * sizeof (marllb_sample_t))),
                            _mm256_set1_epi32 (-1) };
  const __m256i eight = _mm256_set1_epi32 (8);
  __m256i at = _mm256_setzero_si256 (), acc = _mm256_setzero_si256 ();
  __m256i lo_min = _mm256_set1_epi32 (-1);
  size_t kept = 0, i = 0;
  for (; i + 8 <= n; i += 8)
    {
      __m256i srv = _mm256_cvtepu16_epi32 (_mm_loadu_si128 ((const __m128i *) (server + i)));
      kept += bank_group (b, &g, &c, seen + i, srv, at, 0xff, kept_off + kept, kept_at + kept,
                          &acc, &lo_min, exact);
      at = _mm256_add_epi32 (at, eight);
    }
  if (i < n)
    {
      uint16_t tail[8] = { 0 };
      for (size_t l = 0; l < n - i; l++)
        tail[l] = server[i + l];
      __m256i srv = _mm256_cvtepu16_epi32 (_mm_loadu_si128 ((const __m128i *) tail));
      kept += bank_group (b, &g, &c, seen + i, srv, at, (1u << (n - i)) - 1, kept_off + kept,
                          kept_at + kept, &acc, &lo_min, exact);
    }
  if (!exact)
    {
      /* the low halves: the even 32-bit lanes */
      __m256i bnd = _mm256_set1_epi32 ((int) bound);
      __m256i ok = _mm256_cmpeq_epi32 (_mm256_max_epu32 (lo_min, bnd), lo_min);
      if (!_mm256_testc_si256 (ok, _mm256_set1_epi64x (UINT32_MAX)))
        return UINT32_MAX;
    }
  *fill = acc;
  _mm256_storeu_si256 ((__m256i *) &b->lane[0], g.s0);
  _mm256_storeu_si256 ((__m256i *) &b->lane[4], g.s1);
  _mm256_storeu_si256 ((__m256i *) &b->lane[8], g.s2);
  _mm256_storeu_si256 ((__m256i *) &b->lane[12], g.s3);
  return (uint32_t) kept;
}

/* Step 2 with the rejection step, for chunks with large seen and the rare
 * ones where the quick check failed. */
AVX2_FN __attribute__ ((noinline)) static uint32_t
bank_draw_exact (marllb_reservoir_bank_t *b, const uint16_t *server, const uint32_t *seen,
                 uint32_t n, uint32_t *kept_off, uint32_t *kept_at, __m256i *fill)
{
  return bank_draw (b, server, seen, n, kept_off, kept_at, fill, 0, 1);
}

/* Below this bound on seen, the quick check (every low half of the chunk >=
 * the bound) fails in under 256 * 2^18 / 2^32 = 1/64 of the chunks. */
#define QUICK_SEEN (UINT64_C (1) << 18)

AVX2_FN static void
bank_chunk_avx2 (marllb_reservoir_bank_t *b, const uint16_t *server, const double *value,
                 const uint64_t *t_ns, uint32_t n)
{
  uint32_t seen[CHUNK + 9], kept_off[CHUNK + 8], kept_at[CHUNK + 8];
  marllb_reservoir_t *res = b->res;
  const uint32_t k = b->k;
  uint64_t high = 0;
/* s = ++res[server[I]].seen, in asm so that both accesses use one
 * base + index address (gcc adds the two into a register first). */
#define COUNT(I)                                                                         \
  do                                                                                     \
    {                                                                                    \
      uint64_t t_, s_;                                                                   \
      __asm__ ("movzwl %c[o1](%[srv]), %k[t]\n\t"                                       \
               "imul $48, %[t], %[t]\n\t"                                                \
               "mov %c[os](%[res],%[t]), %[s]\n\t"                                       \
               "add $1, %[s]\n\t"                                                        \
               "mov %[s], %c[os](%[res],%[t])\n\t"                                       \
               "mov %k[s], %c[o2](%[seen])\n\t"                                          \
               "or %[s], %[high]"                                                        \
               : [t] "=&r"(t_), [s] "=&r"(s_), [high] "+r"(high)                         \
               : [srv] "r"(sp), [seen] "r"(qp), [res] "r"(res),                          \
                 [o1] "i"(2 * (I)), [o2] "i"(4 * (I)),                                   \
                 [os] "i"(offsetof (marllb_reservoir_t, seen))                           \
               : "memory", "cc");                                                        \
    }                                                                                    \
  while (0)
  _Static_assert (sizeof (marllb_reservoir_t) == 48, "COUNT scales server by 48");
  const uint16_t *sp = server, *end8 = server + (n & ~7u);
  uint32_t *qp = seen;
  for (; sp != end8; sp += 8, qp += 8)
    {
      COUNT (0);
      COUNT (1);
      COUNT (2);
      COUNT (3);
      COUNT (4);
      COUNT (5);
      COUNT (6);
      COUNT (7);
    }
  for (; sp != server + n; sp++, qp++)
    COUNT (0);
#undef COUNT
  if (__builtin_expect (high >> 31 != 0, 0))
    {
      bank_undo (res, server, n);
      bank_batch_scalar (b, server, value, t_ns, n);
      return;
    }
  /* seen k + 1 in the lanes past n: never fill, masked off. */
  _mm256_storeu_si256 ((__m256i *) (seen + n), _mm256_set1_epi32 ((int) k + 1));
  seen[n + 8] = k + 1;

  __m256i fill;
  uint32_t kept = UINT32_MAX;
  if (__builtin_expect (high < QUICK_SEEN, 1))
    kept = bank_draw (b, server, seen, n, kept_off, kept_at, &fill, (uint32_t) high, 0);
  if (__builtin_expect (kept == UINT32_MAX, 0))
    kept = bank_draw_exact (b, server, seen, n, kept_off, kept_at, &fill);

  /* n = seen for the fill updates (seen <= k), for the chunks that have some;
   * a group of 8 at a time (the lanes past n hold k + 1). */
  if (!_mm256_testz_si256 (fill, fill))
    {
      const __m256i k1 = _mm256_set1_epi32 ((int) k + 1);
      for (uint32_t i = 0; i < n; i += 8)
        {
          __m256i f = _mm256_cmpgt_epi32 (k1, _mm256_loadu_si256 ((const __m256i *) (seen + i)));
          uint32_t m = (uint32_t) _mm256_movemask_ps (_mm256_castsi256_ps (f));
          if (m == 0xff)
            for (uint32_t l = 0; l < 8; l++)
              res[server[i + l]].n = seen[i + l];
          else
            for (; m != 0; m &= m - 1)
              {
                uint32_t l = (uint32_t) __builtin_ctz (m);
                res[server[i + l]].n = seen[i + l];
              }
        }
    }

  char *base = (char *) b->base;
#define WRITE(Q)                                                                         \
  do                                                                                     \
    {                                                                                    \
      uint32_t a_ = kept_at[Q];                                                          \
      __m128d v_ = _mm_loadh_pd (_mm_load_sd (&value[a_]), (const double *) &t_ns[a_]);  \
      _mm_storeu_pd ((double *) (base + kept_off[Q]), v_);                               \
    }                                                                                    \
  while (0)
  uint32_t q = 0;
  for (; q + 4 <= kept; q += 4)
    {
      WRITE (q);
      WRITE (q + 1);
      WRITE (q + 2);
      WRITE (q + 3);
    }
  for (; q < kept; q++)
    WRITE (q);
#undef WRITE
}

AVX2_FN static void
bank_batch_avx2 (marllb_reservoir_bank_t *b, const uint16_t *server, const double *value,
                 const uint64_t *t_ns, uint32_t n)
{
  for (uint32_t i = 0; i < n; i += CHUNK)
    bank_chunk_avx2 (b, server + i, value + i, t_ns + i, n - i < CHUNK ? n - i : CHUNK);
}
#endif

void
marllb_reservoir_bank_add_batch (marllb_reservoir_bank_t *b, const uint16_t *server,
                                 const double *value, const uint64_t *t_ns, uint32_t n)
{
#ifdef MARLLB_AVX2
  if (b->path == MARLLB_BANK_AVX2)
    {
      bank_batch_avx2 (b, server, value, t_ns, n);
      return;
    }
#endif
  bank_batch_scalar (b, server, value, t_ns, n);
}

void
marllb_reservoir_bank_add (marllb_reservoir_bank_t *b, uint16_t server, double value,
                           uint64_t t_ns)
{
  bank_batch_scalar (b, &server, &value, &t_ns, 1);
}
