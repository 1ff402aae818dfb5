/*
 * bench_shm_read.c - C baseline of the shm_read benchmark: newest-frame copy
 * plus validation from an existing region, timed per read.
 *
 *   marllb-bench-shm-read NAME ITERS   ->  {"median_us": .., "p99_us": .., "torn": ..}
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "marllb_ring.h"

static uint64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static int
cmp_u64 (const void *a, const void *b)
{
  uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
  return (x > y) - (x < y);
}

/* The same checks the Python reader makes: counts in range, finite samples. */
static int
validate (const marllb_region_hdr_t *h, void *buf)
{
  marllb_frame_hdr_t *f = buf;
  if (f->num_servers > h->server_capacity)
    return 0;
  for (uint32_t i = 0; i < f->num_servers; i++)
    {
      marllb_server_obs_t *s = marllb_server (h, f, i);
      if (s->active > 1 || s->n_dur > h->reservoir_k || s->n_fct > h->reservoir_k)
        return 0;
      marllb_sample_t *d = marllb_dur_samples (s), *c = marllb_fct_samples (h, s);
      for (uint32_t j = 0; j < s->n_dur; j++)
        if (!isfinite (d[j].value))
          return 0;
      for (uint32_t j = 0; j < s->n_fct; j++)
        if (!isfinite (c[j].value))
          return 0;
    }
  return 1;
}

int
main (int argc, char **argv)
{
  if (argc != 3)
    {
      fprintf (stderr, "usage: marllb-bench-shm-read NAME ITERS\n");
      return 2;
    }
  marllb_region_t r;
  if (marllb_region_attach (&r, argv[1]) < 0)
    {
      fprintf (stderr, "cannot attach %s\n", argv[1]);
      return 1;
    }
  long iters = strtol (argv[2], NULL, 10);
  uint64_t *lat = calloc ((size_t) iters, sizeof (uint64_t));
  void *buf = aligned_alloc (64, r.hdr->frame_size);
  uint64_t torn = 0, bad = 0, frame_no;
  for (long i = 0; i < iters; i++)
    {
      uint64_t t0 = now_ns ();
      int rv = marllb_frame_read_newest (r.hdr, buf, &frame_no);
      if (rv == 0 && !validate (r.hdr, buf))
        bad++;
      lat[i] = now_ns () - t0;
      torn += rv == 2;
    }
  qsort (lat, (size_t) iters, sizeof (uint64_t), cmp_u64);
  printf ("{\"median_us\": %.4f, \"p99_us\": %.4f, \"torn\": %llu, \"invalid\": %llu}\n",
          lat[iters / 2] / 1e3, lat[(size_t) (iters * 0.99)] / 1e3, (unsigned long long) torn,
          (unsigned long long) bad);
  free (lat);
  free (buf);
  marllb_region_close (&r, 0);
  return 0;
}
