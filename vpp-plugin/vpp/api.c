/*
 * api.c - handlers of the marllb_set and marllb_show messages (marllb.api).
 * Handlers not marked mp-safe run with the workers at the barrier, as
 * marllb_set needs.
 */
#include <vlibapi/api.h>
#include <vlibmemory/api.h>

#include "marllb_vpp.h"

/* Generated from marllb.api by vppapigen into the build directory. */
#include "marllb.api_enum.h"
#include "marllb.api_types.h"

#define REPLY_MSG_ID_BASE mm->msg_id_base
#include <vlibapi/api_helper_macros.h>

static void
vl_api_marllb_set_t_handler (vl_api_marllb_set_t *mp)
{
  marllb_main_t *mm = &marllb_main;
  vl_api_marllb_set_reply_t *rmp;
  char region[sizeof (mp->region) + 1];
  clib_memcpy (region, mp->region, sizeof (mp->region));
  region[sizeof (mp->region)] = 0; /* the sender need not NUL-terminate */
  marllb_set_args_t a = {
    .region = region[0] ? region : 0,
    .servers = mp->servers,
    .period_ms = mp->period_ms,
    .timeout_s = mp->flow_timeout_s,
    .set_vip = mp->set_vip,
    .vip_index = mp->vip_index,
  };
  int rv = 0;
  clib_error_t *err = marllb_set (mm, &a);
  if (err)
    {
      vlib_log_err (mm->log_class, "marllb_set: %U", format_clib_error, err);
      clib_error_free (err);
      rv = VNET_API_ERROR_INVALID_VALUE;
    }
  REPLY_MACRO_END (VL_API_MARLLB_SET_REPLY);
}

static void
vl_api_marllb_show_t_handler (vl_api_marllb_show_t *mp)
{
  marllb_main_t *mm = &marllb_main;
  vl_api_marllb_show_reply_t *rmp;
  marllb_region_hdr_t *h = mm->region.hdr;
  u32 n = h ? mm->weights.n : 0;
  int rv = h ? 0 : VNET_API_ERROR_NO_SUCH_ENTRY;

  /* _END: fill in host order, the macro converts to network order. */
  REPLY_MACRO3_ZERO_END (VL_API_MARLLB_SHOW_REPLY, n * sizeof (f64), ({
    if (h)
      {
        strncpy ((char *) rmp->region, (char *) mm->region_name, sizeof (rmp->region) - 1);
        rmp->servers = mm->n_servers;
        rmp->period_ms = mm->period_ms;
        rmp->flow_timeout_s = mm->flow_timeout_ns / 1000000000ull;
        rmp->vip_index = mm->vip_index;
        rmp->frames_published = __atomic_load_n (&h->frames_published, __ATOMIC_RELAXED);
        rmp->late_snapshots = mm->late;
        for (u32 i = 0; i < vec_len (mm->counts); i++)
          rmp->untracked_flows += mm->counts[i].untracked;
        rmp->decision_no = mm->weights.decision_no;
        rmp->policy_id = mm->weights.policy_id;
        rmp->weights_accepted = mm->weights.accepted;
        rmp->weights_torn = mm->weights.torn;
        rmp->weights_invalid = mm->weights.invalid;
      }
    rmp->n_weights = n;
    clib_memcpy (rmp->weights, mm->weights.weights, n * sizeof (f64));
  }));
}

/* Defines setup_message_id_table () and registers the handlers above. */
#include "marllb.api.c"

static clib_error_t *
marllb_api_init (vlib_main_t *vm)
{
  /* A block of message ids for this plugin, registered by name and CRC. */
  marllb_main.msg_id_base = setup_message_id_table ();
  return 0;
}

VLIB_INIT_FUNCTION (marllb_api_init);
