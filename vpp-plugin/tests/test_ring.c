/* test_ring.c - region lifecycle, frame seqlock and weights-slot validation. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "marllb_ring.h"

static int failures;
#define CHECK(c)                                                                                  \
  do                                                                                              \
    {                                                                                             \
      if (!(c))                                                                                   \
        {                                                                                         \
          fprintf (stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c);                  \
          failures++;                                                                             \
        }                                                                                         \
    }                                                                                             \
  while (0)

static char name[64];

static void
test_create_attach (void)
{
  marllb_region_t r, a;
  CHECK (marllb_region_create (&r, name, 8, 4, 8, 16, 0600, 10.0, 1000) == 0);
  struct stat st;
  CHECK (stat (r.path, &st) == 0 && (st.st_mode & 0777) == 0600);
  CHECK (r.hdr->magic == MARLLB_SHM_MAGIC && r.hdr->ring_len == 8 && r.hdr->reservoir_k == 16);
  CHECK (r.hdr->total_size == marllb_region_size (8, 8, 16) && st.st_size == (off_t) r.size);
  CHECK (marllb_region_attach (&a, name) == 0 && a.hdr->num_servers == 4 && !a.owner);
  /* Corrupt the magic: attach refuses. */
  r.hdr->magic ^= 1;
  marllb_region_t b;
  CHECK (marllb_region_attach (&b, name) == -EPROTO);
  r.hdr->magic ^= 1;
  marllb_region_close (&a, 1); /* not the owner: must not unlink */
  CHECK (access (r.path, F_OK) == 0);
  marllb_region_close (&r, 1);
  CHECK (access (r.path, F_OK) != 0);
  CHECK (marllb_region_attach (&b, name) == -ENOENT);
}

static void
test_bad_args (void)
{
  marllb_region_t r;
  CHECK (marllb_region_create (&r, name, 8, 4, 6, 16, 0600, 10.0, 0) == -EINVAL); /* ring 6 */
  CHECK (marllb_region_create (&r, name, 8, 9, 8, 16, 0600, 10.0, 0) == -EINVAL); /* n > cap */
  CHECK (marllb_region_create (&r, name, 8, 4, 8, 16, 0666, 10.0, 0) == -EINVAL); /* world */
  CHECK (marllb_region_create (&r, name, 8, 4, 8, 0, 0600, 10.0, 0) == -EINVAL);  /* k 0 */
  CHECK (marllb_region_create (&r, "a/b", 8, 4, 8, 16, 0600, 10.0, 0) == -EINVAL);
  CHECK (marllb_region_create (&r, name, 8, 4, 8, 16, 0600, NAN, 0) == -EINVAL);
}

static void
test_frames (void)
{
  marllb_region_t r;
  CHECK (marllb_region_create (&r, name, 4, 4, 4, 8, 0600, 10.0, 0) == 0);
  marllb_region_hdr_t *h = r.hdr;
  void *buf = malloc (h->frame_size);
  uint64_t no = 99;
  CHECK (marllb_frame_read_newest (h, buf, &no) == 1);
  for (uint64_t i = 0; i < 10; i++)
    {
      marllb_frame_hdr_t *f = marllb_frame_begin (h);
      CHECK (f->frame_no == i && (f->seq & 1) == 1);
      /* A reader during the write sees a torn slot only if it is the newest:
       * the newest complete frame is still the previous one. */
      if (i > 0)
        {
          CHECK (marllb_frame_read_newest (h, buf, &no) == 0 && no == i - 1);
        }
      f->num_servers = 4;
      marllb_server (h, f, 3)->active_flows = 1000 + i;
      marllb_fct_samples (h, marllb_server (h, f, 2))[7].value = (double) i;
      marllb_frame_commit (h, f);
      CHECK ((f->seq & 1) == 0 && h->frames_published == i + 1);
      CHECK (marllb_frame_read_newest (h, buf, &no) == 0 && no == i);
      marllb_frame_hdr_t *c = buf;
      CHECK (marllb_server (h, c, 3)->active_flows == 1000 + i);
      CHECK (marllb_fct_samples (h, marllb_server (h, c, 2))[7].value == (double) i);
    }
  /* A slot caught mid-write is reported torn. */
  marllb_frame_hdr_t *newest = marllb_frame (h, h->frames_published - 1);
  newest->seq |= 1;
  CHECK (marllb_frame_read_newest (h, buf, &no) == 2);
  newest->seq += 1;
  free (buf);
  marllb_region_close (&r, 1);
}

static void
test_weights (void)
{
  marllb_region_t r;
  CHECK (marllb_region_create (&r, name, 8, 3, 2, 4, 0600, 10.0, 0) == 0);
  marllb_region_hdr_t *h = r.hdr;
  marllb_weights_state_t st;
  marllb_weights_state_init (&st, 3);
  CHECK (marllb_weights_read (h, &st) == MARLLB_WEIGHTS_EMPTY);
  double good[3] = { 1.0, 2.0, 3.0 };
  marllb_weights_write (h, good, 3, 7, 42, 123);
  CHECK (marllb_weights_read (h, &st) == MARLLB_WEIGHTS_NEW);
  CHECK (st.weights[2] == 3.0 && st.policy_id == 7 && st.decision_no == 1 && st.accepted == 1);
  CHECK (marllb_weights_read (h, &st) == MARLLB_WEIGHTS_UNCHANGED);

  double bad[][3] = { { 1.0, NAN, 1.0 }, { 1.0, 0.0, 1.0 }, { 1.0, -1.0, 1.0 },
                      { 1.0, INFINITY, 1.0 }, { 1.0, 11.0, 1.0 } /* ratio 11 > 10 */ };
  for (size_t i = 0; i < sizeof (bad) / sizeof (bad[0]); i++)
    {
      marllb_weights_write (h, bad[i], 3, 9, 43, 124);
      CHECK (marllb_weights_read (h, &st) == MARLLB_WEIGHTS_INVALID);
      CHECK (st.weights[0] == 1.0 && st.weights[1] == 2.0 && st.weights[2] == 3.0);
    }
  marllb_weights_write (h, good, 2, 9, 44, 125); /* wrong count */
  CHECK (marllb_weights_read (h, &st) == MARLLB_WEIGHTS_INVALID);
  CHECK (st.invalid == 6 && st.policy_id == 7);

  marllb_weights_slot_t *slot = marllb_weights_slot (h);
  slot->seq += 1; /* writer mid-update */
  CHECK (marllb_weights_read (h, &st) == MARLLB_WEIGHTS_TORN && st.torn == 1);
  slot->seq += 1;
  double next[3] = { 2.0, 2.0, 2.0 };
  marllb_weights_write (h, next, 3, 8, 45, 126);
  CHECK (marllb_weights_read (h, &st) == MARLLB_WEIGHTS_NEW && st.weights[0] == 2.0);
  marllb_region_close (&r, 1);
}

int
main (void)
{
  snprintf (name, sizeof (name), "ctest-ring-%d", (int) getpid ());
  test_bad_args ();
  test_create_attach ();
  test_frames ();
  test_weights ();
  printf ("test_ring: %s (%d failures)\n", failures ? "FAIL" : "ok", failures);
  return failures ? 1 : 0;
}
