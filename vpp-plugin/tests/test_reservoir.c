/*
 * test_reservoir.c - Algorithm R reservoirs and their PRNG: argument checks,
 * fill / reset / seen bookkeeping, determinism per seed, equality with a
 * plain Algorithm R over windows that reach both update regimes (branch-free
 * and branching), uniformity of inclusion (chi-square over many seeds) in
 * each regime, and the same for merged reservoirs and for banks: the scalar
 * batch against per-item updates, the avx2 batch against a plain-C model of
 * its lane PRNG, and uniformity over seeds with resets on both paths.
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

/* Bank: argument checks, and the batch equals the same updates one by one
 * (same PRNG stream, samples, n, seen), over windows with resets, odd batch
 * lengths (the spare half crosses calls) and every regime: fill, 32-bit
 * draws, and seen >= 2^32 (64-bit draws). */
static void
test_bank_args (void)
{
  enum { K = 8 };
  marllb_sample_t buf[3][K];
  marllb_reservoir_t res[3];
  marllb_reservoir_bank_t b;
  marllb_reservoir_init (&res[0], buf[0], K, 1);
  marllb_reservoir_init (&res[1], buf[1], K, 2);
  marllb_reservoir_init (&res[2], buf[2], K / 2, 3);
  CHECK (marllb_reservoir_bank_init (&b, NULL, 2, 1) == -1, "NULL reservoirs accepted");
  CHECK (marllb_reservoir_bank_init (&b, res, 0, 1) == -1, "m = 0 accepted");
  CHECK (marllb_reservoir_bank_init (&b, res, 3, 1) == -1, "mixed k accepted");
  CHECK (marllb_reservoir_bank_init (&b, res, 2, 1) == 0 && b.k == K && b.m == 2,
         "bank of two k=8 reservoirs rejected");
  marllb_reservoir_bank_add_batch (&b, NULL, NULL, NULL, 0);
  CHECK (res[0].seen == 0 && res[1].seen == 0, "an empty batch changed a reservoir");
}

/* n updates over m servers (seeded), value and timestamp i; with runs, the
 * first 10 of every 50 go to one server (repeats within a group of 8). */
static void
fill_updates (uint16_t *server, double *value, uint64_t *t_ns, uint32_t n, uint32_t m,
              uint64_t seed, int runs)
{
  marllb_rng_t g;
  marllb_rng_seed (&g, seed);
  for (uint32_t i = 0; i < n; i++)
    {
      server[i] = runs && i % 50 < 10 ? (uint16_t) ((i / 50) % m)
                                      : (uint16_t) marllb_rng_below (&g, m);
      value[i] = (double) i;
      t_ns[i] = i;
    }
}

static void
test_bank_batch_equals_items (void)
{
  enum { K = 8, M = 5, N = 3000 };
  marllb_sample_t a_buf[M][K], b_buf[M][K];
  marllb_reservoir_t a_res[M], b_res[M];
  marllb_reservoir_bank_t a, b;
  for (uint32_t s = 0; s < M; s++)
    {
      marllb_reservoir_init (&a_res[s], a_buf[s], K, s);
      marllb_reservoir_init (&b_res[s], b_buf[s], K, s);
    }
  marllb_reservoir_bank_init (&a, a_res, M, 77);
  marllb_reservoir_bank_init (&b, b_res, M, 77);
  CHECK (marllb_reservoir_bank_set_path (&a, MARLLB_BANK_SCALAR) == MARLLB_BANK_SCALAR,
         "the scalar path must always be available");
  uint16_t server[N];
  double value[N];
  uint64_t t_ns[N];
  fill_updates (server, value, t_ns, N, M, 5, 0);
  const uint32_t batch[] = { 1, 2, 3, 255, 256, 7, 0, 64, 1, 1, 1000 };
  int same = 1, crossed = 0;
  for (int window = 0; window < 6 && same; window++)
    {
      marllb_reservoir_bank_reset (&a);
      marllb_reservoir_bank_reset (&b);
      if (window == 4)
        /* just below 2^32 values seen: the window crosses into 64-bit draws */
        for (uint32_t s = 0; s < M; s++)
          a_res[s].seen = b_res[s].seen = UINT32_MAX - 40, a_res[s].n = b_res[s].n = K;
      uint32_t i = 0;
      for (size_t c = 0; i < N; c = (c + 1) % (sizeof batch / sizeof batch[0]))
        {
          uint32_t n = batch[c] < N - i ? batch[c] : N - i;
          if (window == 4)
            n = n < 8 ? n : 8; /* stay near 2^32: few values per window */
          marllb_reservoir_bank_add_batch (&a, server + i, value + i, t_ns + i, n);
          for (uint32_t j = i; j < i + n; j++)
            marllb_reservoir_bank_add (&b, server[j], value[j], t_ns[j]);
          i += n;
          if (window == 4 && i >= 400)
            break;
        }
      same = a.rng.state == b.rng.state && a.has_half == b.has_half
             && (!a.has_half || a.half == b.half);
      for (uint32_t s = 0; s < M && same; s++)
        same = a_res[s].n == b_res[s].n && a_res[s].seen == b_res[s].seen
               && memcmp (a_buf[s], b_buf[s], a_res[s].n * sizeof (marllb_sample_t)) == 0;
      CHECK (same, "window %d: scalar batch and per-item bank updates differ", window);
      if (window == 4)
        for (uint32_t s = 0; s < M; s++)
          crossed += a_res[s].seen > UINT32_MAX && a_res[s].n == K;
    }
  CHECK (crossed == M, "%d of %d reservoirs crossed seen = 2^32", crossed, M);

  /* Consistency after a window with resets: distinct offered values. */
  marllb_reservoir_bank_reset (&a);
  marllb_reservoir_bank_add_batch (&a, server, value, t_ns, N);
  int ok = 1;
  for (uint32_t s = 0; s < M; s++)
    ok &= a_res[s].n == (a_res[s].seen < K ? a_res[s].seen : K)
          && samples_consistent (&a_res[s], 0, N - 1);
  CHECK (ok, "bank samples must be distinct offered values, n = min(seen, k)");
}

/* Whether this machine runs the avx2 path (a bank over a strided layout). */
static int
avx2_available (void)
{
  static int known = -1;
  if (known < 0)
    {
      marllb_sample_t buf[2][4];
      marllb_reservoir_t res[2];
      marllb_reservoir_bank_t b;
      marllb_reservoir_init (&res[0], buf[0], 4, 0);
      marllb_reservoir_init (&res[1], buf[1], 4, 0);
      marllb_reservoir_bank_init (&b, res, 2, 0);
      known = b.path == MARLLB_BANK_AVX2;
      if (!known)
        printf ("test_reservoir: no AVX2 here, avx2 bank tests skipped\n");
    }
  return known;
}

/*
 * A plain-C model of the avx2 batch path, as marllb_reservoir.h describes it:
 * four xoshiro256++ generators seeded with outputs 2..17 of splitmix64 from
 * the seed; chunks of 256 updates, groups of 8 drawing one output per
 * generator (draw 2g = low half, 2g + 1 = high half of generator g); fill
 * while seen <= k; Lemire with its rejection step redrawing from the bank's
 * wyrand; write when the slot is below k.  Valid while seen stays below 2^31.
 */
typedef struct
{
  uint64_t s[4][4]; /* [generator][word] */
  marllb_rng_t rng;
} model_t;

static uint64_t
model_splitmix (uint64_t x)
{
  x += UINT64_C (0x9e3779b97f4a7c15);
  x = (x ^ (x >> 30)) * UINT64_C (0xbf58476d1ce4e5b9);
  x = (x ^ (x >> 27)) * UINT64_C (0x94d049bb133111eb);
  return x ^ (x >> 31);
}

static uint64_t
rotl (uint64_t x, int r)
{
  return (x << r) | (x >> (64 - r));
}

static uint64_t
xoshiro256pp (uint64_t *s)
{
  uint64_t out = rotl (s[0] + s[3], 23) + s[0];
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl (s[3], 45);
  return out;
}

static void
model_seed (model_t *m, uint64_t seed)
{
  for (uint64_t q = 0; q < 16; q++)
    m->s[q % 4][q / 4] = model_splitmix (seed + (q + 1) * UINT64_C (0x9e3779b97f4a7c15));
  marllb_rng_seed (&m->rng, seed);
}

static void
model_batch (model_t *m, marllb_reservoir_t *res, const uint16_t *server, const double *value,
             const uint64_t *t_ns, uint32_t n)
{
  for (uint32_t c = 0; c < n; c += 256)
    {
      uint32_t len = n - c < 256 ? n - c : 256;
      for (uint32_t q = 0; q * 8 < len; q++)
        {
          uint32_t draw[8];
          for (int g = 0; g < 4; g++)
            {
              uint64_t out = xoshiro256pp (m->s[g]);
              draw[2 * g] = (uint32_t) out;
              draw[2 * g + 1] = (uint32_t) (out >> 32);
            }
          for (uint32_t l = 0; l < 8 && q * 8 + l < len; l++)
            {
              uint32_t i = c + q * 8 + l;
              marllb_reservoir_t *r = &res[server[i]];
              uint64_t s = ++r->seen, slot;
              if (s <= r->k)
                {
                  r->n = (uint32_t) s;
                  slot = s - 1;
                }
              else
                {
                  uint64_t x = (uint64_t) draw[l] * s;
                  uint32_t threshold = (uint32_t) ((UINT64_C (1) << 32) % s);
                  while ((uint32_t) x < threshold)
                    x = (uint64_t) (uint32_t) marllb_rng_next (&m->rng) * s;
                  slot = x >> 32;
                  if (slot >= r->k)
                    continue;
                }
              r->samples[slot].value = value[i];
              r->samples[slot].t_ns = t_ns[i];
            }
        }
    }
}

/* The avx2 batch gives exactly the model's samples, n, seen and PRNG states:
 * windows with resets, batch lengths 0..600 (partial groups and chunks),
 * repeated servers, k = 8 (mostly replacements) and k = 100 (mostly fill), a
 * window starting at seen = 2^30, where about a quarter of the draws take
 * Lemire's rejection step, and seven just below 2^18, where the quick check on
 * the low halves fails now and then (twice in this stream).  Then the scalar fallback at seen >= 2^31 and
 * 2^32 keeps n, seen and the samples consistent. */
static void
check_avx2_matches_model (uint32_t k)
{
  enum { M = 5, N = 4000, KMAX = 100 };
  marllb_sample_t a_buf[M][KMAX], m_buf[M][KMAX];
  marllb_reservoir_t a_res[M], m_res[M];
  marllb_reservoir_bank_t a;
  model_t model;
  for (uint32_t s = 0; s < M; s++)
    {
      marllb_reservoir_init (&a_res[s], a_buf[s], k, s);
      marllb_reservoir_init (&m_res[s], m_buf[s], k, s);
    }
  marllb_reservoir_bank_init (&a, a_res, M, 2024);
  model_seed (&model, 2024);
  CHECK (marllb_reservoir_bank_set_path (&a, MARLLB_BANK_AVX2) == MARLLB_BANK_AVX2,
         "avx2 path refused");
  uint16_t server[N];
  double value[N];
  uint64_t t_ns[N];
  fill_updates (server, value, t_ns, N, M, 6, 1);
  const uint32_t batch[] = { 1, 2, 3, 255, 256, 7, 0, 8, 9, 64, 257, 600, 15, 16, 17, 513 };
  int same = 1;
  for (int window = 0; window < 12 && same; window++)
    {
      marllb_reservoir_bank_reset (&a);
      for (uint32_t s = 0; s < M; s++)
        m_res[s].n = 0, m_res[s].seen = 0;
      if (window >= 4)
        for (uint32_t s = 0; s < M; s++)
          a_res[s].seen = m_res[s].seen = window == 4 ? UINT64_C (1) << 30 : (1u << 18) - 1000,
          a_res[s].n = m_res[s].n = k;
      uint32_t i = 0;
      for (size_t c = (size_t) window; i < N; c = (c + 1) % (sizeof batch / sizeof batch[0]))
        {
          uint32_t n = batch[c] < N - i ? batch[c] : N - i;
          marllb_reservoir_bank_add_batch (&a, server + i, value + i, t_ns + i, n);
          model_batch (&model, m_res, server + i, value + i, t_ns + i, n);
          i += n;
        }
      same = a.rng.state == model.rng.state;
      for (int q = 0; q < 16; q++)
        same &= a.lane[q] == model.s[q % 4][q / 4];
      for (uint32_t s = 0; s < M && same; s++)
        same = a_res[s].n == m_res[s].n && a_res[s].seen == m_res[s].seen
               && memcmp (a_buf[s], m_buf[s], a_res[s].n * sizeof (marllb_sample_t)) == 0;
      CHECK (same, "k=%u window %d: avx2 batch and its plain-C model differ", k, window);
    }
  marllb_rng_t fresh;
  marllb_rng_seed (&fresh, 2024);
  CHECK (a.rng.state != fresh.state, "the window at seen = 2^30 never took the rejection step");

  /* Across seen = 2^31 (scalar fallback) and 2^32, a few values per window. */
  const uint64_t starts[] = { (UINT64_C (1) << 31) - 40, UINT32_MAX - 40 };
  int ok = 1;
  for (int w = 0; w < 2; w++)
    {
      for (uint32_t s = 0; s < M; s++)
        a_res[s].seen = starts[w], a_res[s].n = k;
      for (uint32_t i = 0; i < 400; i += 9)
        marllb_reservoir_bank_add_batch (&a, server + i, value + i, t_ns + i, 9);
      uint64_t total = 0;
      for (uint32_t s = 0; s < M; s++)
        {
          total += a_res[s].seen - starts[w];
          ok &= a_res[s].n == k && a_res[s].seen > starts[w] + 40;
        }
      ok &= total == 405 && a.path == MARLLB_BANK_AVX2;
    }
  marllb_reservoir_bank_reset (&a);
  marllb_reservoir_bank_add_batch (&a, server, value, t_ns, N);
  for (uint32_t s = 0; s < M; s++)
    ok &= a_res[s].n == (a_res[s].seen < k ? a_res[s].seen : k)
          && samples_consistent (&a_res[s], 0, N - 1);
  CHECK (ok, "k=%u: avx2 bank across seen = 2^31 and 2^32, then reset: inconsistent", k);
}

static void
test_bank_avx2 (void)
{
  if (!avx2_available ())
    return;
  check_avx2_matches_model (8);
  check_avx2_matches_model (100);

  /* The layout decides the path: strided arrays (as the VPP glue lays out
   * dur and fct) take avx2, scattered ones the scalar path. */
  enum { K = 4 };
  static marllb_sample_t pool[6][K];
  marllb_reservoir_t res[3];
  marllb_reservoir_bank_t b;
  for (uint32_t s = 0; s < 3; s++)
    marllb_reservoir_init (&res[s], pool[2 * s], K, s);
  marllb_reservoir_bank_init (&b, res, 3, 1);
  CHECK (b.path == MARLLB_BANK_AVX2 && b.stride == 2 * K, "stride-2k layout: path %u stride %u",
         b.path, b.stride);
  marllb_reservoir_init (&res[2], pool[3], K, 2);
  marllb_reservoir_bank_init (&b, res, 3, 1);
  CHECK (b.path == MARLLB_BANK_SCALAR, "an irregular layout must take the scalar path");
  CHECK (marllb_reservoir_bank_set_path (&b, MARLLB_BANK_AVX2) == MARLLB_BANK_SCALAR,
         "set_path must refuse avx2 on an irregular layout");
}

/* Uniformity through the bank (the same chi-square as
 * check_uniform_inclusion): over T seeds, M reservoirs fed in interleaved
 * batches, each reset between two windows (the second window is counted).
 * Position v of reservoir s is offered as value v. */
static void
check_bank_uniform (uint32_t k, uint32_t n, uint64_t trials, int path)
{
  /* batch lengths cycle through these, shifted by the seed */
  static const uint32_t lens[] = { 0, 1, 7, 8, 9, 255, 256, 2, 3, 4, 5 };
  const uint32_t n_lens = sizeof lens / sizeof lens[0];
  enum { M = 3, MAXN = 128 };
  marllb_sample_t buf[M][MARLLB_DEFAULT_K];
  marllb_reservoir_t res[M];
  marllb_reservoir_bank_t b;
  double count[M][MAXN] = { { 0 } };
  uint16_t server[M * MAXN];
  double value[M * MAXN];
  uint64_t t_ns[M * MAXN];
  for (uint32_t v = 0; v < n; v++)
    for (uint32_t s = 0; s < M; s++)
      {
        server[v * M + s] = (uint16_t) s;
        value[v * M + s] = (double) v;
        t_ns[v * M + s] = v;
      }
  for (uint64_t seed = 0; seed < trials; seed++)
    {
      for (uint32_t s = 0; s < M; s++)
        marllb_reservoir_init (&res[s], buf[s], k, 0);
      marllb_reservoir_bank_init (&b, res, M, seed);
      marllb_reservoir_bank_set_path (&b, path);
      for (int window = 0; window < 2; window++)
        {
          marllb_reservoir_bank_reset (&b);
          for (uint32_t i = 0, c = (uint32_t) (seed % n_lens); i < M * n; c = (c + 1) % n_lens)
            {
              uint32_t len = M * n - i < lens[c] ? M * n - i : lens[c];
              marllb_reservoir_bank_add_batch (&b, server + i, value + i, t_ns + i, len);
              i += len;
            }
        }
      for (uint32_t s = 0; s < M; s++)
        for (uint32_t i = 0; i < k; i++)
          count[s][buf[s][i].t_ns] += 1.0;
    }
  double p = (double) k / n, expect = (double) trials * p, var = expect * (1.0 - p);
  for (uint32_t s = 0; s < M; s++)
    {
      double stat = 0.0;
      for (uint32_t i = 0; i < n; i++)
        stat += (count[s][i] - expect) * (count[s][i] - expect) / var;
      stat *= (double) (n - 1) / n;
      double crit = chi2_critical (n - 1, Z_999);
      CHECK (stat < crit, "bank path %d k=%u n=%u reservoir %u: chi-square %.2f >= %.2f", path,
             k, n, s, stat, crit);
    }
}

static void
test_bank_uniform (void)
{
  check_bank_uniform (8, 32, 20000, MARLLB_BANK_SCALAR);
  check_bank_uniform (2, 128, 20000, MARLLB_BANK_SCALAR);
  if (!avx2_available ())
    return;
  check_bank_uniform (8, 32, 20000, MARLLB_BANK_AVX2);
  check_bank_uniform (2, 128, 20000, MARLLB_BANK_AVX2);
  check_bank_uniform (100, 128, 20000, MARLLB_BANK_AVX2); /* mostly fill */
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
  test_bank_args ();
  test_bank_batch_equals_items ();
  test_bank_avx2 ();
  test_bank_uniform ();
  printf ("test_reservoir: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
