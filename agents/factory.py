"""``load_agent``: an agent from a short spec string (what ``cubeworld eval --agent`` takes).

VLM specs may name a PEFT LoRA adapter after the model with the separator
:data:`ADAPTER_SEPARATOR` (``+adapter=``, the one adapter syntax of every command):
``vlm:tiny-base+adapter=runs/x/checkpoints/step-000100``.
Hub ids and the embedded model names cannot contain ``+``, and a model folder
whose own path contains ``+adapter=`` still loads when given whole: an ``ARG``
that names an existing path is always the model, never split.
"""

from __future__ import annotations

import difflib
import os
from typing import Any

from .base import Agent

__all__ = ["load_agent", "check_agent_spec", "AGENT_SPECS", "ADAPTER_SEPARATOR", "split_adapter"]

ADAPTER_SEPARATOR = "+adapter="

AGENT_SPECS = {
    "random": "a uniformly random legal answer (RandomAgent)",
    "constant:TEXT": "always TEXT, e.g. constant:<answer>0</answer> (ConstantAgent)",
    "oracle": "the optimal answer from the privileged scene (OracleAgent)",
    "perceive": "find the cubes in the pixels, rebuild the scene, simulate (PerceiveSimulateAgent)",
    "vlm:MODEL": "a Qwen-VL checkpoint (local path or hub id; 'tiny' is the embedded model, 'tiny-base' "
                 "its pre-trained base) (VLMAgent)",
    "vlm:MODEL+adapter=PATH": "MODEL with the PEFT LoRA adapter folder PATH, e.g. "
                              "vlm:tiny-base+adapter=runs/x/checkpoints/step-000100 (VLMAgent)",
    "vlm-logprob:MODEL[+adapter=PATH]": "binary tasks only: answers Yes or No by the larger teacher-forced "
                                        "probability of '<answer>Yes</answer>' vs '<answer>No</answer>' "
                                        "(LogProbJudge)",
    "sb3:PATH": "a stable-baselines3 PPO model saved by agents.sb3 (SB3Agent)",
    "vote:SPEC|SPEC|...": "the majority answer of two or more agents, ties to the first (VoteAgent), e.g. "
                          "vote:perceive|sb3:a.zip|sb3:b.zip",
    "repeat:SPEC": "multi-step episodes: the agent SPEC asked every turn the first turn's question, so it ignores "
                   "feedback, e.g. repeat:perceive or repeat:vlm:tiny-base (RepeatAgent)",
}

_NEEDS_ARGUMENT = {"constant": "TEXT", "vlm": "MODEL", "vlm-logprob": "MODEL", "sb3": "PATH", "repeat": "SPEC",
                   "vote": "SPEC|SPEC|..."}
VOTE_SEPARATOR = "|"


def split_adapter(arg: str) -> tuple[str, str | None]:
    """``"MODEL+adapter=PATH"`` -> ``("MODEL", "PATH")``; ``"MODEL"`` -> ``("MODEL", None)``.

    The split is at the first ``+adapter=``; ``arg`` that is an existing path is
    returned whole (a model folder whose name contains the separator).

    Raises:
        ValueError: an empty MODEL or PATH around the separator.
    """
    if ADAPTER_SEPARATOR not in arg or os.path.exists(arg):
        return arg, None
    model, _, adapter = arg.partition(ADAPTER_SEPARATOR)
    if not model or not adapter:
        raise ValueError(f"bad model spec {arg!r}: write MODEL{ADAPTER_SEPARATOR}PATH with both parts, "
                         f"e.g. tiny-base{ADAPTER_SEPARATOR}runs/x/checkpoints/step-000100")
    return model, adapter


def _check_adapter_folder(adapter: str, spec: str) -> None:
    if not os.path.isfile(os.path.join(adapter, "adapter_config.json")):
        what = "does not exist" if not os.path.exists(adapter) else "holds no adapter_config.json"
        raise ValueError(
            f"adapter {adapter!r} (agent spec {spec!r}) {what}; give a PEFT adapter folder "
            "(adapter_config.json + adapter_model.safetensors), such as a training run's "
            "RUN/checkpoints/step-000100")


def _parse(spec: str) -> tuple[str, str, str | None]:
    """``spec`` -> ``(kind, argument, adapter)``, checked without loading anything."""
    if not isinstance(spec, str):
        raise ValueError(f"agent spec must be a str such as 'oracle' or 'vlm:tiny-base', got {spec!r}")
    kind, _, arg = spec.partition(":")
    if kind in ("random", "oracle", "perceive"):
        return kind, arg, None
    if kind in _NEEDS_ARGUMENT:
        if not arg:
            raise ValueError(f"agent spec {spec!r} needs an argument: {kind}:{_NEEDS_ARGUMENT[kind]}")
        if kind == "repeat":
            _parse(arg)  # the wrapped spec, checked as it would be alone
            return kind, arg, None
        if kind == "vote":
            members = arg.split(VOTE_SEPARATOR)
            if len(members) < 2 or not all(members):
                raise ValueError(f"agent spec {spec!r}: a vote needs two or more specs joined by "
                                 f"'{VOTE_SEPARATOR}', e.g. vote:perceive|sb3:a.zip|sb3:b.zip")
            for member in members:
                _parse(member)
            return kind, arg, None
        if kind in ("vlm", "vlm-logprob"):
            model, adapter = split_adapter(arg)
            if adapter is not None:
                _check_adapter_folder(adapter, spec)
            return kind, model, adapter
        return kind, arg, None
    kinds = list(dict.fromkeys(k.split(":")[0] for k in AGENT_SPECS))
    close = difflib.get_close_matches(kind, kinds, n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    known = ", ".join(AGENT_SPECS)
    raise ValueError(f"unknown agent spec {spec!r}{hint} Known: {known}")


def check_agent_spec(spec: str) -> None:
    """Raise the ValueError :func:`load_agent` would raise for ``spec`` on its syntax, without loading a model.

    Checks the kind, its argument and, for VLM specs, that the adapter folder holds an
    ``adapter_config.json``; a missing model checkpoint is only found by loading it.
    """
    _parse(spec)


def load_agent(spec: str, seed: int = 0, sampling: Any = None, **options: Any) -> Agent:
    """Build the agent that ``spec`` names (see :data:`AGENT_SPECS`).

    Args:
        spec: e.g. ``"oracle"``, ``"constant:<answer>0</answer>"``, ``"vlm:tiny"``,
            ``"vlm:tiny-base+adapter=runs/x/checkpoints/step-000100"``, ``"vlm-logprob:tiny-base"``,
            ``"vote:perceive|sb3:a.zip|sb3:b.zip"`` (every member gets ``seed``, ``sampling`` and ``options``).
        seed: seed of random agents and of VLM sampling.
        sampling: decoding of ``vlm:`` agents (:class:`agents.backends.base.SamplingParams`; default
            :data:`agents.backends.base.EVAL_DECODING`), its seed replaced by ``seed``; other kinds ignore it
            (a log-probability judge does not sample).
        options: passed to the agent's constructor (``VLMAgent.from_pretrained`` for ``vlm:`` and
            ``vlm-logprob:``); ``max_history_turns`` reaches ``vlm:`` agents only (also inside ``repeat:``).

    Raises:
        ValueError: unknown spec (with the closest known ones), a spec missing its argument, or an
            adapter path (``MODEL+adapter=PATH``) that is not a PEFT adapter folder.
        ModelNotFoundError: (:class:`agents.vlm.ModelNotFoundError`, a FileNotFoundError) no loadable
            checkpoint at a ``vlm:`` / ``vlm-logprob:`` MODEL; the message says what to pass.
    """
    kind, arg, adapter = _parse(spec)
    # How many earlier turns a VLM replays is the VLM's business; other agents read no chat.
    history = options.pop("max_history_turns", None)
    if kind == "repeat":
        options = {**options, "max_history_turns": history}
        from .baselines import RepeatAgent

        return RepeatAgent(load_agent(arg, seed=seed, sampling=sampling, **options))
    if kind == "vote":
        from .ensemble import VoteAgent

        members = arg.split(VOTE_SEPARATOR)
        return VoteAgent([load_agent(m, seed=seed, sampling=sampling, **options) for m in members], names=members)
    if kind == "random":
        from .baselines import RandomAgent

        return RandomAgent(seed=seed)
    if kind == "oracle":
        from .baselines import OracleAgent

        return OracleAgent()
    if kind == "perceive":
        from .perceive import PerceiveSimulateAgent

        return PerceiveSimulateAgent()
    if kind == "constant":
        from .baselines import ConstantAgent

        return ConstantAgent(arg)
    if kind == "vlm":
        from .vlm import VLMAgent

        return VLMAgent.from_pretrained(arg, adapter=adapter, seed=seed, sampling=sampling,
                                        max_history_turns=history, **options)
    if kind == "vlm-logprob":
        from .logprob import LogProbJudge

        return LogProbJudge.from_pretrained(arg, adapter=adapter, seed=seed, **options)
    from .sb3 import SB3Agent

    return SB3Agent.load(arg, **options)
