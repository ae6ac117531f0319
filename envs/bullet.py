"""``pybullet``, imported without its C build banner ("pybullet build time: ...") on the terminal.

pybullet's C extension prints the banner from ``printf`` while it is first imported, below
Python's ``sys.stdout`` / ``sys.stderr``, so only the process's file descriptors 1 and 2 can
hide it: both point at ``os.devnull`` for the import and are restored afterwards, also when
the import fails (its ImportError then surfaces as usual). The descriptors are used rather
than ``sys.stdout.fileno()``, which captured streams (pytest, notebooks) do not have.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

__all__ = ["pybullet", "quiet_fds", "BulletClient"]


def _flush_c_stdio() -> None:
    """Flush C's stdio buffers, so buffered C output lands where the descriptor points now."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError, TypeError):  # no C library handle here (e.g. Windows): nothing to flush
        pass


@contextlib.contextmanager
def quiet_fds(fds: tuple[int, ...] = (1, 2)) -> Iterator[None]:
    """Point the file descriptors ``fds`` at ``os.devnull`` inside the block; restore them on exit.

    Descriptors that are closed are left alone; if ``os.devnull`` cannot be opened nothing is
    redirected. Python-level output pending in ``sys.stdout`` / ``sys.stderr`` is flushed first,
    so only output written inside the block is dropped.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        yield
        return
    saved: list[tuple[int, int]] = []
    try:
        for fd in fds:
            try:
                saved.append((fd, os.dup(fd)))
            except OSError:  # closed descriptor: nothing reaches a terminal through it
                continue
            os.dup2(devnull, fd)
        yield
    finally:
        _flush_c_stdio()
        for fd, copy in reversed(saved):
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)


with quiet_fds():
    import pybullet


class BulletClient:
    """Owns one pybullet DIRECT client, connected on first use of :attr:`client` and disconnected by
    :meth:`close` (or when the owner is garbage-collected). The physics world and the styled renderer
    each hold one; a subclass sets ``self._client = None`` in its ``__init__`` and pickles without it."""

    _client: int | None = None

    @property
    def client(self) -> int:
        if self._client is None:
            self._client = pybullet.connect(pybullet.DIRECT)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            try:
                pybullet.disconnect(physicsClientId=self._client)
            except Exception:  # at interpreter exit pybullet's own names may already be gone
                pass
            self._client = None

    def __del__(self) -> None:
        self.close()
