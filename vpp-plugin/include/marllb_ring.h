/*
 * marllb_ring.h - region lifecycle, frame publication (producer side) and the
 * weights slot (read by the data plane, written by the control plane).
 */
#ifndef MARLLB_RING_H
#define MARLLB_RING_H

#include <stdint.h>
#include <sys/types.h>

#include "marllb_shm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct marllb_region
{
  marllb_region_hdr_t *hdr;
  uint64_t size;
  int owner; /* 1 if this process created the region */
  char path[256];
} marllb_region_t;

/* Create /dev/shm/marllb-<name> (unlinking a previous one), initialise the
 * header and publish the magic last.  mode is 0600 or 0660.  Returns 0 or
 * a negative errno. */
int marllb_region_create (marllb_region_t *r, const char *name, uint32_t capacity,
                          uint32_t num_servers, uint32_t ring_len, uint32_t k, mode_t mode,
                          double max_weight_ratio, uint64_t publish_period_ns);
/* Map an existing region and validate its header.  Returns 0 or negative. */
int marllb_region_attach (marllb_region_t *r, const char *name);
/* Unmap; the owner also unlinks when unlink_it is non-zero. */
void marllb_region_close (marllb_region_t *r, int unlink_it);

/* Producer: start writing frame number frames_published (its slot's seq
 * becomes odd), fill it, then commit (seq even, frames_published + 1). */
marllb_frame_hdr_t *marllb_frame_begin (marllb_region_hdr_t *h);
void marllb_frame_commit (marllb_region_hdr_t *h, marllb_frame_hdr_t *f);
void marllb_heartbeat (marllb_region_hdr_t *h);

/* Reader (for non-x86 readers and the C baseline of the shm_read bench):
 * copy the newest complete frame into buf (frame_size bytes).  Returns 0 on
 * success, 1 when no frame is published yet, 2 when the copy was torn. */
int marllb_frame_read_newest (const marllb_region_hdr_t *h, void *buf, uint64_t *frame_no);

/* Control plane: publish weights under the slot's seqlock. */
void marllb_weights_write (marllb_region_hdr_t *h, const double *w, uint32_t n,
                           uint32_t policy_id, uint64_t frame_no, uint64_t ts_ns);

typedef enum marllb_weights_status
{
  MARLLB_WEIGHTS_NEW = 0,       /* new valid weights copied into the state */
  MARLLB_WEIGHTS_UNCHANGED = 1, /* nothing new since the last read */
  MARLLB_WEIGHTS_TORN = 2,      /* writer was mid-update; keep last good */
  MARLLB_WEIGHTS_INVALID = 3,   /* non-finite, <= 0, wrong count or ratio; keep last good */
  MARLLB_WEIGHTS_EMPTY = 4,     /* never written */
} marllb_weights_status_t;

/* Data plane's view of the slot: the last good weights and bookkeeping. */
typedef struct marllb_weights_state
{
  uint64_t last_seq;    /* seq of the last slot content examined */
  uint64_t decision_no; /* of the last good weights */
  uint32_t policy_id;
  uint32_t n;
  uint64_t accepted, torn, invalid;
  double weights[MARLLB_MAX_SERVERS];
} marllb_weights_state_t;

/* Initialise the state with n weights all equal to 1. */
void marllb_weights_state_init (marllb_weights_state_t *st, uint32_t n);
marllb_weights_status_t marllb_weights_read (const marllb_region_hdr_t *h,
                                             marllb_weights_state_t *st);

#ifdef __cplusplus
}
#endif

#endif /* MARLLB_RING_H */
