"""Atomic writes: every file and folder that cubeworld writes for a user goes through here.

A writer fills a temporary sibling of the target (``.tmp-NAME-XXXXXXXX``, same folder,
so the rename never crosses a file system), flushes it to disk with ``os.fsync``, and
publishes it with one ``os.replace`` / ``os.rename``; the folder is fsynced after, so
the rename itself survives a crash. A crash, an exception or a concurrent reader
therefore sees either the old file or the complete new one, never a half-written
result, checkpoint or figure, and a failed write leaves no temporary behind.

Helpers: :func:`write_text_atomic`, :func:`write_bytes_atomic`, :func:`write_json_atomic`,
:func:`save_figure_atomic`; :func:`atomic_path` for any writer that takes a file name
(``torch.save``, ``PIL.Image.save``, SB3's ``save``); :func:`atomic_directory` for a
folder written as a whole (a checkpoint, a model build). :func:`is_temporary` tells
the leftovers of a crashed write (a kill between write and rename cannot clean up).

Published files get the permissions a plain ``open(path, "w")`` would give
(``0o666`` less the umask; ``tempfile.mkstemp`` makes them ``0o600``), folders those of
``os.mkdir`` (``0o777`` less the umask). POSIX semantics: on other systems the fsync
of a folder is skipped.

This module uses only the standard library and lives in ``envs``, the lowest package, because
``envs`` writes files too (:func:`envs.trl_interop.export_dataset`); ``agents``, ``training``
and ``evaluation`` import it from here without reversing the package order.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "atomic_directory", "write_text_atomic", "write_bytes_atomic", "write_json_atomic",
           "save_figure_atomic", "is_temporary", "TEMPORARY_PREFIXES"]

TEMPORARY_PREFIXES = (".tmp-", ".old-")
"""Name prefixes of a write in progress (``.tmp-``) and of a folder being replaced (``.old-``)."""


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a temporary of this module's writes (by name: see :data:`TEMPORARY_PREFIXES`)."""
    return Path(path).name.startswith(TEMPORARY_PREFIXES)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _fsync(path: Path) -> None:
    """fsync a file or a folder; a no-op where the system cannot open or sync it (folders off POSIX)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            _fsync(Path(dirpath) / name)
        _fsync(Path(dirpath))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary file name beside ``path`` to write by any means; published as ``path`` on success.

    The parent folders are created. On leaving the block normally the temporary is
    fsynced, given plain-file permissions and renamed to ``path`` (replacing any old
    file); on an exception it is deleted and ``path`` is left as it was.

    Yields:
        The temporary file's ``Path`` (it exists, empty; its suffix is not ``path``'s, so
        pass writers that read the format from the name an explicit format).

    Raises:
        OSError: the folder cannot be written; whatever the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMPORARY_PREFIXES[0]}{path.name}-")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns ``path`` as a Path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, newlines untranslated (see :func:`atomic_path`); returns the path."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding=encoding, newline="") as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data: Any, indent: int | None = 1,
                      default: Callable[[Any], Any] | None = None) -> Path:
    """``json.dumps(data, indent=indent, default=default)`` plus a final newline, written atomically.

    Raises:
        TypeError / ValueError: ``data`` is not JSON-serialisable (raised before any file is touched).
    """
    return write_text_atomic(path, json.dumps(data, indent=indent, default=default) + "\n")


def save_figure_atomic(fig: Any, path: str | os.PathLike, dpi: int = 120) -> Path:
    """``fig.savefig`` (matplotlib) to ``path`` atomically, ``bbox_inches="tight"``; returns the path.

    The format comes from the suffix of ``path`` (default PNG); ``dpi``: dots per inch.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", dpi=dpi, bbox_inches="tight")
    return path


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """A temporary folder beside ``path`` to fill; renamed to ``path`` as a whole on success.

    On leaving the block normally every file and folder in it is fsynced and it is
    renamed to ``path``. An existing ``path`` is first moved aside (``.old-NAME-...``) and
    deleted once the new folder is in place (``overwrite=True``), or kept
    (``overwrite=False``: :class:`FileExistsError`, e.g. when another process published
    the same build first). On an exception the temporary folder is deleted and ``path``
    is left as it was.

    Yields:
        The temporary folder's ``Path`` (empty).

    Raises:
        FileExistsError: ``overwrite=False`` and ``path`` exists (the new folder is deleted).
        OSError: the parent folder cannot be written; whatever the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f"{TEMPORARY_PREFIXES[0]}{path.name}-"))
    old = None
    try:
        yield tmp
        _fsync_tree(tmp)
        os.chmod(tmp, 0o777 & ~_umask())
        if overwrite and (path.exists() or path.is_symlink()):
            old = path.with_name(f"{TEMPORARY_PREFIXES[1]}{path.name}-{os.getpid()}-{time.time_ns()}")
            os.rename(path, old)
        try:
            os.rename(tmp, path)
        except OSError as exc:
            if old is not None:  # put the old folder back: the target never goes missing
                os.rename(old, path)
                old = None
            if path.exists():
                raise FileExistsError(errno.EEXIST, "already exists (overwrite=False keeps it)", str(path)) from exc
            raise
        _fsync(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
