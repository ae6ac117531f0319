"""Atomic, resumable checkpoints of a LoRA training run.

Layout of ``run_dir/checkpoints/``::

    step-000050/                        one complete checkpoint (never a partial one)
        adapter_config.json             the trained adapter in standard PEFT format:
        adapter_model.safetensors         PeftModel.from_pretrained(base, this folder) loads it,
        README.md                         and so do VLMAgent.load_adapter and vLLM's LoRARequest
        optimizer.pt                    optimizer.state_dict()          (torch.save)
        scheduler.pt                    lr_scheduler.state_dict()       (torch.save)
        rng_state.pt                    python random, numpy global, torch CPU (+ CUDA) RNG states
        trainer_state.json              {"format", "step", "adapter_name", "extra_state" (when JSON-able)}
        extra_state.pt                  extra_state, only when it is not JSON-serialisable
    step-000100/
    latest                              text file: the name of the newest checkpoint ("step-000100")

Atomicity (:mod:`envs.atomic`): a checkpoint is written into a temporary folder beside
its final place (``.tmp-step-000100-*``), every file and the folder are fsynced, and one
``os.rename`` makes it appear complete (:func:`envs.atomic.atomic_directory`); the
``latest`` pointer is then replaced atomically (:func:`envs.atomic.write_text_atomic`).
A crash at any point leaves either the previous state or the new complete checkpoint;
:func:`latest_checkpoint` ignores temporary folders and any ``step-*`` folder that lacks
a file, so it never returns a half checkpoint.

All ``.pt`` files hold only tensors and plain Python containers and are read back with
``torch.load(weights_only=True)``: loading a checkpoint never unpickles code.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

from envs.atomic import atomic_directory, is_temporary, write_text_atomic

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "list_checkpoints",
           "capture_rng_state", "restore_rng_state", "truncate_metrics", "CHECKPOINTS_DIR"]

CHECKPOINTS_DIR = "checkpoints"
_STEP_RE = re.compile(r"^step-(\d+)$")
_REQUIRED = ("adapter_config.json", "adapter_model.safetensors", "trainer_state.json", "rng_state.pt")
_FORMAT = 1


# -- RNG state ----------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states: python ``random``, numpy's global ``np.random``, torch CPU and (when
    available) every CUDA device, as tensors and plain containers (``weights_only``-loadable)."""
    import numpy as np
    import torch

    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the global RNGs to ``state`` (from :func:`capture_rng_state`): the next draws repeat.

    CUDA states are restored when both the checkpoint and this process have CUDA devices
    (a CPU checkpoint resumed on a GPU leaves the CUDA RNG as it is)."""
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        cuda = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


# -- discovery ----------------------------------------------------------------------------------


def _checkpoints_root(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINTS_DIR


def _is_complete(path: Path) -> bool:
    if not (_STEP_RE.match(path.name) and path.is_dir()):
        return False
    if not all((path / name).is_file() for name in _REQUIRED):
        return False
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        return int(state["step"]) == int(_STEP_RE.match(path.name).group(1))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The complete checkpoints of ``run_dir``, oldest step first (partial and temporary folders skipped)."""
    root = _checkpoints_root(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _is_complete(p)]
    return sorted(found, key=lambda p: int(_STEP_RE.match(p.name).group(1)))


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint to resume ``run_dir`` from, or None when it has none.

    That is the one the ``latest`` pointer names, when it is complete; otherwise (no pointer,
    or a pointer to a folder since removed or damaged) the complete checkpoint with the
    highest step. Temporary and partial folders are never returned."""
    root = _checkpoints_root(run_dir)
    pointer = root / "latest"
    try:
        named = root / pointer.read_text(encoding="utf-8").strip()
        if named.parent == root and _is_complete(named):
            return named
    except (OSError, ValueError):
        pass
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


# -- saving -------------------------------------------------------------------------------------


def _active_adapter(model: Any) -> str:
    name = getattr(model, "active_adapter", None)
    if callable(name):  # some PEFT versions expose it as a method on the tuner
        name = name()
    if isinstance(name, (list, tuple)):
        name = name[0] if len(name) == 1 else None
    if not isinstance(name, str):
        raise ValueError(f"cannot tell which adapter to save (active_adapter={name!r}); pass adapter_name=")
    return name


def _save_adapter(model: Any, folder: Path, adapter_name: str) -> None:
    """``model.save_pretrained`` of one adapter, its files at the top of ``folder`` whatever its name
    (PEFT puts adapters other than "default" in a subfolder named after them)."""
    if adapter_name not in getattr(model, "peft_config", {}):
        raise ValueError(f"model has no adapter {adapter_name!r} (has: {sorted(getattr(model, 'peft_config', {}))}); "
                         "save_checkpoint needs a peft.PeftModel with the trained adapter")
    model.save_pretrained(str(folder), selected_adapters=[adapter_name], safe_serialization=True)
    if adapter_name != "default":
        sub = folder / adapter_name
        for item in sub.iterdir():
            os.replace(item, folder / item.name)
        sub.rmdir()
    if not (folder / "adapter_model.safetensors").is_file():
        raise RuntimeError(f"model.save_pretrained wrote no adapter_model.safetensors in {folder}")


def save_checkpoint(run_dir: str | os.PathLike, step: int, model: Any, optimizer: Any = None,
                    scheduler: Any = None, extra_state: dict[str, Any] | None = None, keep_last: int | None = 3,
                    adapter_name: str | None = None) -> Path:
    """Write the checkpoint of ``step`` to ``run_dir/checkpoints/step-{step:06d}/``, atomically.

    Args:
        run_dir: the run's output folder.
        step: optimizer steps done, >= 0. Saving a step that exists replaces it.
        model: a ``peft.PeftModel``; only the adapter is saved, in standard PEFT format.
        optimizer / scheduler: their ``state_dict()`` are saved (None: skipped).
        extra_state: anything else to resume from (env RNG, data cursor, metrics...): kept
            in ``trainer_state.json`` when JSON-serialisable (numpy scalars become numbers,
            tuples lists), else in ``extra_state.pt``, which may then hold only tensors and
            plain Python containers (``torch.load(weights_only=True)`` reads it back).
        keep_last: keep this many checkpoints (highest steps; the new one always stays) and
            delete older ones; None keeps all.
        adapter_name: which adapter to save (default: the model's active adapter).

    Returns:
        The checkpoint folder.
    """
    import torch

    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0; got {step!r}")
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None (keep all); got {keep_last!r}")
    adapter_name = adapter_name or _active_adapter(model)
    root = _checkpoints_root(run_dir)
    final = root / f"step-{step:06d}"
    # Re-saving a step (e.g. after a resume) replaces it: the old folder is moved aside first.
    with atomic_directory(final, overwrite=True) as tmp:
        _save_adapter(model, tmp, adapter_name)
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if scheduler is not None:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(capture_rng_state(), tmp / "rng_state.pt")
        state: dict[str, Any] = {"format": _FORMAT, "step": step, "adapter_name": adapter_name,
                                 "saved_at": time.time()}
        extra_state = dict(extra_state or {})
        try:
            state["extra_state"] = json.loads(json.dumps(extra_state, default=_numpy_scalar))
        except (TypeError, ValueError):
            torch.save(extra_state, tmp / "extra_state.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
    write_text_atomic(root / "latest", final.name + "\n")
    _prune(root, keep=final, keep_last=keep_last)
    return final


def _numpy_scalar(obj: Any) -> Any:
    """JSON fallback: numpy scalars (np.float64, np.int64, np.bool_) as Python numbers; anything else fails."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _prune(root: Path, keep: Path, keep_last: int | None) -> None:
    """Delete checkpoints beyond the ``keep_last`` highest steps (never ``keep``) and the temporary
    folders and files of crashed writes. Incomplete ``step-*`` folders (not ours: we never write one) stay."""
    for p in root.iterdir():
        if is_temporary(p):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
    if keep_last is None:
        return
    complete = list_checkpoints(root.parent)
    for p in complete[: max(len(complete) - keep_last, 0)]:
        if p != keep:
            shutil.rmtree(p, ignore_errors=True)


# -- loading ------------------------------------------------------------------------------------


def load_checkpoint(path: str | os.PathLike, model: Any, optimizer: Any = None, scheduler: Any = None,
                    restore_rng: bool = True, adapter_name: str | None = None) -> dict[str, Any]:
    """Restore a checkpoint written by :func:`save_checkpoint` into live objects.

    Args:
        path: a checkpoint folder, or a run folder (its :func:`latest_checkpoint` is used).
        model: the ``peft.PeftModel`` to load the adapter weights into (same LoRA config).
        optimizer / scheduler: restored from their saved state when given (the
            optimizer must be built over the same parameters, in the same order).
        restore_rng: also restore the global python / numpy / torch RNG states.
        adapter_name: adapter to load into (default: the saved one if the model has it,
            else the model's active adapter).

    Returns:
        ``{"step": int, "extra_state": dict, "path": Path}``.

    Raises:
        FileNotFoundError: no complete checkpoint at ``path``.
        ValueError: the adapter weights do not fit the model's adapter.
    """
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    path = Path(path)
    if not _is_complete(path):
        latest = latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"no complete checkpoint at {path} (expected a step-NNNNNN folder holding "
                                    f"{', '.join(_REQUIRED)}, or a run folder with checkpoints/)")
        path = latest
    state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    saved_name = state.get("adapter_name", "default")
    if adapter_name is None:
        adapter_name = saved_name if saved_name in getattr(model, "peft_config", {}) else _active_adapter(model)
    weights = load_file(str(path / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights, adapter_name=adapter_name)
    bad = list(getattr(result, "unexpected_keys", [])) + [
        k for k in getattr(result, "missing_keys", []) if "lora_" in k and f".{adapter_name}." in k]
    if bad:
        raise ValueError(f"{path}: the saved adapter does not match adapter {adapter_name!r} of the model "
                         f"({len(bad)} tensors unexpected or missing, e.g. {bad[0]!r}); "
                         "build the model with the run's LoRA config (target_modules, train_vision)")
    if optimizer is not None and (path / "optimizer.pt").is_file():
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    if scheduler is not None and (path / "scheduler.pt").is_file():
        scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu", weights_only=True))
    if restore_rng:
        restore_rng_state(torch.load(path / "rng_state.pt", map_location="cpu", weights_only=True))
    if "extra_state" in state:
        extra = state["extra_state"]
    elif (path / "extra_state.pt").is_file():
        extra = torch.load(path / "extra_state.pt", map_location="cpu", weights_only=True)
    else:
        extra = {}
    return {"step": int(state["step"]), "extra_state": extra, "path": path}


def truncate_metrics(path: str | os.PathLike, step: int) -> None:
    """Drop the lines of a ``metrics.jsonl`` log whose ``"step"`` is after ``step``: a resumed run
    rewrites what the killed run logged past its checkpoint. Rewritten atomically (a crash during the
    resume leaves the old log whole); a missing file is left missing."""
    path = Path(path)
    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= step]
    write_text_atomic(path, "".join(ln + "\n" for ln in lines))
