"""``load_agent``: an agent from a short spec string (what ``cubeworld eval --agent`` takes)."""

from __future__ import annotations

import difflib
from typing import Any

from .base import Agent

__all__ = ["load_agent", "AGENT_SPECS"]

AGENT_SPECS = {
    "random": "a uniformly random legal answer (RandomAgent)",
    "constant:TEXT": "always TEXT, e.g. constant:<answer>0</answer> (ConstantAgent)",
    "oracle": "the optimal answer from the privileged scene (OracleAgent)",
    "perceive": "find the cubes in the pixels, rebuild the scene, simulate (PerceiveSimulateAgent)",
    "vlm:MODEL": "a Qwen-VL checkpoint (local path or hub id; 'tiny' is the embedded model) (VLMAgent)",
    "sb3:PATH": "a stable-baselines3 PPO model saved by agents.sb3 (SB3Agent)",
}


def load_agent(spec: str, seed: int = 0, adapter: str | None = None, **options: Any) -> Agent:
    """Build the agent that ``spec`` names (see :data:`AGENT_SPECS`).

    Args:
        spec: e.g. ``"oracle"``, ``"constant:<answer>0</answer>"``, ``"vlm:tiny"``.
        seed: seed of random agents and of VLM sampling.
        adapter: PEFT adapter directory for ``vlm:`` agents.
        options: passed to the agent's constructor (``VLMAgent.from_pretrained`` for ``vlm:``).

    Raises:
        ValueError: unknown spec (with the closest known ones), or a spec missing its argument.
    """
    kind, _, arg = spec.partition(":")
    if kind == "random":
        from .baselines import RandomAgent

        return RandomAgent(seed=seed)
    if kind == "oracle":
        from .baselines import OracleAgent

        return OracleAgent()
    if kind == "perceive":
        from .perceive import PerceiveSimulateAgent

        return PerceiveSimulateAgent()
    if kind in ("constant", "vlm", "sb3") and not arg:
        raise ValueError(f"agent spec {spec!r} needs an argument: {kind}:{'TEXT' if kind == 'constant' else 'PATH'}")
    if kind == "constant":
        from .baselines import ConstantAgent

        return ConstantAgent(arg)
    if kind == "vlm":
        from .vlm import VLMAgent

        return VLMAgent.from_pretrained(arg, adapter=adapter, seed=seed, **options)
    if kind == "sb3":
        from .sb3 import SB3Agent

        return SB3Agent.load(arg, **options)
    close = difflib.get_close_matches(kind, [k.split(":")[0] for k in AGENT_SPECS], n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    known = ", ".join(AGENT_SPECS)
    raise ValueError(f"unknown agent spec {spec!r}{hint} Known: {known}")
