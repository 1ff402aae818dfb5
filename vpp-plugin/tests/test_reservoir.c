/*
 * test_reservoir.c - Algorithm R reservoirs and their PRNG: argument checks,
 * fill / reset / seen bookkeeping, determinism per seed, equality with a
 * plain Algorithm R over windows that reach both update regimes (branch-free
 * and branching), uniformity of inclusion (chi-square over many seeds) in
 * each regime, and the same for merged reservoirs.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "marllb_reservoir.h"

static int failures;
static int checks;

#define CHECK(cond, ...)                                                                 \
  do                                                                                     \
    {                                                                                    \
      checks++;                                                                          \
      if (!(cond))                                                                       \
        {                                                                                \
          failures++;                                                                    \
          fprintf (stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);               \
          fprintf (stderr, __VA_ARGS__);                                                 \
          fputc ('\n', stderr);                                                          \
        }                                                                                \
    }                                                                                    \
  while (0)

/* Upper alpha-quantile of chi-square with df degrees of freedom by the
 * Wilson-Hilferty cube approximation (accurate to ~1% for df >= 9); z is the
 * standard normal quantile of 1 - alpha. */
static double
chi2_critical (double df, double z)
{
  double c = 2.0 / (9.0 * df);
  double base = 1.0 - c + z * sqrt (c);
  return df * base * base * base;
}

/* alpha = 1e-3: a correct implementation fails a given seed set 1 time in 1000. */
#define Z_999 3.0902

static void
test_rng (void)
{
  marllb_rng_t a, b, c;
  marllb_rng_seed (&a, 42);
  marllb_rng_seed (&b, 42);
  marllb_rng_seed (&c, 43);
  int same = 1, differ = 0;
  for (int i = 0; i < 100; i++)
    {
      uint64_t x = marllb_rng_next (&a), y = marllb_rng_next (&b), z = marllb_rng_next (&c);
      same &= x == y;
      differ |= x != z;
    }
  CHECK (same, "equal seeds must give equal streams");
  CHECK (differ, "seeds 42 and 43 gave identical streams");

  CHECK (marllb_rng_below (&a, 0) == 0, "below(0) must be 0");
  CHECK (marllb_rng_below (&a, 1) == 0, "below(1) must be 0");

  /* n = 2^31 + 1 rejects about half of the draws: exercises the retry loop.
   * About half the results must land at or above n / 2. */
  const uint32_t big = (UINT32_C (1) << 31) + 1;
  int in_range = 1, upper = 0;
  for (int i = 0; i < 4000; i++)
    {
      uint32_t v = marllb_rng_below (&a, big);
      in_range &= v < big;
      upper += v >= (UINT32_C (1) << 30);
    }
  CHECK (in_range, "below(2^31 + 1) returned a value out of range");
  CHECK (upper > 1800 && upper < 2200, "below(2^31 + 1) gave %d of 4000 at or above 2^30", upper);

  const uint64_t big64 = (UINT64_C (1) << 63) + 1;
  int in_range64 = 1, upper64 = 0;
  for (int i = 0; i < 4000; i++)
    {
      uint64_t v = marllb_rng_below64_inline (&a, big64);
      in_range64 &= v < big64;
      upper64 += v >= (UINT64_C (1) << 62);
    }
  CHECK (in_range64, "below64(2^63 + 1) returned a value out of range");
  CHECK (upper64 > 1800 && upper64 < 2200, "below64(2^63 + 1) gave %d of 4000 at or above 2^62",
         upper64);

  /* Cell counts of below(10): multinomial, so plain Pearson chi-square, df 9. */
  enum { CELLS = 10, DRAWS = 100000 };
  double count[CELLS] = { 0 };
  for (int i = 0; i < DRAWS; i++)
    count[marllb_rng_below (&a, CELLS)] += 1.0;
  double stat = 0.0, expect = (double) DRAWS / CELLS;
  for (int i = 0; i < CELLS; i++)
    stat += (count[i] - expect) * (count[i] - expect) / expect;
  double crit = chi2_critical (CELLS - 1, Z_999);
  CHECK (stat < crit, "below(10) chi-square %.2f >= critical %.2f", stat, crit);
}

static void
test_init_args (void)
{
  marllb_sample_t buf[MARLLB_MAX_K];
  marllb_reservoir_t r;
  CHECK (marllb_reservoir_init (&r, NULL, 8, 1) == -1, "NULL samples accepted");
  CHECK (marllb_reservoir_init (NULL, buf, 8, 1) == -1, "NULL reservoir accepted");
  CHECK (marllb_reservoir_init (&r, buf, 0, 1) == -1, "k = 0 accepted");
  CHECK (marllb_reservoir_init (&r, buf, MARLLB_MAX_K + 1, 1) == -1, "k > MAX_K accepted");
  CHECK (marllb_reservoir_init (&r, buf, MARLLB_MAX_K, 1) == 0, "k = MAX_K rejected");
  CHECK (marllb_reservoir_init (&r, buf, 1, 1) == 0, "k = 1 rejected");
  CHECK (r.n == 0 && r.seen == 0 && r.k == 1, "init left n=%u seen=%llu k=%u", r.n,
         (unsigned long long) r.seen, r.k);
}

/* Value v is offered at t_ns = v, so a sample proves where it came from. */
static int
samples_consistent (const marllb_reservoir_t *r, uint64_t first, uint64_t last)
{
  for (uint32_t i = 0; i < r->n; i++)
    {
      const marllb_sample_t *s = &r->samples[i];
      if (s->t_ns < first || s->t_ns > last || s->value != (double) s->t_ns)
        return 0;
      for (uint32_t j = 0; j < i; j++)
        if (r->samples[j].t_ns == s->t_ns)
          return 0;
    }
  return 1;
}

static void
test_fill_and_reset (void)
{
  enum { K = 8 };
  marllb_sample_t buf[K];
  marllb_reservoir_t r;
  marllb_reservoir_init (&r, buf, K, 7);

  for (uint64_t v = 0; v < 5; v++)
    marllb_reservoir_add (&r, (double) v, v);
  CHECK (r.n == 5 && r.seen == 5, "after 5 adds n=%u seen=%llu", r.n,
         (unsigned long long) r.seen);
  int in_order = 1;
  for (uint32_t i = 0; i < 5; i++)
    in_order &= buf[i].t_ns == i && buf[i].value == (double) i;
  CHECK (in_order, "the fill phase must store values in arrival order");

  for (uint64_t v = 5; v < 1000; v++)
    {
      marllb_reservoir_add (&r, (double) v, v);
      if (r.n != (r.seen < K ? r.seen : K))
        break;
    }
  CHECK (r.n == K && r.seen == 1000, "after 1000 adds n=%u seen=%llu", r.n,
         (unsigned long long) r.seen);
  CHECK (samples_consistent (&r, 0, 999), "samples must be distinct offered values");

  uint64_t state_before = r.rng.state;
  marllb_reservoir_reset (&r);
  CHECK (r.n == 0 && r.seen == 0, "reset left n=%u seen=%llu", r.n, (unsigned long long) r.seen);
  CHECK (r.rng.state == state_before, "reset must keep the PRNG stream");

  marllb_reservoir_add (&r, 5000.0, 5000);
  CHECK (r.n == 1 && buf[0].t_ns == 5000, "first add after reset must fill slot 0");
  for (uint64_t v = 5001; v < 5100; v++)
    marllb_reservoir_add (&r, (double) v, v);
  CHECK (samples_consistent (&r, 5000, 5099), "samples after reset must come from the new window");
}

static void
test_determinism (void)
{
  enum { K = 16 };
  marllb_sample_t a_buf[K], b_buf[K], c_buf[K];
  marllb_reservoir_t a, b, c;
  marllb_reservoir_init (&a, a_buf, K, 99);
  marllb_reservoir_init (&b, b_buf, K, 99);
  marllb_reservoir_init (&c, c_buf, K, 100);
  for (uint64_t v = 0; v < 10000; v++)
    {
      marllb_reservoir_add (&a, (double) v, v);
      marllb_reservoir_add_inline (&b, (double) v, v);
      marllb_reservoir_add (&c, (double) v, v);
    }
  CHECK (memcmp (a_buf, b_buf, sizeof a_buf) == 0,
         "same seed and stream must give the same samples (call vs inline)");
  CHECK (memcmp (a_buf, c_buf, sizeof a_buf) != 0, "seeds 99 and 100 gave the same samples");
}

/* The textbook Algorithm R on the same PRNG stream: every slot write is a
 * plain branch on j < k.  The library's update must match it exactly. */
typedef struct
{
  marllb_sample_t samples[64];
  uint64_t seen;
  marllb_rng_t rng;
} plain_reservoir_t;

static void
plain_add (plain_reservoir_t *p, uint32_t k, double value, uint64_t t_ns)
{
  uint64_t s = ++p->seen;
  uint64_t j = s <= k ? s - 1 : marllb_rng_below64_inline (&p->rng, s);
  if (j < k)
    {
      p->samples[j].value = value;
      p->samples[j].t_ns = t_ns;
    }
}

/* Windows shorter than the fill, inside the branch-free range (up to
 * MARLLB_RESERVOIR_BRANCH_AT k) and well past it, with a reset between. */
static void
test_matches_plain_algorithm_r (void)
{
  enum { K = 8 };
  const uint64_t windows[] = { 5, 8, 9, 100, MARLLB_RESERVOIR_BRANCH_AT * K,
                               MARLLB_RESERVOIR_BRANCH_AT * K + 1, 3000, 1, 40000, 77 };
  marllb_sample_t buf[K];
  marllb_reservoir_t r;
  plain_reservoir_t p = { .seen = 0 };
  marllb_reservoir_init (&r, buf, K, 2024);
  marllb_rng_seed (&p.rng, 2024);
  uint64_t t = 0;
  int same = 1;
  for (size_t w = 0; w < sizeof windows / sizeof windows[0] && same; w++)
    {
      marllb_reservoir_reset (&r);
      p.seen = 0;
      for (uint64_t i = 0; i < windows[w]; i++, t++)
        {
          marllb_reservoir_add_inline (&r, (double) t, t);
          plain_add (&p, K, (double) t, t);
        }
      uint32_t n = (uint32_t) (p.seen < K ? p.seen : K);
      same = r.n == n && r.seen == p.seen
             && memcmp (buf, p.samples, n * sizeof (marllb_sample_t)) == 0
             && r.rng.state == p.rng.state;
      CHECK (same, "window %zu of %llu values: n=%u seen=%llu differ from plain Algorithm R", w,
             (unsigned long long) windows[w], r.n, (unsigned long long) r.seen);
    }
}

/*
 * Uniformity: over T seeds, count how often each of the N stream positions
 * ends in a k-sample.  Under Algorithm R every k-subset is equally likely, so
 * each count is Binomial(T, p), p = k/N, and the indicator vector has
 * covariance p(1-p) N/(N-1) (I - J/N) (the counts always sum to T k).  Hence
 *   X = (N-1)/N * sum_i (O_i - T p)^2 / (T p (1-p))  ~  chi-square(N - 1),
 * compared with its 1 - 1e-3 quantile (Wilson-Hilferty: 61.2 for df = 31).
 */
static void
check_uniform_inclusion (uint32_t k, uint32_t n, uint64_t trials)
{
  marllb_sample_t buf[MARLLB_DEFAULT_K];
  double count[256] = { 0 };
  marllb_reservoir_t r;
  for (uint64_t seed = 0; seed < trials; seed++)
    {
      marllb_reservoir_init (&r, buf, k, seed);
      for (uint64_t v = 0; v < n; v++)
        marllb_reservoir_add (&r, (double) v, v);
      for (uint32_t i = 0; i < k; i++)
        count[buf[i].t_ns] += 1.0;
    }
  double p = (double) k / n, expect = (double) trials * p, var = expect * (1.0 - p);
  double stat = 0.0;
  for (uint32_t i = 0; i < n; i++)
    stat += (count[i] - expect) * (count[i] - expect) / var;
  stat *= (double) (n - 1) / n;
  double crit = chi2_critical (n - 1, Z_999);
  CHECK (stat < crit, "k=%u n=%u: inclusion chi-square %.2f >= critical %.2f (df %u)", k, n, stat,
         crit, n - 1);

  /* A reservoir that never replaces after the fill would keep only 0..k-1. */
  CHECK (count[n - 1] > 0.5 * expect, "k=%u n=%u: last position included %.0f times, expected ~%.0f",
         k, n, count[n - 1], expect);
}

static void
test_uniform_inclusion (void)
{
  /* k=8, n=32: every update past the fill takes the branch-free store. */
  check_uniform_inclusion (8, 32, 20000);
  /* k=2, n=128: positions past MARLLB_RESERVOIR_BRANCH_AT k = 32 take the
   * branching update, the ones before the branch-free one. */
  check_uniform_inclusion (2, 128, 40000);
}

/* Fill reservoir r (k slots in buf) with stream positions [first, last). */
static void
fill_positions (marllb_reservoir_t *r, marllb_sample_t *buf, uint32_t k, uint64_t seed,
                uint64_t first, uint64_t last)
{
  marllb_reservoir_init (r, buf, k, seed);
  for (uint64_t v = first; v < last; v++)
    marllb_reservoir_add (r, (double) v, v);
}

static void
test_merge_bookkeeping (void)
{
  enum { K = 8 };
  marllb_sample_t a_buf[K], b_buf[K], c_buf[K], out[K];
  marllb_reservoir_t in[3];
  marllb_rng_t rng;
  marllb_rng_seed (&rng, 5);
  uint64_t seen = 0;

  /* Small streams: the merge holds the whole union, each value once. */
  fill_positions (&in[0], a_buf, K, 1, 0, 3);
  fill_positions (&in[1], b_buf, K, 2, 3, 3);
  fill_positions (&in[2], c_buf, K, 3, 3, 8);
  uint32_t n = marllb_reservoir_merge (out, K, in, 3, &rng, &seen);
  int seen_all = n == K;
  for (uint64_t v = 0; v < 8 && seen_all; v++)
    {
      int hits = 0;
      for (uint32_t i = 0; i < n; i++)
        hits += out[i].t_ns == v && out[i].value == (double) v;
      seen_all = hits == 1;
    }
  CHECK (n == K && seen == 8, "union of 3+0+5 merged to n=%u seen=%llu", n,
         (unsigned long long) seen);
  CHECK (seen_all, "a union smaller than k must come out whole, each value once");

  /* Large streams: k distinct samples, seen is the total offered. */
  fill_positions (&in[0], a_buf, K, 4, 0, 100);
  fill_positions (&in[1], b_buf, K, 5, 100, 120);
  n = marllb_reservoir_merge (out, K, in, 2, &rng, &seen);
  marllb_reservoir_t view = { .samples = out, .k = K, .n = n, .seen = seen };
  CHECK (n == K && seen == 120, "streams of 100 and 20 merged to n=%u seen=%llu", n,
         (unsigned long long) seen);
  CHECK (samples_consistent (&view, 0, 119), "merged samples must be distinct offered values");

  /* An input claiming a population but holding no samples is never drawn. */
  fill_positions (&in[0], a_buf, K, 6, 0, 4);
  fill_positions (&in[1], b_buf, K, 7, 0, 0);
  in[1].seen = 10;
  n = marllb_reservoir_merge (out, K, in, 2, &rng, &seen);
  view.n = n;
  CHECK (n == 4 && seen == 14, "dry input: n=%u seen=%llu, want 4 and 14", n,
         (unsigned long long) seen);
  CHECK (samples_consistent (&view, 0, 3), "a dry input must contribute no samples");

  n = marllb_reservoir_merge (out, K, in, 0, &rng, &seen);
  CHECK (n == 0 && seen == 0, "no inputs must give n=0 seen=0, got %u and %llu", n,
         (unsigned long long) seen);
}

/* Uniformity of the merge: positions 0..N-1 are split unevenly over three
 * thread reservoirs (5, 11 and 16 values); the merged k-sample must include
 * every position with probability k/N, as if one reservoir had seen the
 * whole stream (same chi-square as test_uniform_inclusion).  A merge that
 * took an equal share from each input would over-include the short stream. */
static void
test_merge_uniform (void)
{
  enum { K = 8, N = 32, T = 20000 };
  const uint64_t cut[4] = { 0, 5, 16, N };
  marllb_sample_t buf[3][K], out[K];
  marllb_reservoir_t in[3];
  marllb_rng_t rng;
  marllb_rng_seed (&rng, 11);
  double count[N] = { 0 };
  for (uint64_t seed = 0; seed < T; seed++)
    {
      for (int w = 0; w < 3; w++)
        fill_positions (&in[w], buf[w], K, 3 * seed + (uint64_t) w, cut[w], cut[w + 1]);
      uint64_t seen;
      uint32_t n = marllb_reservoir_merge (out, K, in, 3, &rng, &seen);
      for (uint32_t i = 0; i < n; i++)
        count[out[i].t_ns] += 1.0;
    }
  double p = (double) K / N, expect = T * p, var = T * p * (1.0 - p);
  double stat = 0.0;
  for (int i = 0; i < N; i++)
    stat += (count[i] - expect) * (count[i] - expect) / var;
  stat *= (double) (N - 1) / N;
  double crit = chi2_critical (N - 1, Z_999);
  CHECK (stat < crit, "merged inclusion chi-square %.2f >= critical %.2f (df %d)", stat, crit,
         N - 1);
}

int
main (void)
{
  test_rng ();
  test_init_args ();
  test_fill_and_reset ();
  test_determinism ();
  test_matches_plain_algorithm_r ();
  test_uniform_inclusion ();
  test_merge_bookkeeping ();
  test_merge_uniform ();
  printf ("test_reservoir: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
