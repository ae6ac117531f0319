"""SFT demonstrations of multi-step episodes: the oracle's answer at every turn, in the policy's chat format.

The non-interactive condition of DESIGN.md section 7's experiments. An oracle trajectory is
played in the env itself (``info["optimal_action"]`` is the oracle's answer for the state the
next turn acts on), so every target turn's observation carries the same history (earlier
images, prompts, answers, feedback) a policy would see there.

* ``oracle``: the oracle from turn 1. A retry or sequential episode then ends at attempt 1
  (the oracle succeeds), so its demonstration is one turn; a build demonstrates every move.
* ``corrective``: turn 1 is a given first attempt (drawn from the base model by the trainer),
  which is context, never a target; the oracle answers every later turn, so SFT sees
  feedback and the correction that follows it. When the first attempt already ends the
  episode, the demonstration falls back to the oracle's turn 1.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEMONSTRATIONS", "oracle_demonstration"]

DEMONSTRATIONS = ("oracle", "corrective")


def oracle_demonstration(env: Any, observation: dict[str, Any], info: dict[str, Any],
                         first_attempt: str | None = None) -> list[tuple[dict[str, Any], str]]:
    """``[(observation, target answer)]`` of one episode from its reset ``observation`` / ``info``.

    Args:
        env: the episode's env, just reset (it is stepped here).
        first_attempt: ``corrective``: the first turn's answer (not a target); None: ``oracle``.

    Raises:
        RuntimeError: the episode still runs after ``env.unwrapped.max_turns`` turns.
    """
    targets: list[tuple[dict[str, Any], str]] = []
    obs, first_info, limit = observation, info, int(getattr(env.unwrapped, "max_turns", 1))
    for turn in range(limit):
        context_only = turn == 0 and first_attempt is not None
        answer = first_attempt if context_only else info["optimal_action"]
        if not context_only:
            targets.append((obs, answer))
        obs, _, terminated, truncated, info = env.step(answer)
        if terminated or truncated:
            # A first attempt that ended the episode leaves nothing to correct: the oracle's turn 1 instead.
            return targets or [(observation, first_info["optimal_action"])]
    raise RuntimeError(f"the episode still runs after max_turns={limit} turns")
