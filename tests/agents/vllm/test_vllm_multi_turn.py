"""Multi-turn, multi-image chats on the vllm backend, for real, on the tiny model in fp32 on CPU.

Runs only where vLLM is installed (``.venv-vllm/bin/python -m pytest tests/agents/vllm -q``).
What is checked: a prompt with several images (a multi-step observation's chat, mixed in one call
with single-image prompts) generates, and its per-token log-probabilities equal a teacher-forced
forward of the transformers model on the same multi-image prompt within 1e-4; the engine's image
limit comes from ``max_history_turns`` and a prompt over it is a clear error.
"""

from __future__ import annotations

import importlib.util

import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vLLM is not installed (its tests run in the environment of scripts/setup_vllm_env.sh)",
                allow_module_level=True)

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from agents.backends.base import SamplingParams  # noqa: E402
from agents.backends.hf import batch_teacher_forced_logprobs  # noqa: E402
from agents.backends.vllm import MULTI_TURN_MAX_IMAGES, VLLMBackend  # noqa: E402

TOL = 1e-4


def _multi_step(observations, n_turns: int) -> dict:
    """A multi-step observation over real scenes: ``n_turns`` earlier turns (scenes 0..), then scene ``n_turns``."""
    history = tuple({"image": observations[k]["image"], "prompt": observations[0]["prompt"] if k == 0
                     else "It fell. Try again.", "answer": f"<answer>{30 * k - 45}</answer>"} for k in range(n_turns))
    return {"image": observations[n_turns]["image"], "prompt": "It fell. Try again.", "history": history}


def test_multi_image_prompts_generate_and_match_teacher_forcing(vllm_agent, observations):
    batch = [observations[5], _multi_step(observations, 1), _multi_step(observations, 3)]
    prompts, images = vllm_agent.prompts_and_images(batch)
    assert [p.count("<|image_pad|>") for p in prompts] == [1, 2, 4]
    params = SamplingParams(temperature=1.0, max_new_tokens=24, n=2, seed=13)
    groups = vllm_agent.backend.generate(prompts, images, params)
    assert len(groups) == 3 and all(len(g) == 2 and all(c.token_ids for c in g) for g in groups)
    rows = [(p, im, c) for p, im, g in zip(prompts, images, groups) for c in g]
    with torch.no_grad():
        expected = batch_teacher_forced_logprobs(vllm_agent.model, vllm_agent.processor, [r[0] for r in rows],
                                                 [r[1] for r in rows], [r[2].token_ids for r in rows])
    for (_, _, completion), want in zip(rows, expected):
        error = (want - torch.tensor(completion.logprobs)).abs().max().item()
        assert error < TOL, f"multi-image log-probs differ from the teacher-forced forward by {error:.2e}"
    # The agent's own scoring path (training) on the same multi-step observations.
    repeated = [obs for obs, g in zip(batch, groups) for _ in g]
    with torch.no_grad():
        scored = vllm_agent.completion_logprobs(repeated, [r[2].token_ids for r in rows])
    for (_, _, completion), got in zip(rows, scored):
        assert (got - torch.tensor(completion.logprobs)).abs().max().item() < TOL


def test_image_limit_of_the_engine(vllm_agent, observations, tiny_path):
    backend = vllm_agent.backend
    # from_pretrained without max_history_turns: room for the documented default.
    assert backend.max_images_per_prompt == MULTI_TURN_MAX_IMAGES == 8
    too_long = _multi_step(observations * 2, MULTI_TURN_MAX_IMAGES)  # 9 images
    prompts, images = vllm_agent.prompts_and_images([too_long])
    with pytest.raises(ValueError, match=r"9 images.*max_images_per_prompt=8.*max_history_turns"):
        backend.generate(prompts, images, SamplingParams(max_new_tokens=2))
    with pytest.raises(ValueError, match="max_images_per_prompt must be an int >= 1"):
        VLLMBackend(str(tiny_path), max_images_per_prompt=0)


@pytest.mark.parametrize("kwargs, limit", [({}, MULTI_TURN_MAX_IMAGES), ({"max_history_turns": 0}, 1),
                                           ({"max_history_turns": 2}, 3),
                                           ({"max_history_turns": 2, "backend_options": {"max_images_per_prompt": 5}}, 5)])
def test_from_pretrained_sizes_the_engine_for_the_kept_turns(monkeypatch, tiny_path, kwargs, limit):
    import agents.backends.vllm
    from agents.vlm import VLMAgent

    built = {}

    class Recorder:
        def __init__(self, **options):
            built.update(options)

    monkeypatch.setattr(agents.backends.vllm, "VLLMBackend", Recorder)
    agent = VLMAgent.from_pretrained(str(tiny_path), backend="vllm", device="cpu", **kwargs)
    assert built["max_images_per_prompt"] == limit
    assert agent.max_history_turns == kwargs.get("max_history_turns")
