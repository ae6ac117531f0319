"""Where the ``tiny-base`` model lives: the embedded tiny VLM after its pre-training recipe.

``tiny-base`` is :mod:`agents.tiny`'s random Qwen2.5-VL after the seeded two-stage
recipe of :mod:`training.pretrain` (perception pre-training on generic block
scenes, then format training on random legal answers). The seed-0 build ships as
package data in ``agents/data/tiny-base/``; other seeds (or an install without the
package data) are built by ``python -m training.pretrain --seed SEED`` into
:func:`cache_path`. This module only finds folders: agents never import training code.
"""

from __future__ import annotations

import pathlib

from .tiny import cache_dir

__all__ = ["tiny_base_path", "shipped_path", "cache_path", "RECIPE_VERSION"]

# Bump with any change to training.pretrain's recipe: cached builds of an older recipe are ignored.
RECIPE_VERSION = 3


def shipped_path() -> pathlib.Path:
    """The package-data folder of the seed-0 build (it may be absent)."""
    return pathlib.Path(__file__).resolve().parent / "data" / "tiny-base"


def cache_path(seed: int = 0) -> pathlib.Path:
    """Cache folder of the ``seed`` build: ``<cache_dir>/tiny-base-v{RECIPE_VERSION}-seed{seed}``."""
    return cache_dir() / f"tiny-base-v{RECIPE_VERSION}-seed{seed}"


def tiny_base_path(seed: int = 0) -> pathlib.Path:
    """Folder of the ``tiny-base`` model for ``seed``: the shipped one (seed 0), else the cached build.

    Raises:
        ValueError: ``seed`` is not a non-negative int.
        FileNotFoundError: no build exists; the message gives the command that makes one.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    candidates = ([shipped_path()] if seed == 0 else []) + [cache_path(seed)]
    for path in candidates:
        if (path / "model.safetensors").is_file():
            return path
    raise FileNotFoundError(
        f"no tiny-base model for seed {seed} (looked in {', '.join(str(c) for c in candidates)}); "
        f"build it with: cubeworld pretrain --seed {seed}  (about 13 minutes on 2 CPU cores)")
