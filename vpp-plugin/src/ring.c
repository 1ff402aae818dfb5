/*
 * ring.c - region lifecycle, frame publication and the weights slot.
 *
 * Ordering: a writer stores the odd sequence (relaxed), issues a release
 * fence so the odd value is visible before any payload store, writes the
 * payload, then stores the even sequence with release.  A reader loads the
 * sequence with acquire, copies, issues an acquire fence and reloads the
 * sequence; the copy is kept only if both loads are equal and even.
 */
#include "marllb_ring.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static uint64_t
clock_ns (clockid_t id)
{
  struct timespec ts;
  clock_gettime (id, &ts);
  return (uint64_t) ts.tv_sec * 1000000000ull + (uint64_t) ts.tv_nsec;
}

static int
region_path (char *buf, size_t len, const char *name)
{
  if (!name || !*name || strchr (name, '/'))
    return -EINVAL;
  int n = snprintf (buf, len, "/dev/shm/marllb-%s", name);
  return (n < 0 || (size_t) n >= len) ? -ENAMETOOLONG : 0;
}

int
marllb_region_create (marllb_region_t *r, const char *name, uint32_t capacity,
                      uint32_t num_servers, uint32_t ring_len, uint32_t k, mode_t mode,
                      double max_weight_ratio, uint64_t publish_period_ns)
{
  memset (r, 0, sizeof (*r));
  if (capacity == 0 || capacity > MARLLB_MAX_SERVERS || num_servers > capacity || k == 0
      || k > MARLLB_MAX_K || ring_len < 2 || ring_len > MARLLB_MAX_RING_LEN
      || (ring_len & (ring_len - 1)) != 0 || (mode & 0007) != 0 || !(max_weight_ratio >= 1.0))
    return -EINVAL;
  int rv = region_path (r->path, sizeof (r->path), name);
  if (rv < 0)
    return rv;

  /* A fresh inode each time: a reader still mapping the old one never sees
   * a half-initialised header, and notices the restart by its epoch or by
   * the path's inode changing. */
  if (unlink (r->path) < 0 && errno != ENOENT)
    return -errno;
  int fd = open (r->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0)
    return -errno;
  if (fchmod (fd, mode) < 0) /* the umask must not widen or narrow it */
    {
      rv = -errno;
      goto fail_fd;
    }
  uint64_t size = marllb_region_size (capacity, ring_len, k);
  if (ftruncate (fd, (off_t) size) < 0)
    {
      rv = -errno;
      goto fail_fd;
    }
  void *p = mmap (NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    {
      rv = -errno;
      goto fail_fd;
    }
  close (fd);

  marllb_region_hdr_t *h = p;
  h->version = MARLLB_SHM_VERSION;
  h->header_size = sizeof (marllb_region_hdr_t);
  h->frame_size = (uint32_t) marllb_frame_size (capacity, k);
  h->server_stride = (uint32_t) marllb_server_stride (k);
  h->weights_size = (uint32_t) marllb_weights_size (capacity);
  h->server_capacity = capacity;
  h->num_servers = num_servers;
  h->ring_len = ring_len;
  h->reservoir_k = k;
  h->producer_pid = (uint32_t) getpid ();
  h->epoch = clock_ns (CLOCK_REALTIME);
  h->weights_offset = marllb_weights_offset ();
  h->ring_offset = marllb_ring_offset (capacity);
  h->total_size = size;
  h->max_weight_ratio = max_weight_ratio;
  h->publish_period_ns = publish_period_ns;
  h->heartbeat_ns = clock_ns (CLOCK_MONOTONIC);
  /* The magic goes last: a region is valid only once it is set. */
  __atomic_store_n (&h->magic, MARLLB_SHM_MAGIC, __ATOMIC_RELEASE);

  r->hdr = h;
  r->size = size;
  r->owner = 1;
  return 0;

fail_fd:
  close (fd);
  unlink (r->path);
  return rv;
}

int
marllb_region_attach (marllb_region_t *r, const char *name)
{
  memset (r, 0, sizeof (*r));
  int rv = region_path (r->path, sizeof (r->path), name);
  if (rv < 0)
    return rv;
  int fd = open (r->path, O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  struct stat st;
  if (fstat (fd, &st) < 0 || (uint64_t) st.st_size < sizeof (marllb_region_hdr_t))
    {
      close (fd);
      return -EPROTO;
    }
  void *p = mmap (NULL, (size_t) st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close (fd);
  if (p == MAP_FAILED)
    return -errno;
  marllb_region_hdr_t *h = p;
  uint32_t cap = h->server_capacity, k = h->reservoir_k, len = h->ring_len;
  int ok = __atomic_load_n (&h->magic, __ATOMIC_ACQUIRE) == MARLLB_SHM_MAGIC
           && h->version == MARLLB_SHM_VERSION && h->header_size == sizeof (*h) && cap > 0
           && cap <= MARLLB_MAX_SERVERS && k > 0 && k <= MARLLB_MAX_K && len >= 2
           && len <= MARLLB_MAX_RING_LEN && (len & (len - 1)) == 0
           && h->num_servers <= cap && h->frame_size == marllb_frame_size (cap, k)
           && h->server_stride == marllb_server_stride (k)
           && h->weights_size == marllb_weights_size (cap)
           && h->weights_offset == marllb_weights_offset ()
           && h->ring_offset == marllb_ring_offset (cap)
           && h->total_size == marllb_region_size (cap, len, k)
           && h->total_size == (uint64_t) st.st_size;
  if (!ok)
    {
      munmap (p, (size_t) st.st_size);
      return -EPROTO;
    }
  r->hdr = h;
  r->size = (uint64_t) st.st_size;
  r->owner = 0;
  return 0;
}

void
marllb_region_close (marllb_region_t *r, int unlink_it)
{
  if (r->hdr)
    munmap (r->hdr, r->size);
  if (unlink_it && r->owner)
    unlink (r->path);
  r->hdr = NULL;
}

marllb_frame_hdr_t *
marllb_frame_begin (marllb_region_hdr_t *h)
{
  uint64_t no = __atomic_load_n (&h->frames_published, __ATOMIC_RELAXED);
  marllb_frame_hdr_t *f = marllb_frame (h, no);
  uint64_t s = __atomic_load_n (&f->seq, __ATOMIC_RELAXED);
  __atomic_store_n (&f->seq, s + 1u + (s & 1u), __ATOMIC_RELAXED); /* odd */
  __atomic_thread_fence (__ATOMIC_RELEASE);
  f->frame_no = no;
  return f;
}

void
marllb_frame_commit (marllb_region_hdr_t *h, marllb_frame_hdr_t *f)
{
  uint64_t s = __atomic_load_n (&f->seq, __ATOMIC_RELAXED);
  __atomic_store_n (&f->seq, s + 1u, __ATOMIC_RELEASE);
  __atomic_store_n (&h->frames_published, f->frame_no + 1u, __ATOMIC_RELEASE);
  __atomic_store_n (&h->heartbeat_ns, clock_ns (CLOCK_MONOTONIC), __ATOMIC_RELEASE);
}

void
marllb_heartbeat (marllb_region_hdr_t *h)
{
  __atomic_store_n (&h->heartbeat_ns, clock_ns (CLOCK_MONOTONIC), __ATOMIC_RELEASE);
}

int
marllb_frame_read_newest (const marllb_region_hdr_t *h, void *buf, uint64_t *frame_no)
{
  uint64_t pub = __atomic_load_n (&h->frames_published, __ATOMIC_ACQUIRE);
  if (pub == 0)
    return 1;
  const marllb_frame_hdr_t *f = marllb_frame (h, pub - 1);
  uint64_t s1 = __atomic_load_n (&f->seq, __ATOMIC_ACQUIRE);
  if (s1 & 1u)
    return 2;
  memcpy (buf, f, h->frame_size);
  __atomic_thread_fence (__ATOMIC_ACQUIRE);
  uint64_t s2 = __atomic_load_n (&f->seq, __ATOMIC_RELAXED);
  const marllb_frame_hdr_t *copy = buf;
  if (s1 != s2 || copy->frame_no != pub - 1)
    return 2;
  if (frame_no)
    *frame_no = copy->frame_no;
  return 0;
}

void
marllb_weights_write (marllb_region_hdr_t *h, const double *w, uint32_t n, uint32_t policy_id,
                      uint64_t frame_no, uint64_t ts_ns)
{
  marllb_weights_slot_t *slot = marllb_weights_slot (h);
  if (n > h->server_capacity)
    n = h->server_capacity;
  uint64_t s = __atomic_load_n (&slot->seq, __ATOMIC_RELAXED);
  __atomic_store_n (&slot->seq, s + 1u, __ATOMIC_RELAXED);
  __atomic_thread_fence (__ATOMIC_RELEASE);
  slot->ts_ns = ts_ns;
  slot->decision_no = slot->decision_no + 1u;
  slot->frame_no = frame_no;
  slot->policy_id = policy_id;
  slot->num_servers = n;
  memcpy (marllb_weights (slot), w, (size_t) n * sizeof (double));
  __atomic_store_n (&slot->seq, s + 2u, __ATOMIC_RELEASE);
}

void
marllb_weights_state_init (marllb_weights_state_t *st, uint32_t n)
{
  memset (st, 0, sizeof (*st));
  st->n = n > MARLLB_MAX_SERVERS ? MARLLB_MAX_SERVERS : n;
  for (uint32_t i = 0; i < st->n; i++)
    st->weights[i] = 1.0;
}

marllb_weights_status_t
marllb_weights_read (const marllb_region_hdr_t *h, marllb_weights_state_t *st)
{
  const marllb_weights_slot_t *slot = marllb_weights_slot (h);
  uint64_t s1 = __atomic_load_n (&slot->seq, __ATOMIC_ACQUIRE);
  if (s1 == 0)
    return MARLLB_WEIGHTS_EMPTY;
  if (s1 == st->last_seq)
    return MARLLB_WEIGHTS_UNCHANGED;
  if (s1 & 1u)
    {
      st->torn++;
      return MARLLB_WEIGHTS_TORN;
    }
  double w[MARLLB_MAX_SERVERS];
  uint32_t n = slot->num_servers;
  uint32_t policy_id = slot->policy_id;
  uint64_t decision_no = slot->decision_no;
  if (n > h->server_capacity)
    n = 0; /* garbage count: rejected below, never used as a length */
  memcpy (w, marllb_weights ((marllb_weights_slot_t *) slot), (size_t) n * sizeof (double));
  __atomic_thread_fence (__ATOMIC_ACQUIRE);
  uint64_t s2 = __atomic_load_n (&slot->seq, __ATOMIC_RELAXED);
  if (s1 != s2)
    {
      st->torn++;
      return MARLLB_WEIGHTS_TORN;
    }
  st->last_seq = s1;
  int ok = n > 0 && n == h->num_servers;
  double lo = INFINITY, hi = 0.0;
  for (uint32_t i = 0; ok && i < n; i++)
    {
      if (!isfinite (w[i]) || !(w[i] > 0.0))
        ok = 0;
      else
        {
          lo = w[i] < lo ? w[i] : lo;
          hi = w[i] > hi ? w[i] : hi;
        }
    }
  if (ok && hi > lo * h->max_weight_ratio)
    ok = 0;
  if (!ok)
    {
      st->invalid++;
      return MARLLB_WEIGHTS_INVALID;
    }
  memcpy (st->weights, w, (size_t) n * sizeof (double));
  st->n = n;
  st->policy_id = policy_id;
  st->decision_no = decision_no;
  st->accepted++;
  return MARLLB_WEIGHTS_NEW;
}
