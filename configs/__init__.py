"""The shipped run configurations, addressable by name: ``quickstart``, ``paper/grpo_top_block_x_only``.

    >>> find("paper/grpo_top_block_x_only")      # also "paper/grpo_top_block_x_only.yaml" or a path
    PosixPath('.../configs/paper/grpo_top_block_x_only.yaml')

Why a package: the layout keeps the YAML files in the top-level ``configs/`` folder; as an
import package whose YAML files are package data (setup.cfg), the folder ships in the wheel
and is found next to this file alike in a checkout, an editable install and an installed
wheel. Mapping the folder under ``cubeworld`` with ``package_dir`` instead would need every
package listed by hand, since ``packages = find:`` does not discover a remapped folder.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

__all__ = ["ROOT", "DEFAULT", "names", "find"]

ROOT = Path(__file__).resolve().parent
DEFAULT = "quickstart"


def names() -> list[str]:
    """Every shipped config's name (its path under ``configs/`` without ``.yaml``), sorted."""
    return sorted(p.relative_to(ROOT).with_suffix("").as_posix() for p in ROOT.rglob("*.yaml"))


def find(name: str | os.PathLike) -> Path:
    """The YAML file that ``name`` means: an existing file as given, else the shipped config of that name.

    A shipped name may carry ``.yaml`` and a leading ``configs/`` (as written from a checkout's
    root), so ``paper/grpo_top_block_x_only``, ``paper/grpo_top_block_x_only.yaml`` and
    ``configs/paper/grpo_top_block_x_only.yaml`` work from any folder.

    Raises:
        FileNotFoundError: ``name`` is neither a file nor a shipped config; the message gives
            the closest shipped names (difflib) or all of them.
    """
    path = Path(name)
    if path.is_file():
        return path
    key = path.as_posix().removeprefix("./").removeprefix("configs/")
    key = key.removesuffix(".yaml").removesuffix(".yml")
    known = names()
    if key in known:  # a membership test, so "../x" can never leave the package
        return ROOT / f"{key}.yaml"
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.5)
    what = "is a folder, not a YAML file" if path.is_dir() else "is no such file"
    hint = f"did you mean {' or '.join(close)}?" if close else f"shipped: {', '.join(known)}"
    raise FileNotFoundError(f"config {str(name)!r} {what} and names no shipped config; {hint} "
                            "(pass a YAML file or a shipped config name such as paper/grpo_top_block_x_only)")
