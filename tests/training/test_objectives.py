"""Table-driven tests of training/objectives.py: hand-computed values, gradients, NaN safety,
the paper's eq. 1 (``group_tokens``), truncated importance sampling, and parity with TRL's
``GRPOTrainer._compute_loss`` (TRL pinned in setup.cfg's ``trl``/``dev`` extras: the loss is a
private method, so the parity holds for that version) called on a stub."""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from training.objectives import (
    degenerate_groups,
    group_advantages,
    policy_loss,
    sft_loss,
    sft_loss_from_logprobs,
    tis_weights,
    token_logprobs,
)

TRL_VERSION = "1.16.0"  # the version setup.cfg pins; the parity tests reproduce its loss

S3 = math.sqrt(1.35)  # GSPO ratio of row 0 below: exp(mean(ln 1.5, ln 0.9)) = sqrt(1.5 * 0.9) = 1.161895


# --------------------------------------------------------------------------- advantages
@pytest.mark.parametrize(
    "rewards, eps, scale, expected",
    [
        # mean 4, unbiased std sqrt((4 + 0 + 4) / 2) = 2  ->  (-2, 0, 2) / 2
        ([[2.0, 4.0, 6.0]], 0.0, True, [[-1.0, 0.0, 1.0]]),
        # Dr. GRPO: no std scaling, r - mean
        ([[2.0, 4.0, 6.0]], 1e-4, False, [[-2.0, 0.0, 2.0]]),
        # mean 0.5, std sqrt(4 * 0.25 / 3) = sqrt(1/3) = 0.577350; 0.5 / (0.577350 + 1e-4) = 0.865875
        ([[1.0, 0.0, 0.0, 1.0]], 1e-4, True, [[0.865875, -0.865875, -0.865875, 0.865875]]),
        # two groups normalised independently; the second is degenerate -> exactly 0
        ([[0.0, 1.0], [3.0, 3.0]], 0.0, True, [[-1 / math.sqrt(2), 1 / math.sqrt(2)], [0.0, 0.0]]),
        # group of one: no spread, zero advantage (not NaN)
        ([[5.0]], 1e-4, True, [[0.0]]),
    ],
)
def test_group_advantages_table(rewards, eps, scale, expected):
    adv = group_advantages(torch.tensor(rewards), eps=eps, scale=scale)
    assert adv.dtype == torch.float32 and adv.shape == torch.tensor(rewards).shape
    torch.testing.assert_close(adv, torch.tensor(expected), atol=1e-6, rtol=1e-5)


def test_degenerate_groups_exact_zero():
    # 16 copies of 0.1: float32 mean may differ from 0.1 by an ulp; the advantage must still be 0 exactly.
    rewards = torch.tensor([[0.1] * 16, [0.0] * 15 + [1.0], [-2.0] * 16])
    assert degenerate_groups(rewards).tolist() == [True, False, True]
    adv = group_advantages(rewards)
    assert torch.equal(adv[0], torch.zeros(16)) and torch.equal(adv[2], torch.zeros(16))
    assert adv[1].abs().sum() > 0
    # exact equality, no tolerance
    assert degenerate_groups(torch.tensor([[1.0, 1.0 + 1e-6]])).tolist() == [False]
    with pytest.raises(ValueError, match="groups, group_size"):
        group_advantages(torch.zeros(4))


def test_degenerate_group_gives_zero_gradient():
    adv = group_advantages(torch.tensor([[1.0] * 4])).view(-1)
    logp = (torch.randn(4, 3) - 1).requires_grad_()
    old = logp.detach() + 0.3 * torch.randn(4, 3)
    for level in ("token", "sequence"):
        loss, _ = policy_loss(logp, old, adv, torch.ones(4, 3), level=level)
        (grad,) = torch.autograd.grad(loss, logp)
        assert loss.item() == 0.0 and torch.equal(grad, torch.zeros_like(grad))


# --------------------------------------------------------------------------- policy loss, by hand
# Two completions, two positions. Ratios exp(logp - old) = [[1.5, 0.9], [0.5, 5.0]], mask
# [[1, 1], [1, 0]] (row 1's second position is padding), advantages [+1, -1], eps 0.2.
# Token level (GRPO), l = -min(w A, clip(w, 0.8, 1.2) A):
#   (0,0): w 1.5, A +1: min(1.5, 1.2) = 1.2 -> -1.2, clipped term active
#   (0,1): w 0.9, A +1: min(0.9, 0.9)       -> -0.9
#   (1,0): w 0.5, A -1: min(-0.5, -0.8) = -0.8 -> +0.8, clipped term active
#   tokens:   (-1.2 - 0.9 + 0.8) / 3 = -0.433333;  sequence: ((-1.2 - 0.9) / 2 + 0.8) / 2 = -0.125
#   clip 2/3; ratio mean (1.5 + 0.9 + 0.5) / 3 = 0.966667; max 1.5 (the padding's 5.0 is ignored)
# Sequence level (GSPO): s0 = sqrt(1.5 * 0.9) = 1.161895 (A +1: in range -> -1.161895),
#   s1 = 0.5 (A -1: clipped -> +0.8). sequence: (-1.161895 + 0.8) / 2 = -0.180948;
#   tokens: (2 * -1.161895 + 0.8) / 3 = -0.507930; clip 1/2; ratio mean 0.830948, max 1.161895
# Gradients d loss / d logp:
#   token/tokens: clipped tokens 0; (0,1): -w A / 3 = -0.3; padding 0
#   sequence/sequence: row 0: -A * s0 * (1/2) / 2 = -s0 / 4 = -0.290474 per token; row 1 clipped: 0
OLD = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]])
RATIOS = torch.tensor([[1.5, 0.9], [0.5, 5.0]])
MASK = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
ADV = torch.tensor([1.0, -1.0])


# fmt: off
@pytest.mark.parametrize(
    "kwargs, loss, clip, rmean, rmax, grad",
    [
        (dict(level="token", normalise_by="tokens"), -1.3 / 3, 2 / 3, 2.9 / 3, 1.5, [[0.0, -0.3], [0.0, 0.0]]),
        (dict(level="token"), -1.3 / 3, 2 / 3, 2.9 / 3, 1.5, [[0.0, -0.3], [0.0, 0.0]]),  # default: tokens
        (dict(level="token", normalise_by="sequence"), -0.125, 2 / 3, 2.9 / 3, 1.5, [[0.0, -0.225], [0.0, 0.0]]),
        # asymmetric clip (DAPO "clip-higher"): 1.5 < 1.6 is in range -> (-1.5 - 0.9 + 0.8) / 3
        (dict(level="token", clip_eps_high=0.6), -1.6 / 3, 1 / 3, 2.9 / 3, 1.5, [[-0.5, -0.3], [0.0, 0.0]]),
        # explicit normaliser (a group split over micro-batches with 6 tokens in all): -1.3 / 6
        (dict(level="token", normaliser=6.0), -1.3 / 6, 2 / 3, 2.9 / 3, 1.5, [[0.0, -0.15], [0.0, 0.0]]),
        (dict(level="sequence", normalise_by="sequence"), (0.8 - S3) / 2, 0.5, (S3 + 0.5) / 2, S3,
         [[-S3 / 4, -S3 / 4], [0.0, 0.0]]),
        (dict(level="sequence"), (0.8 - S3) / 2, 0.5, (S3 + 0.5) / 2, S3, [[-S3 / 4, -S3 / 4], [0.0, 0.0]]),
        # tokens: row 0's loss counts twice, d/dlogp = -2 * s0 * (1/2) / 3 = -s0 / 3
        (dict(level="sequence", normalise_by="tokens"), (0.8 - 2 * S3) / 3, 0.5, (S3 + 0.5) / 2, S3,
         [[-S3 / 3, -S3 / 3], [0.0, 0.0]]),
    ],
)
# fmt: on
def test_policy_loss_table(kwargs, loss, clip, rmean, rmax, grad):
    logp = (OLD + RATIOS.log()).requires_grad_()
    old = OLD.clone().requires_grad_()  # must receive no gradient
    out, stats = policy_loss(logp, old, ADV, MASK, **kwargs)
    assert out.dim() == 0 and out.dtype == torch.float32
    assert out.item() == pytest.approx(loss, abs=1e-6)
    assert stats["clip_fraction"] == pytest.approx(clip)
    assert stats["ratio_mean"] == pytest.approx(rmean, abs=1e-6)
    assert stats["ratio_max"] == pytest.approx(rmax, abs=1e-6)
    assert stats["kl"] == 0.0
    out.backward()
    torch.testing.assert_close(logp.grad, torch.tensor(grad), atol=1e-6, rtol=1e-5)
    assert old.grad is None


def test_kl_term_by_hand():
    # One token, logp = old = 0 (ratio 1), A = 0, ref = ln 2: k3 = 2 - ln 2 - 1 = 0.306853;
    # loss = 0.5 * 0.306853 = 0.153426; d/dlogp = 0.5 * (1 - exp(ref - logp)) = 0.5 * (1 - 2) = -0.5
    logp = torch.zeros(1, 2, requires_grad=True)
    ref = torch.tensor([[math.log(2.0), float("nan")]]).requires_grad_()  # padding may be NaN
    mask = torch.tensor([[1.0, 0.0]])
    for level in ("token", "sequence"):
        loss, stats = policy_loss(logp, logp.detach(), torch.zeros(1), mask, level=level, kl_coef=0.5, ref_logprobs=ref)
        assert loss.item() == pytest.approx(0.153426, abs=1e-6)
        assert stats["kl"] == pytest.approx(0.306853, abs=1e-6)
        (g,) = torch.autograd.grad(loss, logp)
        torch.testing.assert_close(g, torch.tensor([[-0.5, 0.0]]))
    # a reference without kl_coef is only measured
    loss, stats = policy_loss(logp, logp.detach(), torch.zeros(1), mask, ref_logprobs=ref)
    assert loss.item() == 0.0 and stats["kl"] == pytest.approx(0.306853, abs=1e-6)
    assert ref.grad is None


@pytest.mark.parametrize("level", ["token", "sequence"])
@pytest.mark.parametrize("normalise_by", ["tokens", "sequence"])
def test_nan_safety(level, normalise_by):
    nan, inf = float("nan"), float("inf")
    logp = torch.tensor([[-1.0, nan, -inf], [nan, -inf, nan], [-0.2, -0.3, -0.4]]).requires_grad_()
    old = torch.tensor([[-1.1, -inf, nan], [-inf, nan, 0.0], [-0.2, -0.5, -0.1]])
    ref = torch.tensor([[-1.0, nan, nan], [nan, nan, nan], [-0.3, -0.3, -0.3]])
    mask = torch.tensor([[1, 0, 0], [0, 0, 0], [1, 1, 1]])  # row 1 is empty
    kw = dict(level=level, normalise_by=normalise_by, kl_coef=0.1, ref_logprobs=ref)
    loss, stats = policy_loss(logp, old, torch.tensor([1.0, 1.0, -1.0]), mask, **kw)
    loss.backward()
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in stats.values())
    assert torch.isfinite(logp.grad).all() and (logp.grad[mask == 0] == 0).all()
    # an all-empty batch: zero loss, zero gradient, neutral stats
    logp.grad = None
    loss, stats = policy_loss(logp, old, torch.ones(3), torch.zeros(3, 3), **kw)
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(logp.grad, torch.zeros(3, 3))
    assert stats == {"clip_fraction": 0.0, "ratio_mean": 1.0, "ratio_max": 1.0, "kl": 0.0}


def test_policy_loss_dtype_and_validation():
    logp = torch.full((2, 3), -1.0, dtype=torch.bfloat16, requires_grad=True)
    loss, _ = policy_loss(logp, logp.detach(), torch.tensor([1.0, -1.0]), torch.ones(2, 3))
    assert loss.dtype == torch.float32 and loss.item() == 0.0
    loss.backward()
    assert logp.grad.dtype == torch.bfloat16
    z = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"share one \(B, T\) shape"):
        policy_loss(z, torch.zeros(2, 4), torch.zeros(2), z)
    with pytest.raises(ValueError, match=r"advantages must be \(B,\)"):
        policy_loss(z, z, torch.zeros(2, 1), z)
    with pytest.raises(ValueError, match="level must be"):
        policy_loss(z, z, torch.zeros(2), z, level="seq")
    with pytest.raises(ValueError, match="normalise_by must be"):
        policy_loss(z, z, torch.zeros(2), z, normalise_by="group")
    with pytest.raises(ValueError, match="needs ref_logprobs"):
        policy_loss(z, z, torch.zeros(2), z, kl_coef=0.1)


# --------------------------------------------------------------------------- SFT
def test_sft_by_hand():
    # Uniform logits over V = 4: every token costs ln 4 = 1.386294.
    labels = torch.tensor([[-100, -100, 2, 3]])
    assert sft_loss(torch.zeros(1, 4, 4), labels).item() == pytest.approx(math.log(4), abs=1e-6)
    # Two classes, logits (0, ln 3): p(class 1) = 3/4, p(class 0) = 1/4.
    # Aligned labels [1, 0, -100]: (-ln 0.75 - ln 0.25) / 2 = (0.287682 + 1.386294) / 2 = 0.836988
    logits = torch.tensor([[[0.0, math.log(3.0)]] * 3])
    assert sft_loss(logits, torch.tensor([[1, 0, -100]]), shift=False).item() == pytest.approx(0.836988, abs=1e-6)
    # Shifted: labels [x, 1, 0] use logits at positions 0, 1 -> same value
    assert sft_loss(logits, torch.tensor([[-100, 1, 0]])).item() == pytest.approx(0.836988, abs=1e-6)
    # (1 + 3) / 2 = 2; the padding's NaN is never read
    assert sft_loss_from_logprobs(torch.tensor([[-1.0, -3.0, float("nan")]]), torch.tensor([[1, 1, 0]])).item() == 2.0
    assert sft_loss_from_logprobs(torch.zeros(2, 2), torch.zeros(2, 2)).item() == 0.0  # empty: 0, not NaN


def test_sft_variants_agree_with_each_other_and_hf():
    from transformers.loss.loss_utils import ForCausalLMLoss

    g = torch.Generator().manual_seed(0)
    B, T, V = 3, 7, 11
    logits = torch.randn(B, T, V, generator=g, requires_grad=True)
    ids = torch.randint(0, V, (B, T), generator=g)
    labels = ids.clone()
    labels[:, :3] = -100  # prompt
    labels[1, 5:] = -100  # padding
    hf = ForCausalLMLoss(logits, labels, vocab_size=V)
    ours = sft_loss(logits, labels)
    torch.testing.assert_close(ours, hf)
    # the trainer's path: completion-token logprobs from the same forward
    lp = token_logprobs(logits[:, :-1], labels[:, 1:])
    torch.testing.assert_close(sft_loss_from_logprobs(lp, labels[:, 1:] != -100), hf)
    (g1,) = torch.autograd.grad(ours, logits)
    (g2,) = torch.autograd.grad(hf, logits)
    torch.testing.assert_close(g1, g2)


def test_token_logprobs():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 9, generator=g)
    ids = torch.randint(0, 9, (2, 5), generator=g)
    naive = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(token_logprobs(logits, ids), naive)
    ids[0, 0] = -100
    assert token_logprobs(logits.bfloat16(), ids)[0, 0].item() == 0.0
    assert token_logprobs(logits.bfloat16(), ids).dtype == torch.float32


# --------------------------------------------------------------------------- TRL parity
def _require_pinned_trl():
    import trl  # a declared test dependency (the dev extra): a missing TRL fails, it does not skip

    assert trl.__version__ == TRL_VERSION, (f"the parity tests reproduce TRL {TRL_VERSION}'s loss; installed: "
                                            f"{trl.__version__} (pip install -e '.[dev]')")


def _random_batch(seed, B=16, T=9, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    lengths[0] = T
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).float()
    old = -3 * torch.rand(B, T, generator=g)
    logp = old + spread * torch.randn(B, T, generator=g)
    ref = old + 0.2 * torch.randn(B, T, generator=g)
    rewards = torch.randint(0, 3, (B // 4, 4), generator=g).float()
    rewards[0] = torch.tensor([0.0, 1.0, 2.0, 1.0])  # at least one informative group
    return logp, old, ref, group_advantages(rewards).view(-1), mask


def _trl_compute_loss(logp, old, ref, adv, mask, *, level, loss_type, eps_low, eps_high, beta, is_ratio=None):
    """Call TRL's own GRPOTrainer._compute_loss on a stub trainer whose model 'forward' returns `logp`."""
    from trl.trainer.grpo_trainer import GRPOTrainer

    class Accelerator:  # one process: reduce/gather are identities
        num_processes = 1

        def reduce(self, x, reduction="sum"):
            return x

        def gather(self, x):
            return x

        gather_for_metrics = gather

    metrics = defaultdict(lambda: defaultdict(list))
    stub = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logp, torch.zeros_like(logp), None),
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level=level,
        beta=beta,
        loss_type=loss_type,
        epsilon_low=eps_low,
        epsilon_high=eps_high,
        use_vllm=is_ratio is not None,
        vllm_importance_sampling_correction=is_ratio is not None,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        _metrics=metrics,
        accelerator=Accelerator(),
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
    )
    B, T = logp.shape
    inputs = {
        "prompt_ids": torch.zeros(B, 0, dtype=torch.long),
        "prompt_mask": torch.zeros(B, 0, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "num_items_in_batch": mask.sum(),
    }
    if is_ratio is not None:
        inputs["importance_sampling_ratio"] = is_ratio
    loss = GRPOTrainer._compute_loss(stub, None, inputs)
    return loss, metrics["train"]


PARITY = [
    # (level, TRL loss_type, our normalise_by, eps_low, eps_high)
    ("token", "bnpo", "tokens", 0.2, 0.2),  # the paper's GRPO
    ("token", "dapo", "tokens", 0.2, 0.28),
    ("token", "grpo", "sequence", 0.2, 0.2),
    ("sequence", "grpo", "sequence", 3e-4, 4e-4),  # GSPO as TRL recommends, the GSPO paper's clip range
    ("sequence", "grpo", "sequence", 0.2, 0.2),
    ("sequence", "bnpo", "tokens", 3e-4, 4e-4),
]


@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("level, loss_type, normalise_by, eps_low, eps_high", PARITY)
@pytest.mark.parametrize("seed", [0, 1])
def test_parity_with_trl(seed, level, loss_type, normalise_by, eps_low, eps_high, beta):
    _require_pinned_trl()
    logp, old, ref, adv, mask = _random_batch(seed)
    logp_trl = logp.clone().requires_grad_()
    loss_trl, m = _trl_compute_loss(logp_trl, old, ref, adv, mask, level=level, loss_type=loss_type,
                                    eps_low=eps_low, eps_high=eps_high, beta=beta)
    loss_trl.backward()
    logp_ours = logp.clone().requires_grad_()
    kw = dict(kl_coef=beta, ref_logprobs=ref) if beta else {}
    loss, stats = policy_loss(logp_ours, old, adv, mask, level=level, normalise_by=normalise_by,
                              clip_eps_low=eps_low, clip_eps_high=eps_high, **kw)
    loss.backward()
    torch.testing.assert_close(loss, loss_trl, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logp_ours.grad, logp_trl.grad, atol=1e-6, rtol=1e-5)
    assert stats["clip_fraction"] == pytest.approx(m["clip_ratio/region_mean"][0], abs=1e-6)
    if beta:
        assert stats["kl"] == pytest.approx(m["kl"][0], abs=1e-6)
    if level == "token" or eps_low < 0.01:  # the comparison must exercise the clipped branch
        assert stats["clip_fraction"] > 0


@pytest.mark.parametrize("level, loss_type, normalise_by", [("token", "bnpo", "tokens"), ("sequence", "grpo", "sequence")])
def test_parity_with_trl_empty_row(level, loss_type, normalise_by):
    """An all-padding completion: same loss and gradient as TRL (which counts it as a zero-loss row)."""
    _require_pinned_trl()
    logp, old, ref, adv, mask = _random_batch(3)
    mask[5] = 0.0
    logp_trl, logp_ours = logp.clone().requires_grad_(), logp.clone().requires_grad_()
    loss_trl, _ = _trl_compute_loss(logp_trl, old, ref, adv, mask, level=level, loss_type=loss_type,
                                    eps_low=0.2, eps_high=0.2, beta=0.04)
    loss, _ = policy_loss(logp_ours, old, adv, mask, level=level, normalise_by=normalise_by,
                          kl_coef=0.04, ref_logprobs=ref)
    loss_trl.backward()
    loss.backward()
    torch.testing.assert_close(loss, loss_trl, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logp_ours.grad, logp_trl.grad, atol=1e-6, rtol=1e-5)


def test_advantage_std_matches_trl_nanstd():
    """Our std is TRL's: its group std is trl.trainer.utils.nanstd (Bessel-corrected), eps 1e-4."""
    _require_pinned_trl()
    from trl.trainer.utils import nanstd

    rewards = torch.tensor([[0.0, 1.0, 1.0, 3.0], [2.0, 2.5, 0.0, 7.0]])
    trl_adv = (rewards - rewards.mean(1, keepdim=True)) / (nanstd(rewards, dim=1).unsqueeze(1) + 1e-4)
    torch.testing.assert_close(group_advantages(rewards), trl_adv)


def test_token_logprobs_matches_trl():
    _require_pinned_trl()
    from trl.trainer.utils import selective_log_softmax

    g = torch.Generator().manual_seed(2)
    logits, ids = torch.randn(3, 6, 13, generator=g), torch.randint(0, 13, (3, 6), generator=g)
    torch.testing.assert_close(token_logprobs(logits, ids), selective_log_softmax(logits, ids))


@pytest.mark.parametrize("level,loss_type,normalise_by", [("token", "bnpo", "tokens"), ("sequence", "grpo", "sequence")])
def test_parity_with_trl_importance_sampling(level, loss_type, normalise_by):
    """TIS weights multiply the surrogate exactly as TRL's vllm_importance_sampling_correction does."""
    _require_pinned_trl()
    logp, old, ref, adv, mask = _random_batch(5)
    engine = old + 0.5 * torch.randn(old.shape, generator=torch.Generator().manual_seed(1))
    weights = tis_weights(old, engine, mask, cap=2.0)
    logp_trl, logp_ours = logp.clone().requires_grad_(), logp.clone().requires_grad_()
    loss_trl, _ = _trl_compute_loss(logp_trl, old, ref, adv, mask, level=level, loss_type=loss_type,
                                    eps_low=0.2, eps_high=0.2, beta=0.0, is_ratio=weights)
    loss, _ = policy_loss(logp_ours, old, adv, mask, level=level, normalise_by=normalise_by, is_weights=weights)
    loss_trl.backward()
    loss.backward()
    torch.testing.assert_close(loss, loss_trl, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logp_ours.grad, logp_trl.grad, atol=1e-6, rtol=1e-5)


# --------------------------------------------------------------------------- eq. 1, TIS, mu > 1
def test_group_tokens_is_the_papers_eq1_by_hand():
    """Two prompts with groups of unequal lengths: (1/G) sum_g sum_{i in g, t} l / sum_{i in g} |y_i|."""
    # Ratio 1 everywhere (logp == old): each token's term is -A of its completion.
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [1, 1, 0], [1, 1, 1], [1, 0, 0]], dtype=torch.float32)
    adv = torch.tensor([1.0, -1.0, 2.0, -0.5, 0.5])
    groups = torch.tensor([0, 0, 0, 1, 1])  # prompt 0: 3 + 1 + 2 = 6 tokens; prompt 1: 3 + 1 = 4 tokens
    logp = torch.full((5, 3), -1.0, requires_grad=True)
    loss, _ = policy_loss(logp, logp.detach(), adv, mask, normalise_by="group_tokens", group_ids=groups)
    prompt0 = -(1.0 * 3 + -1.0 * 1 + 2.0 * 2) / 6  # -6/6
    prompt1 = -(-0.5 * 3 + 0.5 * 1) / 4  # +1/4
    assert loss.item() == pytest.approx((prompt0 + prompt1) / 2)
    loss.backward()
    # d loss / d logp_bt = -A_b / (G * tokens of b's group) on real tokens, 0 on padding
    expected = torch.tensor([[-1 / 12] * 3, [1 / 12, 0, 0], [-2 / 12, -2 / 12, 0], [0.5 / 8] * 3, [-0.5 / 8, 0, 0]])
    torch.testing.assert_close(logp.grad, expected)
    # The tokens normalisation differs on these groups: one division by all 10 tokens.
    tokens, _ = policy_loss(logp, logp.detach(), adv, mask, normalise_by="tokens")
    assert tokens.item() == pytest.approx((-3 + 1 - 4 + 1.5 - 0.5) / 10)


def test_group_tokens_micro_batches_sum_to_the_batch_loss():
    logp, old, _, adv, mask = _random_batch(2, B=8)
    groups = torch.arange(8) // 4
    full, _ = policy_loss(logp, old, adv, mask, normalise_by="group_tokens", group_ids=groups)
    lengths = mask.sum(-1)
    per_row = torch.stack([lengths[groups == g].sum() for g in groups]) * 2  # G = 2 prompts
    parts = [policy_loss(logp[i], old[i], adv[i], mask[i], normalise_by="group_tokens", normaliser=per_row[i])[0]
             for i in (slice(0, 3), slice(3, 8))]
    torch.testing.assert_close(parts[0] + parts[1], full)


def test_tis_weights_are_min_ratio_cap_on_a_constructed_mismatch():
    learner = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -1.0, 0.0]])
    engine = torch.tensor([[-1.0, -3.0, -0.1], [-1.0, -4.0, 0.0]])  # ratios e^0, e^1, e^-0.4 / e^-2, e^3, pad
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    weights = tis_weights(learner, engine, mask, cap=2.0)
    expected = torch.tensor([[1.0, 2.0, math.exp(-0.4)], [math.exp(-2.0), 2.0, 1.0]])
    torch.testing.assert_close(weights, expected)
    assert tis_weights(learner, engine, mask, cap=100.0)[0, 1].item() == pytest.approx(math.e)
    for cap in (0.0, -1.0):
        with pytest.raises(ValueError, match="the TIS cap must be > 0"):
            tis_weights(learner, engine, mask, cap=cap)


def test_is_weights_scale_each_tokens_surrogate_term():
    logp = torch.zeros(1, 2, requires_grad=True)
    weights = torch.tensor([[0.5, 2.0]])
    loss, _ = policy_loss(logp, logp.detach(), torch.tensor([1.0]), torch.ones(1, 2), is_weights=weights)
    assert loss.item() == pytest.approx(-(0.5 + 2.0) / 2)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.25, -1.0]]))


def test_clipped_tokens_get_no_gradient():
    """Second pass over a batch (mu = 2): tokens whose ratio left the clip range in the advantage's
    direction are clipped: they count in clip_fraction and get exactly zero gradient."""
    old = torch.zeros(2, 3)
    # row 0 (A > 0): ratios e^0.5 (clipped), e^0.1 (inside), e^-0.5 (below: min picks the unclipped term)
    # row 1 (A < 0): ratios e^-0.5 (clipped), e^0.5 (above: unclipped), e^0 (inside)
    logp = torch.tensor([[0.5, 0.1, -0.5], [-0.5, 0.5, 0.0]], requires_grad=True)
    loss, stats = policy_loss(logp, old, torch.tensor([1.0, -1.0]), torch.ones(2, 3))
    loss.backward()
    clipped = torch.tensor([[True, False, False], [True, False, False]])
    assert stats["clip_fraction"] == pytest.approx(2 / 6)
    assert (logp.grad[clipped] == 0).all() and (logp.grad[~clipped] != 0).all()
    assert (logp.grad[0, 1:] < 0).all() and (logp.grad[1, 1:] > 0).all()  # descent raises A > 0, lowers A < 0
