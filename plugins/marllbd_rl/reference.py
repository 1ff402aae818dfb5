"""The SAC-GRU and QMIX updates as they were before the cheaper learner (issue 15).

Kept as the oracle the tests compare the current updates against (same losses,
gradients and parameters to float tolerance) and as the same-run baseline of
the `learner_update` benchmark.  Each wraps a current `Learner`'s networks with
its own for-each Adam optimisers (the old default), so give it a fresh learner
or a deep copy.
"""

from __future__ import annotations

import torch
from torch import nn

from marllbd_rl import qmix, sac_gru
from marllbd_rl.replay import EpisodeBatch, SequenceBatch


class SacReference:
    """The pre-change SAC-GRU update: a GRU per critic (critic_trunk 'own'), full backward
    of the actor loss, per-parameter Polyak averaging, for-each Adam."""

    def __init__(self, learner: sac_gru.Learner) -> None:
        if learner.cfg.critic_trunk != "own":
            raise ValueError("SacReference: the pre-change update needs critic_trunk 'own'")
        self.learner = learner
        cfg = learner.cfg
        critics = [*learner.critic1.parameters(), *learner.critic2.parameters()]
        self.actor_opt = torch.optim.Adam(learner.actor.parameters(), lr=cfg.actor_lr)
        self.critic_opt = torch.optim.Adam(critics, lr=cfg.critic_lr)
        self.alpha_opt = torch.optim.Adam([learner.log_alpha], lr=cfg.alpha_lr)

    def update(self, batch: SequenceBatch) -> dict[str, float]:
        ln, cfg = self.learner, self.learner.cfg
        x = ln.norm(batch.obs)
        mask = batch.mask
        denom = mask.sum()
        alpha = ln.log_alpha.exp().detach()
        raw, _ = ln.actor(x, ln.initial_state(x.shape[0]))
        reward = cfg.reward_scale * ln.reward_norm(batch.reward.unsqueeze(-1)).squeeze(-1)
        not_done = 1.0 - batch.terminated
        with torch.no_grad():
            nxt = raw.detach()[:, 1:]
            t1, t2 = ln.target1.features(x)[:, 1:], ln.target2.features(x)[:, 1:]
            if ln.actor.num_levels:
                logp_n = ln.actor.log_probs(nxt)
                qt = torch.min(ln.target1.q(t1), ln.target2.q(t2))
                v_next = (logp_n.exp() * (qt - alpha * logp_n)).sum(-1).mean(-1)
            else:
                a_n, lp_n = ln.actor.sample(nxt)
                v_next = torch.min(ln.target1.q(t1, a_n), ln.target2.q(t2, a_n)) - alpha * lp_n
            y = reward + cfg.gamma * not_done * v_next
        h1, h2 = ln.critic1.features(x)[:, :-1], ln.critic2.features(x)[:, :-1]
        if ln.actor.num_levels:
            idx = batch.action.unsqueeze(-1)
            q1 = ln.critic1.q(h1).gather(-1, idx).squeeze(-1).mean(-1)
            q2 = ln.critic2.q(h2).gather(-1, idx).squeeze(-1).mean(-1)
        else:
            q1, q2 = ln.critic1.q(h1, batch.action), ln.critic2.q(h2, batch.action)
        critic_loss = ((((q1 - y) ** 2 + (q2 - y) ** 2) * mask).sum()) / denom
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        nn.utils.clip_grad_norm_(
            [*ln.critic1.parameters(), *ln.critic2.parameters()], cfg.max_grad_norm
        )
        self.critic_opt.step()
        g1, g2 = h1.detach(), h2.detach()
        cur = raw[:, :-1]
        if ln.actor.num_levels:
            logp = ln.actor.log_probs(cur)
            probs = logp.exp()
            with torch.no_grad():
                qmin = torch.min(ln.critic1.q(g1), ln.critic2.q(g2))
            per_step = (probs * (alpha * logp - qmin)).sum(-1).mean(-1)
            mean_logp = (probs * logp).sum(-1).mean(-1)
        else:
            a_pi, mean_logp = ln.actor.sample(cur)
            qmin = torch.min(ln.critic1.q(g1, a_pi), ln.critic2.q(g2, a_pi))
            per_step = alpha * mean_logp - qmin
        per_step = per_step + cfg.prior() * ln.actor.distance_from_neutral(cur)
        actor_loss = (per_step * mask).sum() / denom
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        nn.utils.clip_grad_norm_(ln.actor.parameters(), cfg.max_grad_norm)
        self.actor_opt.step()
        self.critic_opt.zero_grad(set_to_none=True)
        err = (mean_logp.detach() + cfg.entropy_target()) * mask
        alpha_loss = -(ln.log_alpha * err).sum() / denom
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        with torch.no_grad():
            for online, target in ((ln.critic1, ln.target1), (ln.critic2, ln.target2)):
                for p, tp in zip(online.parameters(), target.parameters(), strict=True):
                    tp.lerp_(p, cfg.polyak)
        ln.updates += 1
        return {
            "critic_loss": float(critic_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "alpha": float(alpha),
            "entropy": -float((mean_logp.detach() * mask).sum() / denom),
        }


def unroll_stepped(net: qmix.AgentNetwork, obs: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """The pre-change agent unroll: obs (B, T, A, rows, F) through the GRU cell stepped in
    Python from a zero state → q (B, T, A, rows, L)."""
    b, t, a = obs.shape[:3]
    flat = obs.transpose(1, 2).reshape(b * a, t, *obs.shape[3:])
    n = flat.shape[0]
    x = net.norm(flat).flatten(2)
    agent_id = ids.repeat(b, 1)
    x = torch.relu(net.fc(torch.cat([x, agent_id.unsqueeze(1).expand(n, t, -1)], dim=2)))
    h = torch.zeros(n, net.hidden)
    out = []
    for step in range(t):
        h = net.gru(x[:, step], h)
        out.append(h)
    q = net.head(torch.stack(out, dim=1)).view(n, t, net.rows, net.n_levels)
    return q.view(b, a, t, *q.shape[2:]).transpose(1, 2)


class QmixReference:
    """The pre-change QMIX update: the stepped GRU cell, per-parameter target averaging."""

    def __init__(self, learner: qmix.Learner) -> None:
        self.learner = learner

    def loss(self, batch: EpisodeBatch) -> torch.Tensor:
        ln = self.learner
        assert isinstance(ln.agent, qmix.AgentNetwork) and isinstance(
            ln.target_agent, qmix.AgentNetwork
        ), "the reference is of the flat agent network"
        obs, state = torch.from_numpy(batch.obs), torch.from_numpy(batch.state)
        mask = torch.from_numpy(batch.mask)
        q = unroll_stepped(ln.agent, obs, ln.ids)
        chosen = qmix.agent_utility(q[:, :-1], torch.from_numpy(batch.actions), ln.head_mask)
        q_tot = ln.mixer(chosen, state[:, :-1])
        with torch.no_grad():
            best = q[:, 1:].argmax(-1)
            q_next = qmix.agent_utility(
                unroll_stepped(ln.target_agent, obs, ln.ids)[:, 1:], best, ln.head_mask
            )
            bootstrap = 1.0 - torch.from_numpy(batch.terminated)
            target = torch.from_numpy(batch.reward) + ln.config.gamma * bootstrap * (
                ln.target_mixer(q_next, state[:, 1:])
            )
        td = (q_tot - target) * mask
        return (td**2).sum() / mask.sum().clamp_min(1.0)

    def update(self, batch: EpisodeBatch) -> float:
        ln = self.learner
        loss = self.loss(batch)
        ln.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(ln.params, ln.config.grad_clip)
        ln.optimizer.step()
        ln.updates += 1
        if ln.updates % ln.config.target_every == 0:
            with torch.no_grad():
                pairs = ((ln.agent, ln.target_agent), (ln.mixer, ln.target_mixer))
                for online, target in pairs:
                    for p, tp in zip(online.parameters(), target.parameters(), strict=True):
                        tp.lerp_(p, ln.config.target_tau)
                    for b, tb in zip(online.buffers(), target.buffers(), strict=True):
                        tb.copy_(b)
        return float(loss.detach())
