"""Timing and peak-memory helpers of the benchmarks (used inside worker subprocesses)."""

from __future__ import annotations

import contextlib
import functools
import resource
import sys
import threading
import time
from collections import defaultdict
from typing import Any


def cuda_available() -> bool:
    """Whether torch sees a CUDA device (peak memory and step ends are then measured on it)."""
    import torch

    return torch.cuda.is_available()


def cuda_sync() -> None:
    """Wait for queued CUDA work (``torch.cuda.synchronize``), so wall times include it; no-op on CPU."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Timers:
    """Accumulated wall time per phase, snapshotted at every step end."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)
        self.steps: list[dict[str, float]] = []
        self.step_ends: list[float] = []

    def wrap(self, obj: Any, attr: str, name: str) -> None:
        """Replace ``obj.attr`` (an instance's method or a function) with a timed version."""
        fn = getattr(obj, attr)

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            cuda_sync()
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                cuda_sync()
                self.current[name] += time.perf_counter() - t0

        setattr(obj, attr, timed)

    @contextlib.contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.current[name] += time.perf_counter() - t0

    def step_end(self) -> None:
        cuda_sync()
        self.step_ends.append(time.perf_counter())
        self.steps.append(dict(self.current))
        self.current.clear()


class PeakMemory:
    """Peak memory over a region: CUDA allocated bytes, or the process's peak resident set (MB)."""

    def __init__(self) -> None:
        self.cuda = cuda_available()
        self.method = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled = 0

    @staticmethod
    def rss_mb() -> float:
        try:
            import psutil

            return psutil.Process().memory_info().rss / 2**20
        except ImportError:
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.method = "torch.cuda.max_memory_allocated"
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM, the peak resident set (Linux >= 4.0)
            self.method = "VmHWM (reset before training)"
            return
        except OSError:
            pass
        try:
            import psutil  # noqa: F401

            self.method = "psutil RSS sampled every 5 ms"
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        except ImportError:
            self.method = "ru_maxrss (process lifetime, includes loading)"

    def _sample(self) -> None:
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self._sampled = max(self._sampled, proc.memory_info().rss)
            time.sleep(0.005)

    def peak_mb(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() / 2**20
        if self.method.startswith("VmHWM"):
            for line in open("/proc/self/status"):
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            return self._sampled / 2**20
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def run_worker(script: str, worker_args: list[str], tag: str, timeout: float, cwd: str,
               **env: str) -> dict[str, Any]:
    """Run ``script`` in a fresh Python process with ``worker_args`` plus ``--result FILE`` and return the
    JSON the worker wrote there, with ``process_s`` (its wall time) added. One process per measured
    configuration keeps peak-memory figures apart.

    Raises:
        RuntimeError: the worker exited non-zero (the message carries its last 40 output lines).
        subprocess.TimeoutExpired: it ran past ``timeout`` seconds.
    """
    import json
    import os
    import pathlib
    import subprocess
    import tempfile

    fd, path = tempfile.mkstemp(prefix=f"{tag}-", suffix=".json")
    os.close(fd)
    cmd = [sys.executable, script, *worker_args, "--result", path]
    environ = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1", **env)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout)
    try:
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise RuntimeError(f"the {tag} worker failed (exit {proc.returncode}):\n{tail}")
        result = json.loads(pathlib.Path(path).read_text())
    finally:
        pathlib.Path(path).unlink(missing_ok=True)
    result["process_s"] = time.perf_counter() - t0
    return result
