/*
 * test_reservoir.c - Algorithm R reservoirs and their PRNG: argument checks,
 * fill / reset / seen bookkeeping, determinism per seed, and uniformity of
 * inclusion (chi-square over many seeds).
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

/*
 * Uniformity: over T seeds, count how often each of the N stream positions
 * ends in a k-sample.  Under Algorithm R every k-subset is equally likely, so
 * each count is Binomial(T, p), p = k/N, and the indicator vector has
 * covariance p(1-p) N/(N-1) (I - J/N) (the counts always sum to T k).  Hence
 *   X = (N-1)/N * sum_i (O_i - T p)^2 / (T p (1-p))  ~  chi-square(N - 1),
 * compared with its 1 - 1e-3 quantile (Wilson-Hilferty: 61.2 for df = 31).
 */
static void
test_uniform_inclusion (void)
{
  enum { K = 8, N = 32, T = 20000 };
  marllb_sample_t buf[K];
  marllb_reservoir_t r;
  double count[N] = { 0 };
  for (uint64_t seed = 0; seed < T; seed++)
    {
      marllb_reservoir_init (&r, buf, K, seed);
      for (uint64_t v = 0; v < N; v++)
        marllb_reservoir_add (&r, (double) v, v);
      for (uint32_t i = 0; i < K; i++)
        count[buf[i].t_ns] += 1.0;
    }
  double p = (double) K / N, expect = T * p, var = T * p * (1.0 - p);
  double stat = 0.0;
  for (int i = 0; i < N; i++)
    stat += (count[i] - expect) * (count[i] - expect) / var;
  stat *= (double) (N - 1) / N;
  double crit = chi2_critical (N - 1, Z_999);
  CHECK (stat < crit, "inclusion chi-square %.2f >= critical %.2f (df %d)", stat, crit, N - 1);

  /* A reservoir that never replaces after the fill would keep only 0..K-1. */
  CHECK (count[N - 1] > 0.5 * expect, "last position included %.0f times, expected ~%.0f",
         count[N - 1], expect);
}

int
main (void)
{
  test_rng ();
  test_init_args ();
  test_fill_and_reset ();
  test_determinism ();
  test_uniform_inclusion ();
  printf ("test_reservoir: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
