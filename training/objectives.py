"""Pure-torch training objectives: group advantages, the GRPO/GSPO clipped surrogate, and SFT.

No model and no environment here: every function maps tensors to tensors, so each one is
tested against hand-computed values and, where TRL is installed, against TRL's own code
(``tests/training/test_objectives.py``).

Conventions shared by all functions:

* ``B`` completions (rows), ``T`` completion-token positions (right-padded), ``V`` vocabulary.
* ``logprobs[b, t]`` is log pi(token_t | prompt, tokens_<t) of completion ``b``'s ``t``-th token,
  as returned by :func:`token_logprobs`; ``mask[b, t]`` is 1/True on real completion tokens and
  0/False on padding. Values at padding positions are never read (they may be NaN or -inf).
* Losses are computed in float32 whatever the input dtype and are minimised.

Sources: GRPO, Shao et al. 2024 (DeepSeekMath, sec. 4.1) as trained in the paper's sec. 3.3
(token-level clipped surrogate, no KL, group-normalised advantages); GSPO, Zheng et al. 2025
("Group Sequence Policy Optimization", sec. 4, eq. 5-7); Dr. GRPO, Liu et al. 2025 (no std
scaling). The code mirrors ``trl.trainer.grpo_trainer.GRPOTrainer._compute_loss`` (TRL 1.16).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "degenerate_groups",
    "group_advantages",
    "policy_loss",
    "sft_loss",
    "sft_loss_from_logprobs",
    "tis_weights",
    "token_logprobs",
]

NORMALISATIONS = ("tokens", "sequence", "group_tokens")


def degenerate_groups(rewards: Tensor) -> Tensor:
    """Groups whose rewards are all exactly equal: ``(G, N)`` float -> ``(G,)`` bool.

    Such a group has zero advantage for every member, so it contributes no policy gradient
    (only a KL term, if any). The trainer counts them for the logs.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (groups, group_size), got shape {tuple(rewards.shape)}")
    return (rewards == rewards[:, :1]).all(dim=1)


def group_advantages(rewards: Tensor, eps: float = 1e-4, scale: bool = True) -> Tensor:
    """Group-relative advantages ``(G, N)`` -> ``(G, N)`` float32.

    ``A = (r - mean_group(r)) / (std_group(r) + eps)`` with the unbiased (Bessel-corrected) std,
    as TRL's GRPOTrainer (``scale_rewards="group"``: ``rewards.view(-1, N).std(dim=1)``, eps 1e-4)
    and GRPO (Shao et al. 2024, sec. 4.1.2). ``scale=False`` gives ``r - mean`` (Dr. GRPO,
    TRL ``scale_rewards="none"``). Degenerate groups (:func:`degenerate_groups`) get exactly zero,
    even where float rounding of the mean would leave a residue. A group of size 1 gets zero.
    """
    if rewards.dim() != 2:
        raise ValueError(f"rewards must be (groups, group_size), got shape {tuple(rewards.shape)}")
    r = rewards.float()
    adv = r - r.mean(dim=1, keepdim=True)
    if scale:
        std = r.std(dim=1, keepdim=True) if r.shape[1] > 1 else torch.zeros_like(r[:, :1])
        adv = adv / (std + eps)
    return torch.where(degenerate_groups(rewards).unsqueeze(1), torch.zeros_like(adv), adv)


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    level: Literal["token", "sequence"] = "token",
    clip_eps_low: float = 0.2,
    clip_eps_high: float = 0.2,
    normalise_by: Literal["tokens", "sequence", "group_tokens"] | None = None,
    normaliser: float | Tensor | None = None,
    group_ids: Tensor | None = None,
    kl_coef: float = 0.0,
    ref_logprobs: Tensor | None = None,
    is_weights: Tensor | None = None,
    sequence_ids: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Clipped surrogate loss of GRPO (``level="token"``) or GSPO (``level="sequence"``).

    Shapes: ``logprobs``, ``old_logprobs``, ``ref_logprobs``: ``(B, T)`` float (current policy
    with grad; sampling policy and reference, both detached here, so no gradient ever flows into
    them); ``advantages``: ``(B,)``; ``mask``: ``(B, T)`` bool or 0/1 float.

    * ``level="token"`` (GRPO): ratio ``w_bt = exp(logp_bt - old_bt)`` per token.
    * ``level="sequence"`` (GSPO, Zheng et al. 2025 eq. 7): one length-normalised ratio per
      completion, ``s_b = exp(sum_t mask*(logp - old) / max(|y_b|, 1))``, broadcast over its tokens
      with gradient (not detached), exactly TRL's ``importance_sampling_level="sequence"``.
      ``sequence_ids`` ``(B,)`` long makes rows with one id one sequence (a multi-turn
      trajectory's turns): ``s`` pools their masked log-ratios over their summed lengths.

    Per element: ``l = -min(w*A, clip(w, 1-clip_eps_low, 1+clip_eps_high)*A)`` plus, if ``kl_coef``,
    ``kl_coef * k3`` with ``k3 = exp(ref-logp) - (ref-logp) - 1`` per token (TRL's ``beta``).

    ``normalise_by`` (default: ``"tokens"`` for token level, ``"sequence"`` for sequence level):

    * ``"tokens"``: ``sum_bt mask*l / sum_bt mask``, one division by all completion tokens of the
      batch, every prompt's (TRL ``loss_type="bnpo"``; ``"dapo"`` for one accumulation window).
      For a batch split over micro-batches pass ``normaliser`` = the batch's total token count.
    * ``"sequence"``: mean over the ``B`` rows of each row's masked token mean (TRL
      ``loss_type="grpo"``, which TRL recommends for GSPO; an empty row counts as loss 0).
      ``normaliser`` replaces ``B``.
    * ``"group_tokens"``: the paper's eq. 1 exactly: each prompt's summed token terms divided by
      the tokens of its ``N`` completions, then the mean over prompts,
      ``(1/G) sum_g sum_{b in g, t} mask*l / sum_{b in g} |y_b|``. Rows of one prompt share a
      ``group_ids`` value ``(B,)`` long. For a batch split over micro-batches pass ``normaliser``
      instead: a ``(B,)`` tensor of each row's denominator ``G * sum_{b in g} |y_b|``, so the
      micro-batch losses sum to the batch's.

    ``is_weights`` ``(B, T)``: per-token importance weights multiplied into the surrogate (not the
    KL term), detached: the truncated importance sampling of :func:`tis_weights` (TRL multiplies
    ``per_token_loss`` by ``importance_sampling_ratio`` the same way).

    Returns ``(loss, stats)``: ``loss`` a 0-dim float32 tensor; ``stats`` floats: ``clip_fraction``
    (fraction of masked tokens, or of non-empty sequences at sequence level, where the clipped
    term is the active one, i.e. TRL's ``clip_ratio/region_mean``), ``ratio_mean``, ``ratio_max``
    (over the same elements) and ``kl`` (masked token mean of k3; 0.0 without a reference).
    Rows with an all-zero mask give no NaN, no loss and no gradient.
    """
    if logprobs.dim() != 2 or old_logprobs.shape != logprobs.shape or mask.shape != logprobs.shape:
        raise ValueError(
            f"logprobs, old_logprobs and mask must share one (B, T) shape, got {tuple(logprobs.shape)}, "
            f"{tuple(old_logprobs.shape)}, {tuple(mask.shape)}"
        )
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(
            f"advantages must be (B,) = {tuple(logprobs.shape[:1])}, got {tuple(advantages.shape)}"
        )
    if level not in ("token", "sequence"):
        raise ValueError(f"level must be 'token' or 'sequence', got {level!r}")
    normalise_by = normalise_by or ("tokens" if level == "token" else "sequence")
    if normalise_by not in NORMALISATIONS:
        raise ValueError(f"normalise_by must be one of {list(NORMALISATIONS)}, got {normalise_by!r}")
    if normalise_by == "group_tokens" and normaliser is None and group_ids is None:
        raise ValueError("normalise_by='group_tokens' needs group_ids (B,) or a per-row normaliser (B,)")
    if kl_coef != 0.0 and ref_logprobs is None:
        raise ValueError(f"kl_coef={kl_coef} needs ref_logprobs")

    m = mask.bool()
    mf = m.float()
    logp = logprobs.float()
    zero = torch.zeros_like(logp)
    # torch.where, not a product: padding may hold NaN/-inf and must not poison the sums or grads.
    log_ratio = torch.where(m, logp - old_logprobs.detach().float(), zero)
    lengths = mf.sum(-1)  # (B,)
    if level == "token":
        log_w = log_ratio  # (B, T)
    elif sequence_ids is None:
        log_w = (log_ratio.sum(-1) / lengths.clamp(min=1.0)).unsqueeze(-1)  # (B, 1)
    else:
        _, seq = torch.unique(sequence_ids, return_inverse=True)
        k = int(seq.max()) + 1
        pooled = torch.zeros(k, dtype=log_ratio.dtype).index_add(0, seq, log_ratio.sum(-1))
        seq_len = torch.zeros(k, dtype=lengths.dtype).index_add(0, seq, lengths)
        log_w = (pooled / seq_len.clamp(min=1.0))[seq].unsqueeze(-1)  # (B, 1): each row its sequence's
    ratio = torch.exp(log_w)
    adv = advantages.detach().float().unsqueeze(-1)  # (B, 1)
    clipped = torch.clamp(ratio, 1.0 - clip_eps_low, 1.0 + clip_eps_high)
    per_token = -torch.min(ratio * adv, clipped * adv)  # (B, T) or (B, 1)
    if is_weights is not None:
        per_token = per_token * torch.where(m, is_weights.detach().float(), zero)

    kl_tok = None
    if ref_logprobs is not None:
        d = torch.where(m, ref_logprobs.detach().float() - logp, zero)
        kl_tok = torch.exp(d) - d - 1.0  # k3 estimator (Schulman 2020), >= 0, zero on padding
        if kl_coef != 0.0:
            per_token = per_token + kl_coef * kl_tok
    per_token = torch.where(m, per_token.expand_as(logp), zero)  # (B, T)

    if normalise_by == "tokens":
        denom = lengths.sum().clamp(min=1.0) if normaliser is None else normaliser
        loss = per_token.sum() / denom
    elif normalise_by == "group_tokens":
        if normaliser is None:
            _, inverse = torch.unique(group_ids, return_inverse=True)
            group_tokens = torch.zeros(int(inverse.max()) + 1).index_add_(0, inverse, lengths)
            denom = group_tokens[inverse] * group_tokens.numel()
        else:
            denom = torch.as_tensor(normaliser, dtype=torch.float32)
        loss = (per_token.sum(-1) / denom.clamp(min=1.0)).sum()
    else:
        per_seq = per_token.sum(-1) / lengths.clamp(min=1.0)
        loss = per_seq.sum() / (per_seq.shape[0] if normaliser is None else normaliser)

    with torch.no_grad():
        # The clipped term is active iff it is strictly the smaller one (TRL's "region" clipping).
        active = ((ratio < 1.0 - clip_eps_low) & (adv < 0)) | ((ratio > 1.0 + clip_eps_high) & (adv > 0))
        sel = m if level == "token" else (lengths > 0).unsqueeze(-1)  # elements that count
        n = sel.sum().clamp(min=1).float()
        stats = {
            "clip_fraction": float((active & sel).sum() / n),
            "ratio_mean": float(torch.where(sel, ratio, 0.0).sum() / n) if sel.any() else 1.0,
            "ratio_max": float(torch.where(sel, ratio, -torch.inf).max()) if sel.any() else 1.0,
            "kl": float((kl_tok * mf).sum() / lengths.sum().clamp(min=1.0)) if kl_tok is not None else 0.0,
        }
    return loss, stats


def tis_weights(learner_logprobs: Tensor, engine_logprobs: Tensor, mask: Tensor, cap: float) -> Tensor:
    """Truncated importance-sampling weights of the learner/engine mismatch: ``(B, T)`` -> ``(B, T)``.

    ``w_bt = min(pi_learner_old(y_bt) / pi_engine(y_bt), cap)`` = ``min(exp(learner - engine), cap)``
    on masked tokens, 1 on padding. ``learner_logprobs`` are the training model's log-probs of
    the sampled tokens before the update, ``engine_logprobs`` the generation backend's (the
    distribution the tokens were actually drawn from). Source: Yao et al. 2025, "Your efficient
    RL framework secretly brings you off-policy RL training" (TIS, as in verl), and TRL's
    ``vllm_importance_sampling_correction`` with ``vllm_importance_sampling_mode="token_truncate"``.

    Raises:
        ValueError: ``cap <= 0`` or mismatched shapes.
    """
    if not cap > 0:
        raise ValueError(f"the TIS cap must be > 0, got {cap}")
    if learner_logprobs.shape != engine_logprobs.shape or mask.shape != learner_logprobs.shape:
        raise ValueError(f"learner_logprobs, engine_logprobs and mask must share one (B, T) shape, got "
                         f"{tuple(learner_logprobs.shape)}, {tuple(engine_logprobs.shape)}, {tuple(mask.shape)}")
    m = mask.bool()
    diff = torch.where(m, learner_logprobs.detach().float() - engine_logprobs.detach().float(), 0.0)
    return torch.where(m, torch.exp(diff).clamp(max=cap), 1.0)


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """``log_softmax(logits)`` gathered at ``tokens``: ``(B, T, V)``, ``(B, T)`` long -> ``(B, T)`` float32.

    Aligned: ``logits[:, t]`` scores ``tokens[:, t]`` (TRL's ``selective_log_softmax``). For a causal
    LM forward over prompt+completion, pass ``logits[:, -T-1:-1]`` with the ``T`` completion ids.
    Indices outside ``[0, V)`` (e.g. -100) give 0.0 and must be masked by the caller.
    """
    logits = logits.float()
    valid = (tokens >= 0) & (tokens < logits.shape[-1])
    idx = torch.where(valid, tokens, torch.zeros_like(tokens)).long()
    picked = torch.gather(logits, -1, idx.unsqueeze(-1)).squeeze(-1)
    return torch.where(valid, picked - torch.logsumexp(logits, dim=-1), torch.zeros_like(picked))


def sft_loss_from_logprobs(logprobs: Tensor, mask: Tensor) -> Tensor:
    """Mean negative log-likelihood over completion tokens: ``-sum(logp*mask) / sum(mask)``.

    ``logprobs`` ``(B, T)`` float from a teacher-forced forward (:func:`token_logprobs`),
    ``mask`` ``(B, T)`` bool/float. Token-level mean over the batch, as HF's causal-LM loss
    (``transformers.loss.loss_utils.ForCausalLMLoss``); an empty mask gives 0, not NaN.
    This is the form the trainer uses.
    """
    m = mask.bool()
    nll = torch.where(m, -logprobs.float(), torch.zeros_like(logprobs, dtype=torch.float32))
    return nll.sum() / m.sum().clamp(min=1)


def sft_loss(logits: Tensor, labels: Tensor, *, shift: bool = True, ignore_index: int = -100) -> Tensor:
    """Cross-entropy on completion tokens: ``(B, T, V)`` logits, ``(B, T)`` long labels -> scalar.

    ``shift=True`` is the HF causal-LM convention: ``labels`` are the input ids with every
    non-completion position set to ``ignore_index``, and ``logits[:, t]`` predicts
    ``labels[:, t+1]`` (equal to ``ForCausalLMLoss``). ``shift=False``: already aligned,
    ``logits[:, t]`` predicts ``labels[:, t]``. Same value as :func:`sft_loss_from_logprobs`.
    """
    if shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    mask = labels != ignore_index
    return sft_loss_from_logprobs(token_logprobs(logits, labels), mask)
