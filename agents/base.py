"""The Agent protocol: anything with ``act`` plugs into evaluation and training.

Observations are the environments' observations (``{"image": (H, W, 3) uint8,
"prompt": str}``). :func:`evaluation.evaluate` adds one key, ``"info"``: the
``info`` dict that ``reset`` returned for that episode. It holds privileged
ground truth (the scene, ``optimal_action``) next to harmless metadata
(``task``, ``answer_format``); only reference agents such as
:class:`agents.OracleAgent` may read the privileged part, and every agent must
work without the key, as a plain Gymnasium loop passes none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["Agent", "Observation"]

Observation = Mapping[str, Any]


@runtime_checkable
class Agent(Protocol):
    """Batch in, one text answer per observation out."""

    def act(self, observations: Sequence[Observation]) -> list[str]:
        """Answer each observation.

        Args:
            observations: environment observations (see the module docstring).

        Returns:
            One answer string per observation, in order.
        """
        ...
