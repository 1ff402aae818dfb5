/*
 * cli.c - `show marllb` and `set marllb`.  Neither command is marked
 * mp-safe, so VPP runs them with the workers parked at the barrier, which
 * is what marllb_set needs to rebuild the per-thread banks.
 */
#include "marllb_vpp.h"

static clib_error_t *
marllb_show_fn (vlib_main_t *vm, unformat_input_t *input, vlib_cli_command_t *cmd)
{
  marllb_main_t *mm = &marllb_main;
  marllb_region_hdr_t *h = mm->region.hdr;
  if (!h)
    return clib_error_return (0, "no region: set marllb region <name> to create one");

  const marllb_weights_state_t *w = &mm->weights;
  u64 untracked = 0;
  for (u32 i = 0; i < vec_len (mm->counts); i++)
    untracked += mm->counts[i].untracked;
  vlib_cli_output (vm, "region %s (group %s: %s), servers %u, k %u, ring %u", mm->region.path,
                   MARLLB_VPP_REGION_GROUP, mm->region_group_ok ? "yes" : "no", mm->n_servers,
                   h->reservoir_k, h->ring_len);
  vlib_cli_output (vm, "period %u ms, flow timeout %lu s, threads %u", mm->period_ms,
                   mm->flow_timeout_ns / 1000000000ull, vec_len (mm->threads));
  if (mm->vip_index == ~0)
    vlib_cli_output (vm, "lb vip: none (set marllb vip <index>)");
  else
    vlib_cli_output (vm, "lb vip: %u", mm->vip_index);
  vlib_cli_output (vm, "frames published %lu, late snapshots %lu, untracked flows %lu",
                   __atomic_load_n (&h->frames_published, __ATOMIC_RELAXED), mm->late, untracked);
  vlib_cli_output (vm, "weights: decision %lu, policy %u; reads accepted %lu, torn %lu, invalid %lu",
                   w->decision_no, w->policy_id, w->accepted, w->torn, w->invalid);
  vlib_cli_output (vm, "%=7s%=7s%=40s%=4s%=12s%=10s", "server", "as", "address", "up", "weight",
                   "active");
  marllb_backend_t *be = mm->vip_index < vec_len (mm->backends) ? mm->backends[mm->vip_index] : 0;
  for (u32 s = 0; s < mm->n_servers; s++)
    {
      u64 active = 0;
      for (u32 i = 0; i < vec_len (mm->counts); i++)
        active += mm->counts[i].active[s];
      if (s < vec_len (be))
        vlib_cli_output (vm, "%=7u%=7u%=40U%=4u%=12.4f%=10lu", s, be[s].as_index,
                         format_ip46_address, &be[s].addr, IP46_TYPE_ANY, mm->view.up[s],
                         w->weights[s], active);
      else
        vlib_cli_output (vm, "%=7u%=7s%=40s%=4u%=12.4f%=10lu", s, "-", "-", 0, w->weights[s],
                         active);
    }
  return 0;
}

VLIB_CLI_COMMAND (marllb_show_command, static) = {
  .path = "show marllb",
  .short_help = "show marllb",
  .function = marllb_show_fn,
};

static clib_error_t *
marllb_set_fn (vlib_main_t *vm, unformat_input_t *input, vlib_cli_command_t *cmd)
{
  unformat_input_t _line, *line = &_line;
  marllb_set_args_t a = { 0 };
  u8 *region = 0;
  int zero = 0;
  clib_error_t *err = 0;

  if (!unformat_user (input, unformat_line_input, line))
    return clib_error_return (0, "want: %s", cmd->short_help);
  while (unformat_check_input (line) != UNFORMAT_END_OF_INPUT)
    {
      if (unformat (line, "region %s", &region))
        ;
      else if (unformat (line, "servers %u", &a.servers))
        zero |= !a.servers;
      else if (unformat (line, "period %u", &a.period_ms))
        zero |= !a.period_ms;
      else if (unformat (line, "timeout %u", &a.timeout_s))
        zero |= !a.timeout_s;
      else if (unformat (line, "vip none"))
        a.set_vip = 1, a.vip_index = ~0;
      else if (unformat (line, "vip %u", &a.vip_index))
        a.set_vip = 1;
      else
        {
          err = clib_error_return (0, "unknown input '%U': want %s", format_unformat_error,
                                   line, cmd->short_help);
          goto done;
        }
    }
  if (zero)
    {
      err = clib_error_return (0, "servers, period and timeout must be positive");
      goto done;
    }
  if (region)
    {
      vec_add1 (region, 0); /* unformat's %s gives a vector without the NUL */
      a.region = (char *) region;
    }
  err = marllb_set (&marllb_main, &a);

done:
  vec_free (region);
  unformat_free (line);
  return err;
}

VLIB_CLI_COMMAND (marllb_set_command, static) = {
  .path = "set marllb",
  .short_help = "set marllb [region <name>] [servers <n>] [period <ms>] [timeout <s>] "
                "[vip <lb-vip-index>|none]",
  .function = marllb_set_fn,
};
