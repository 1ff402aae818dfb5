/*
 * bench_reservoir.c - reservoir updates per second: the bank's batch update
 * (marllb_reservoir_bank_add_batch, what a VPP node calls once per frame)
 * and the per-item updates against Algorithm R driven by libc rand(), on one
 * precomputed stream of (server, value, t_ns) updates over 64 servers x 128
 * samples.
 *
 * The headline pair resets every reservoir once per publication window of
 * --window updates per server (default 1024, where 38% of updates replace a
 * sample), so the figure is not a measurement of the reject branch.  The
 * "steady" pair never resets (almost every update is rejected): the best case.
 * Each figure is the median of --reps timed passes, contenders interleaved.
 *
 * What a figure includes: the wall-clock time of one pass over the updates,
 * i.e. reading each (server, value, t_ns) from the precomputed input (4.5 MB,
 * replayed cyclically), the reset of all 64 reservoirs at each window start,
 * and the update itself.  The batch contender takes the input in frames of
 * up to 256 updates (a VPP vector).  Excluded: making the input and the
 * checksum.  The checksum folds every reservoir's
 * samples after each pass and is printed, so no update is dead code.
 *
 * Prints one JSON line: {"value": Mupdates/s, "baseline_value": Mupdates/s, ...};
 * value is marllb_reservoir_bank_add_batch on the path the bank chose at
 * init ("simd": "avx2" or "none"), scalar_batch_value the same bank forced
 * onto its scalar path, inline_value the per-item marllb_reservoir_add_inline,
 * call_value the exported marllb_reservoir_add, all on the same stream.
 * usage: marllb-bench-reservoir [--quick] [--updates N] [--reps R] [--window W]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "marllb_reservoir.h"

#define SERVERS 64u
#define K MARLLB_DEFAULT_K
#define INPUT_LEN (1u << 18) /* precomputed updates, replayed cyclically */
#define FRAME 256u           /* updates per batch call: a VPP frame */
#define MAX_REPS 101

typedef struct
{
  uint16_t server[INPUT_LEN];
  double value[INPUT_LEN];
  uint64_t t_ns[INPUT_LEN];
} input_t;

/* Algorithm R with libc rand(): the naive per-packet reservoir. */
typedef struct
{
  marllb_sample_t samples[K];
  uint64_t seen;
} naive_reservoir_t;

typedef enum
{
  BATCH,  /* marllb_reservoir_bank_add_batch, one call per frame */
  SCALAR, /* the same, the bank forced onto its scalar path */
  INLINE, /* marllb_reservoir_add_inline: what a per-packet node compiles in */
  CALL,   /* marllb_reservoir_add: the same code behind a call into the library */
  NAIVE,
} contender_t;

typedef struct
{
  const char *key;
  contender_t who;
  int steady; /* 1: never reset */
  double rate[MAX_REPS];
} series_t;

static marllb_sample_t fast_samples[SERVERS][K];
static marllb_reservoir_t fast[SERVERS];
static marllb_sample_t bank_samples[SERVERS][K];
static marllb_reservoir_t bank_res[SERVERS];
static marllb_reservoir_bank_t bank;
static marllb_sample_t scalar_samples[SERVERS][K];
static marllb_reservoir_t scalar_res[SERVERS];
static marllb_reservoir_bank_t scalar_bank;
static naive_reservoir_t naive[SERVERS];

static double
now_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + 1e-9 * (double) ts.tv_nsec;
}

static void
fill_input (input_t *in)
{
  marllb_rng_t rng;
  marllb_rng_seed (&rng, 12345);
  for (uint32_t i = 0; i < INPUT_LEN; i++)
    {
      in->server[i] = (uint16_t) marllb_rng_below (&rng, SERVERS);
      in->value[i] = (double) (marllb_rng_next (&rng) >> 11) * 0x1.0p-53;
      in->t_ns[i] = UINT64_C (1700000000000000000) + 1000u * (uint64_t) i;
    }
}

static inline void
naive_add (naive_reservoir_t *r, double value, uint64_t t_ns)
{
  uint64_t s = ++r->seen;
  uint64_t j = s <= K ? s - 1 : (uint64_t) rand () % s;
  if (j < K)
    {
      r->samples[j].value = value;
      r->samples[j].t_ns = t_ns;
    }
}

static void
reset_all (contender_t who)
{
  if (who == BATCH || who == SCALAR)
    {
      marllb_reservoir_bank_reset (who == BATCH ? &bank : &scalar_bank);
      return;
    }
  for (uint32_t s = 0; s < SERVERS; s++)
    if (who == NAIVE)
      naive[s].seen = 0;
    else
      marllb_reservoir_reset (&fast[s]);
}

/* The per-item contenders share this loop; only the update differs.  Each
 * contender gets its own function, kept out of line, so each loop is
 * compiled (and register-allocated) alone, as in a packet node. */
#define RUN(UPDATE)                                                                      \
  for (uint64_t done = 0, pos = 0; done < updates;)                                      \
    {                                                                                    \
      reset_all (who);                                                                   \
      uint64_t end = done + window < updates ? done + window : updates;                  \
      for (; done < end; done++)                                                         \
        {                                                                                \
          uint32_t srv = in->server[pos];                                                \
          double val = in->value[pos];                                                   \
          uint64_t t = in->t_ns[pos];                                                    \
          pos = (pos + 1) & (INPUT_LEN - 1);                                             \
          UPDATE (srv, val, t);                                                          \
        }                                                                                \
    }

#define INLINE_UPDATE(srv, val, t) marllb_reservoir_add_inline (&fast[srv], val, t)
#define CALL_UPDATE(srv, val, t) marllb_reservoir_add (&fast[srv], val, t)
#define NAIVE_UPDATE(srv, val, t) naive_add (&naive[srv], val, t)

#define DEFINE_PASS(NAME, WHO, UPDATE)                                                   \
  __attribute__ ((noinline)) static void NAME (uint64_t updates, uint64_t window,        \
                                               const input_t *in)                        \
  {                                                                                      \
    const contender_t who = WHO;                                                         \
    RUN (UPDATE);                                                                        \
  }

DEFINE_PASS (pass_inline, INLINE, INLINE_UPDATE)
DEFINE_PASS (pass_call, CALL, CALL_UPDATE)
DEFINE_PASS (pass_naive, NAIVE, NAIVE_UPDATE)

/* The same stream, a frame at a time (frames end at window ends and at the
 * end of the input). */
__attribute__ ((noinline)) static void
pass_batch (contender_t who, uint64_t updates, uint64_t window, const input_t *in)
{
  marllb_reservoir_bank_t *b = who == BATCH ? &bank : &scalar_bank;
  for (uint64_t done = 0, pos = 0; done < updates;)
    {
      reset_all (who);
      uint64_t end = done + window < updates ? done + window : updates;
      while (done < end)
        {
          uint64_t n = end - done;
          n = n < FRAME ? n : FRAME;
          n = n < INPUT_LEN - pos ? n : INPUT_LEN - pos;
          marllb_reservoir_bank_add_batch (b, in->server + pos, in->value + pos,
                                           in->t_ns + pos, (uint32_t) n);
          done += n;
          pos = (pos + n) & (INPUT_LEN - 1);
        }
    }
}

/* Fold every reservoir's contents into one number, so no update is dead code. */
static uint64_t
checksum (contender_t who)
{
  uint64_t sum = 0;
  for (uint32_t s = 0; s < SERVERS; s++)
    {
      uint64_t n = who == NAIVE    ? (naive[s].seen < K ? naive[s].seen : K)
                   : who == BATCH  ? bank_res[s].n
                   : who == SCALAR ? scalar_res[s].n
                                   : fast[s].n;
      const marllb_sample_t *smp = who == NAIVE    ? naive[s].samples
                                   : who == BATCH  ? bank_samples[s]
                                   : who == SCALAR ? scalar_samples[s]
                                                   : fast_samples[s];
      for (uint64_t i = 0; i < n; i++)
        sum += smp[i].t_ns ^ (uint64_t) (smp[i].value * 1e9);
    }
  return sum;
}

/* One timed pass; returns Mupdates/s. */
static double
timed_pass (contender_t who, uint64_t updates, uint64_t window, const input_t *in,
            uint64_t *sum)
{
  double t0 = now_s ();
  switch (who)
    {
    case BATCH:
    case SCALAR:
      pass_batch (who, updates, window, in);
      break;
    case INLINE:
      pass_inline (updates, window, in);
      break;
    case CALL:
      pass_call (updates, window, in);
      break;
    case NAIVE:
      pass_naive (updates, window, in);
      break;
    }
  double dt = now_s () - t0;
  *sum += checksum (who);
  return (double) updates / dt / 1e6;
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

static double
median (double *v, int n)
{
  qsort (v, (size_t) n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct
{
  uint64_t updates;
  uint64_t window; /* updates per server per window */
  int reps;
} config_t;

static int
parse_args (int argc, char **argv, config_t *cfg)
{
  *cfg = (config_t){ .updates = UINT64_C (1) << 24, .window = 1024, .reps = 7 };
  for (int i = 1; i < argc; i++)
    {
      if (strcmp (argv[i], "--quick") == 0)
        {
          cfg->updates = UINT64_C (1) << 22;
          cfg->reps = 3;
          continue;
        }
      char *end = NULL;
      unsigned long long v = i + 1 < argc ? strtoull (argv[i + 1], &end, 10) : 0;
      int numeric = i + 1 < argc && end != argv[i + 1] && *end == '\0';
      if (numeric && strcmp (argv[i], "--updates") == 0 && v > 0)
        cfg->updates = v;
      else if (numeric && strcmp (argv[i], "--reps") == 0 && v > 0 && v <= MAX_REPS)
        cfg->reps = (int) v;
      else if (numeric && strcmp (argv[i], "--window") == 0 && v > 0)
        cfg->window = v;
      else
        {
          fprintf (stderr,
                   "bench_reservoir: bad argument '%s%s%s'; want --quick, --updates N (N > 0), "
                   "--reps R (1..%d), --window W (updates per server per window, W > 0)\n",
                   argv[i], i + 1 < argc ? " " : "", i + 1 < argc ? argv[i + 1] : "", MAX_REPS);
          return -1;
        }
      i++;
    }
  return 0;
}

int
main (int argc, char **argv)
{
  config_t cfg;
  if (parse_args (argc, argv, &cfg) != 0)
    return 2;
  input_t *in = malloc (sizeof *in);
  if (in == NULL)
    {
      fprintf (stderr, "bench_reservoir: cannot allocate %zu bytes of input\n", sizeof *in);
      return 1;
    }
  fill_input (in);
  for (uint32_t s = 0; s < SERVERS; s++)
    if (marllb_reservoir_init (&fast[s], fast_samples[s], K, s) != 0
        || marllb_reservoir_init (&bank_res[s], bank_samples[s], K, s) != 0
        || marllb_reservoir_init (&scalar_res[s], scalar_samples[s], K, s) != 0)
      {
        fprintf (stderr, "bench_reservoir: marllb_reservoir_init failed for server %u\n", s);
        return 1;
      }
  if (marllb_reservoir_bank_init (&bank, bank_res, SERVERS, 1) != 0
      || marllb_reservoir_bank_init (&scalar_bank, scalar_res, SERVERS, 1) != 0)
    {
      fprintf (stderr, "bench_reservoir: marllb_reservoir_bank_init failed\n");
      return 1;
    }
  marllb_reservoir_bank_set_path (&scalar_bank, MARLLB_BANK_SCALAR);
  const char *simd = bank.path == MARLLB_BANK_AVX2 ? "avx2" : "none";
  srand (1);

  series_t series[] = {
    { "value", BATCH, 0, { 0 } },
    { "baseline_value", NAIVE, 0, { 0 } },
    { "scalar_batch_value", SCALAR, 0, { 0 } },
    { "inline_value", INLINE, 0, { 0 } },
    { "call_value", CALL, 0, { 0 } },
    { "steady_value", BATCH, 1, { 0 } },
    { "steady_baseline_value", NAIVE, 1, { 0 } },
    { "steady_inline_value", INLINE, 1, { 0 } },
  };
  const int n_series = (int) (sizeof series / sizeof series[0]);
  uint64_t sum = 0;
  for (int rep = -1; rep < cfg.reps; rep++) /* rep -1 warms up */
    for (int i = 0; i < n_series; i++)
      {
        uint64_t window = series[i].steady ? cfg.updates : cfg.window * SERVERS;
        double rate = timed_pass (series[i].who, cfg.updates, window, in, &sum);
        if (rep >= 0)
          series[i].rate[rep] = rate;
      }

  printf ("{");
  for (int i = 0; i < n_series; i++)
    printf ("\"%s\": %.3f, ", series[i].key, median (series[i].rate, cfg.reps));
  printf ("\"simd\": \"%s\", \"unit\": \"Mupdates/s\", \"servers\": %u, \"k\": %u, "
          "\"updates\": %" PRIu64 ", \"window_per_server\": %" PRIu64
          ", \"reps\": %d, \"checksum\": %" PRIu64 "}\n",
          simd, SERVERS, K, cfg.updates, cfg.window, cfg.reps, sum);
  free (in);
  return 0;
}
