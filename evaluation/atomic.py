"""Atomic writes of result files: a temporary file in the target folder, then one ``os.replace``.

A crash or a concurrent reader never sees a half-written CSV or PNG.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["write_text_atomic", "save_figure_atomic"]


def _temporary(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")


def _publish(tmp: str, path: Path) -> None:
    """Give ``tmp`` the permissions a plain ``open(path, "w")`` would (mkstemp makes it 0600), then rename."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, creating parent folders; returns the path."""
    path = Path(path)
    fd, tmp = _temporary(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_figure_atomic(fig: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """``fig.savefig`` to ``path`` atomically (format from the suffix, default PNG); returns the path."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    fd, tmp = _temporary(path)
    os.close(fd)
    try:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
        _publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
