"""The rules a :class:`training.config.TrainConfig` value must follow: types, env ids, overrides.

Shared by the config's validation (``__post_init__``) and its ``KEY=VALUE`` overrides; each
check raises :class:`ConfigError` with the value, the rule and the fix.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable
from typing import Any

__all__ = ["ConfigError", "DICT_FIELDS", "apply_override", "check_env_id", "check_env_kwargs", "check_init_adapter", "check_rollout_servers",
           "check_world_size", "close_matches", "coerce", "fail"]

DICT_FIELDS = ("env_mix", "env_kwargs")


class ConfigError(ValueError):
    """An invalid training configuration; the message names the value, the rule and the fix."""


def close_matches(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest options (case-insensitive), or ''."""
    options = list(options)
    lower = {o.lower(): o for o in options}
    hits = [lower[m] for m in difflib.get_close_matches(word.lower(), list(lower), n=3, cutoff=0.6)]
    return f" (did you mean {', '.join(repr(h) for h in hits)}?)" if hits else ""


# -- checks ------------------------------------------------------------------------------------


def fail(message: str):
    raise ConfigError(message)


def coerce(name: str, kind: str, value: Any) -> Any:
    """Check a field's type; numbers written as strings ('1e-4', which YAML reads as text) become numbers."""
    if kind == "str | None":
        return None if value is None or value == "null" else coerce(name, "str", value)
    if kind == "int | None":
        return None if value is None or value == "null" else coerce(name, "int", value)
    if kind in ("int", "float"):
        if isinstance(value, str):
            try:
                value = float(value) if kind == "float" or not value.strip().lstrip("+-").isdigit() else int(value)
            except ValueError:
                fail(f"{name} must be a{'n integer' if kind == 'int' else ' number'}; got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            fail(f"{name} must be a finite {'integer' if kind == 'int' else 'number'}; got {value!r}")
        if kind == "int":
            if value != int(value):
                fail(f"{name} must be an integer; got {value!r}")
            return int(value)
        return float(value)
    if kind == "bool" and not isinstance(value, bool):
        fail(f"{name} must be true or false; got {value!r}")
    if kind == "str" and not isinstance(value, str):
        fail(f"{name} must be a string; got {value!r}")
    if name in DICT_FIELDS and value is not None and not isinstance(value, dict):
        fail(f"{name} must be a mapping; got {value!r}")
    if name == "env_kwargs" and value is None:
        return {}
    if name == "target_modules" and not isinstance(value, (list, tuple)):
        fail(f"target_modules must be a list of module names, e.g. [q_proj, v_proj]; got {value!r}")
    return list(value) if name == "target_modules" else value


def check_env_id(what: str, env_id: Any, gym) -> None:
    if not isinstance(env_id, str):
        fail(f"{what} must be a Gymnasium env id string; got {env_id!r}")
    module, sep, name = env_id.rpartition(":")
    if sep:
        import importlib

        try:
            importlib.import_module(module)
        except ImportError as exc:
            fail(f"{what}: cannot import module {module!r} of env id {env_id!r}: {exc}")
    if name not in gym.registry:
        from envs import ENV_IDS

        fail(f"{what}: unknown env id {env_id!r}{close_matches(name, gym.registry)}; "
              f"use a registered Gymnasium id (cubeworld's: {', '.join(ENV_IDS)})")


def check_env_kwargs(env_id: str, kwargs: dict[str, Any], gym) -> None:
    """Unknown ``env_kwargs`` keys fail now, with close matches, not after the model has loaded."""
    import inspect

    from gymnasium.envs.registration import load_env_creator

    entry = gym.spec(env_id.rpartition(":")[2]).entry_point
    try:
        params = inspect.signature(load_env_creator(entry) if isinstance(entry, str) else entry).parameters
    except (ValueError, TypeError, ImportError, AttributeError):
        return
    valid = [n for n in params if n != "self"] + ["max_episode_steps", "disable_env_checker"]
    for key in kwargs:
        if key not in valid and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            fail(f"env_kwargs key {key!r} is not an argument of {env_id}{close_matches(key, valid)}; valid: {valid}")


def apply_override(data: dict[str, Any], item: str, names: list[str]) -> None:
    import yaml

    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {item!r} is not KEY=VALUE (e.g. learning_rate=1e-4)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: VALUE is not valid YAML ({exc})") from None
    name, dot, sub = key.partition(".")
    name = name.replace("-", "_")
    if name not in names:
        raise ConfigError(f"override {item!r}: unknown config key {name!r}{close_matches(name, names)}")
    if not dot:
        data[name] = value
        return
    if name not in DICT_FIELDS:
        raise ConfigError(f"override {item!r}: only {' and '.join(DICT_FIELDS)} take FIELD.KEY=VALUE; "
                          f"use {name}=VALUE")
    current = data.get(name)
    entries = dict(current) if isinstance(current, dict) else {}
    if value is None:
        entries.pop(sub, None)
    else:
        entries[sub] = value
    data[name] = entries or (None if name == "env_mix" else {})


_ADAPTER_FIELDS = {"r": "lora_r", "lora_alpha": "lora_alpha", "target_modules": "target_modules / train_vision"}


def check_init_adapter(folder: str, wanted: dict[str, Any]) -> None:
    """``init_adapter`` is a PEFT adapter folder whose ``adapter_config.json`` has the ``wanted``
    ``r``, ``lora_alpha`` and ``target_modules`` (so the run's config describes the adapter it
    trains, and a resume rebuilds the same one)."""
    from pathlib import Path

    path = Path(folder)
    if not (path / "adapter_config.json").is_file() or not (path / "adapter_model.safetensors").is_file():
        what = "does not exist" if not path.exists() else "is not a PEFT adapter folder"
        fail(f"init_adapter {folder!r} {what}: it needs adapter_config.json and adapter_model.safetensors, "
             "such as a run's checkpoints/step-NNNNNN folder")
    try:
        saved = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        fail(f"init_adapter {folder!r}: unreadable adapter_config.json ({exc})")
    for key, value in wanted.items():
        if saved.get(key) != value:
            fail(f"init_adapter {folder!r} has {key}={saved.get(key)!r} but this config gives {value!r}; set "
                 f"{_ADAPTER_FIELDS[key]} to the adapter's (the config.yaml of the run that wrote it has them)")


def check_world_size(prompts_per_step: int, rollout_seeding: str | None, world_size: int) -> None:
    """A data-parallel run (``world_size`` ranks) can split its step: every rank gets at least one of the
    ``prompts_per_step`` scenes (a global count), and rollouts are seeded per prompt, so that a prompt's
    completions do not depend on the rank that samples them."""
    if prompts_per_step < world_size:
        fail(f"prompts_per_step={prompts_per_step} is global (split across the ranks) and must be >= the "
             f"world size {world_size}; raise prompts_per_step or launch fewer processes (--nproc_per_node)")
    if world_size > 1 and rollout_seeding == "step":
        fail(f"rollout_seeding='step' samples the whole step in one seeded call, which {world_size} ranks "
             "cannot share; use rollout_seeding=prompt (or null, which picks it for several ranks)")


def check_rollout_servers(backend: str, urls: Any, timeout_s: float) -> list[str]:
    """``vllm_server_urls`` as a list of checked ``http(s)://HOST[:PORT]`` URLs (a string is one URL or a
    comma-separated list): required by, and only allowed with, ``backend: vllm-server``."""
    from agents.backends.vllm_server import check_server_url

    if isinstance(urls, str):
        urls = [u for u in urls.split(",") if u.strip()]
    if not isinstance(urls, (list, tuple)):
        fail(f"vllm_server_urls must be a list of URLs, e.g. [http://127.0.0.1:8000]; got {urls!r}")
    if backend == "vllm-server" and not urls:
        fail("backend=vllm-server needs vllm_server_urls, the rollout servers, e.g. [http://127.0.0.1:8000] "
             "(start one with: cubeworld serve-rollouts MODEL)")
    if urls and backend != "vllm-server":
        fail(f"vllm_server_urls is set but backend={backend!r}; set backend=vllm-server or drop vllm_server_urls")
    try:
        checked = [check_server_url(u) for u in urls]
    except ValueError as exc:
        fail(f"vllm_server_urls: {exc}")
    if len(set(checked)) != len(checked):
        fail(f"vllm_server_urls lists a server twice: {checked}; give each once")
    if not timeout_s > 0:
        fail(f"vllm_server_timeout_s must be > 0 (seconds a rollout request may take); got {timeout_s}")
    return checked
