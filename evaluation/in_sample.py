"""Is a real-photo figure in-sample? Agents that were tuned on photos say so; this checks the folder.

DESIGN.md section 9: the real photos are only an evaluation set, and a number
tuned on them is reported as in-sample. An agent declares its tuning set with
two optional attributes (:class:`agents.perceive.PerceiveSimulateAgent` does when built with its
legacy, photo-developed constants; its shipped constants were chosen on renders and declare none):

* ``tuned_on``: the name of the photo set its settings were chosen on, e.g. ``"lerer-dev"``;
* ``tuned_on_photos``: fingerprints of those photo files, :func:`photo_fingerprint`
  of each (a set of strings), so the check reads the files, not the folder's name.

A renamed or copied folder is still recognised; a re-encoded or resized copy of
the same photos is not (its bytes differ), which is why agents without
fingerprints get the note on every folder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Any

__all__ = ["photo_fingerprint", "in_sample_note"]


def photo_fingerprint(path: str | os.PathLike) -> str:
    """The first 16 hex digits of the sha256 of the file's bytes.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def in_sample_note(agent: Any, photo_paths: Iterable[str | os.PathLike]) -> tuple[str | None, int | None]:
    """``(note, n_tuning_photos_here)`` for ``agent`` on these photos; ``(None, 0)`` when out of sample.

    Args:
        agent: any agent; only ``tuned_on`` / ``tuned_on_photos`` are read (absent: not tuned on photos).
        photo_paths: the image files being evaluated.

    Returns:
        The note to print with the figure and how many of the photos are tuning photos
        (None when the agent gives no fingerprints, so the overlap is unknown).

    Raises:
        OSError: a photo cannot be read (only when the agent gives fingerprints).
    """
    name = getattr(agent, "tuned_on", None)
    if not name:
        return None, 0
    head = f"in-sample: this agent's photo constants were chosen on {name}"
    known = getattr(agent, "tuned_on_photos", None)
    if known is None:
        return f"{head}; a figure on those photos is in-sample", None
    paths = list(photo_paths)
    hits = sum(photo_fingerprint(p) in known for p in paths)
    if hits == 0:
        return None, 0
    return f"{head} ({hits} of the {len(paths)} photos here are {name} photos)", hits
