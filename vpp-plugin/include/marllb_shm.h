/*
 * marllb_shm.h - the shared-memory contract between a MARLLB data plane
 * (VPP plugin, simulator process, C peer) and the marllbd control plane.
 *
 * This header is the single source of truth for the layout.  marllbd/ipc/
 * layout.py mirrors it; tests/ipc/test_layout.py compiles a program that
 * prints sizeof/offsetof of every field and compares them with the dtypes.
 *
 * Region (/dev/shm/marllb-<name>, created by the data plane, mode 0600/0660):
 *
 *   +---------------------------+ 0
 *   | marllb_region_hdr_t       |  256 bytes
 *   +---------------------------+ weights_offset
 *   | marllb_weights_slot_t     |  64 bytes
 *   | f64 weights[capacity]     |  rounded up to 64 bytes
 *   +---------------------------+ ring_offset
 *   | frame 0                   |  frame_size bytes each, ring_len frames
 *   | ...                       |  (ring_len is a power of two)
 *   +---------------------------+ total_size
 *
 * Frame (frame_size bytes, a multiple of 64):
 *   marllb_frame_hdr_t (64 bytes), then `capacity` server records of
 *   server_stride bytes each: marllb_server_obs_t (64 bytes), then
 *   k duration samples and k completion-time samples (marllb_sample_t).
 *
 * Sizes that depend on (capacity, k) are runtime values recorded in the
 * region header; the helpers below compute them identically in C and Python.
 *
 * Memory ordering: every 64-bit word that is read concurrently (sequence
 * words, frames_published, heartbeat) is naturally aligned.  Writers bump a
 * sequence word to an odd value, issue a release fence, write the payload,
 * then store the even value with release semantics.  Readers load the
 * sequence with acquire, copy, issue an acquire fence and re-load it; a
 * changed or odd sequence means a torn copy, which is discarded.
 */
#ifndef MARLLB_SHM_H
#define MARLLB_SHM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "MARLLBSH" read as a little-endian u64. */
#define MARLLB_SHM_MAGIC UINT64_C(0x4853424c4c52414d)
#define MARLLB_SHM_VERSION 1u

#define MARLLB_CACHELINE 64u
#define MARLLB_DEFAULT_K 128u
#define MARLLB_MAX_K 4096u
#define MARLLB_MAX_SERVERS 1024u
#define MARLLB_MAX_RING_LEN 1024u
#define MARLLB_DEFAULT_MAX_WEIGHT_RATIO 100.0

/* Frame flags. */
#define MARLLB_FRAME_F_WINDOW_RESET 1u /* reservoirs were reset for this window */

/* Region header: written once at creation except the fields marked live. */
typedef struct marllb_region_hdr
{
  uint64_t magic;          /* MARLLB_SHM_MAGIC */
  uint32_t version;        /* MARLLB_SHM_VERSION */
  uint32_t header_size;    /* sizeof (marllb_region_hdr_t) */
  uint32_t frame_size;     /* bytes per ring slot */
  uint32_t server_stride;  /* bytes per server record inside a frame */
  uint32_t weights_size;   /* bytes of the weights slot incl. its array */
  uint32_t server_capacity;/* server records per frame, weights per slot */
  uint32_t num_servers;    /* servers in use, <= server_capacity */
  uint32_t ring_len;       /* frames in the ring, a power of two */
  uint32_t reservoir_k;    /* samples per reservoir */
  uint32_t producer_pid;   /* pid of the data-plane process */
  uint64_t epoch;          /* producer start time (CLOCK_REALTIME ns); changes on restart */
  uint64_t weights_offset; /* byte offset of the weights slot */
  uint64_t ring_offset;    /* byte offset of frame 0 */
  uint64_t total_size;     /* size of the whole region */
  double max_weight_ratio; /* data plane rejects weights with max/min above this */
  uint64_t publish_period_ns; /* nominal period between frames */
  uint8_t _pad0[128 - 96];
  /* live, producer-owned, each on its own cache line */
  uint64_t frames_published; /* frames completed so far; newest = this - 1 */
  uint64_t heartbeat_ns;     /* CLOCK_MONOTONIC ns of the last publish/tick */
  uint8_t _pad1[MARLLB_CACHELINE - 16];
  uint8_t _reserved[MARLLB_CACHELINE];
} marllb_region_hdr_t;

/* Weights slot header: written by the control plane under a seqlock. */
typedef struct marllb_weights_slot
{
  uint64_t seq;         /* odd while being written; 0 = never written */
  uint64_t ts_ns;       /* CLOCK_REALTIME ns when published */
  uint64_t decision_no; /* monotonic decision counter of the writer */
  uint64_t frame_no;    /* frame the decision was made on */
  uint32_t policy_id;   /* writer-defined id of the policy that decided */
  uint32_t num_servers; /* weights that follow and are meaningful */
  uint8_t _pad[MARLLB_CACHELINE - 40];
  /* followed by double weights[server_capacity] */
} marllb_weights_slot_t;

/* One reservoir sample: the value in seconds and when it was observed. */
typedef struct marllb_sample
{
  double value;   /* seconds */
  uint64_t t_ns;  /* CLOCK_REALTIME ns (integer: f32 timestamps lose precision) */
} marllb_sample_t;

/* Fixed part of one server record inside a frame. */
typedef struct marllb_server_obs
{
  uint32_t active;          /* 1 if the server takes new flows, else 0 */
  uint32_t n_dur;           /* valid duration samples: min(dur_seen, k) */
  uint32_t n_fct;           /* valid completion-time samples: min(fct_seen, k) */
  uint32_t _pad0;
  uint64_t active_flows;    /* flows currently assigned to the server */
  uint64_t new_flows;       /* cumulative flows dispatched to the server */
  uint64_t completed_flows; /* cumulative flows finished on the server */
  uint64_t dur_seen;        /* duration values offered to the reservoir this window */
  uint64_t fct_seen;        /* completion-time values offered this window */
  uint64_t _pad1;
  /* followed by marllb_sample_t dur[k], fct[k] */
} marllb_server_obs_t;

/* Frame header; the frame's slot sequence word is its first field. */
typedef struct marllb_frame_hdr
{
  uint64_t seq;             /* odd while being written */
  uint64_t frame_no;        /* monotonic, == frames_published - 1 once complete */
  uint64_t ts_ns;           /* CLOCK_REALTIME ns at publish */
  uint64_t window_start_ns; /* start of the publication window the samples cover */
  uint32_t num_servers;     /* records in use */
  uint32_t flags;           /* MARLLB_FRAME_F_* */
  uint8_t _pad[MARLLB_CACHELINE - 40];
} marllb_frame_hdr_t;

_Static_assert (sizeof (marllb_region_hdr_t) == 256, "region header is 256 bytes");
_Static_assert (offsetof (marllb_region_hdr_t, frames_published) == 128,
                "frames_published starts the second cache-line pair");
_Static_assert (offsetof (marllb_region_hdr_t, heartbeat_ns) == 136, "heartbeat_ns");
_Static_assert (offsetof (marllb_region_hdr_t, epoch) == 48, "epoch offset");
_Static_assert (sizeof (marllb_weights_slot_t) == 64, "weights slot header is one line");
_Static_assert (sizeof (marllb_sample_t) == 16, "sample is 16 bytes");
_Static_assert (sizeof (marllb_server_obs_t) == 64, "server record head is one line");
_Static_assert (sizeof (marllb_frame_hdr_t) == 64, "frame header is one line");
_Static_assert (offsetof (marllb_frame_hdr_t, seq) == 0, "seq first");
_Static_assert (offsetof (marllb_weights_slot_t, seq) == 0, "seq first");

static inline uint64_t
marllb_round_up (uint64_t n, uint64_t a)
{
  return (n + a - 1) / a * a;
}

static inline uint64_t
marllb_server_stride (uint32_t k)
{
  return sizeof (marllb_server_obs_t) + 2u * (uint64_t) k * sizeof (marllb_sample_t);
}

static inline uint64_t
marllb_frame_size (uint32_t capacity, uint32_t k)
{
  return marllb_round_up (sizeof (marllb_frame_hdr_t)
                              + (uint64_t) capacity * marllb_server_stride (k),
                          MARLLB_CACHELINE);
}

static inline uint64_t
marllb_weights_size (uint32_t capacity)
{
  return marllb_round_up (sizeof (marllb_weights_slot_t) + (uint64_t) capacity * sizeof (double),
                          MARLLB_CACHELINE);
}

static inline uint64_t
marllb_weights_offset (void)
{
  return sizeof (marllb_region_hdr_t);
}

static inline uint64_t
marllb_ring_offset (uint32_t capacity)
{
  return marllb_weights_offset () + marllb_weights_size (capacity);
}

static inline uint64_t
marllb_region_size (uint32_t capacity, uint32_t ring_len, uint32_t k)
{
  return marllb_ring_offset (capacity) + (uint64_t) ring_len * marllb_frame_size (capacity, k);
}

/* Accessors over a mapped region. */
static inline marllb_frame_hdr_t *
marllb_frame (const marllb_region_hdr_t *h, uint64_t frame_no)
{
  return (marllb_frame_hdr_t *) ((uint8_t *) h + h->ring_offset
                                 + (frame_no & (h->ring_len - 1)) * (uint64_t) h->frame_size);
}

static inline marllb_server_obs_t *
marllb_server (const marllb_region_hdr_t *h, marllb_frame_hdr_t *f, uint32_t i)
{
  return (marllb_server_obs_t *) ((uint8_t *) f + sizeof (marllb_frame_hdr_t)
                                  + (uint64_t) i * h->server_stride);
}

static inline marllb_sample_t *
marllb_dur_samples (marllb_server_obs_t *s)
{
  return (marllb_sample_t *) (s + 1);
}

static inline marllb_sample_t *
marllb_fct_samples (const marllb_region_hdr_t *h, marllb_server_obs_t *s)
{
  return (marllb_sample_t *) (s + 1) + h->reservoir_k;
}

static inline marllb_weights_slot_t *
marllb_weights_slot (const marllb_region_hdr_t *h)
{
  return (marllb_weights_slot_t *) ((uint8_t *) h + h->weights_offset);
}

static inline double *
marllb_weights (marllb_weights_slot_t *w)
{
  return (double *) (w + 1);
}

#ifdef __cplusplus
}
#endif

#endif /* MARLLB_SHM_H */
