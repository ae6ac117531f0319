"""``TrainConfig``: one training run, as a validated dataclass (YAML file + command-line overrides).

    >>> cfg = TrainConfig.from_yaml("quickstart", ["learning_rate=1e-4", "env_mix.SideBlockXY-v0=1"])
    >>> cfg = TrainConfig.from_args(["--config", "paper/grpo_top_block_x_only", "--set", "group_size=8", "--max-steps", "50"])
    >>> cfg.to_yaml("runs/x/config.yaml")

Every invariant is checked when the object is built (``__post_init__``); a bad value raises
:class:`ConfigError` (a ``ValueError``) whose message gives the value, the rule and the fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import configs
from agents.backends.base import EVAL_DECODING, VLLM_MAX_LORA_RANKS, engine_lora_rank

from .config_rules import (
    ConfigError,
    apply_override,
    check_env_id,
    check_env_kwargs,
    check_init_adapter,
    check_rollout_servers,
    close_matches,
    coerce,
    fail,
)
from .credit import ADVANTAGES, RETURN_TYPES
from .demonstrations import DEMONSTRATIONS
from .objectives import NORMALISATIONS

__all__ = ["TrainConfig", "ConfigError", "OBJECTIVES"]

OBJECTIVES = ("grpo", "gspo", "sft")
_CHOICES = {"objective": OBJECTIVES, "mix_schedule": ("interleaved", "blocked"),
            "lr_schedule": ("constant", "linear", "cosine"), "loss_normalisation": NORMALISATIONS,
            "backend": ("hf", "vllm", "vllm-server"), "dtype": ("auto", "bfloat16", "float16", "float32"),
            "advantage": ADVANTAGES, "sft_demonstrations": DEMONSTRATIONS, "rollout_seeding": ("step", "prompt", None)}
_MINIMA = {"group_size": 1, "prompts_per_step": 1, "grad_accum_steps": 1, "max_new_tokens": 1, "lora_r": 1,
           "eval_max_new_tokens": 1, "lora_alpha": 1, "num_iterations": 1, "vllm_max_model_len": 0, "log_every": 1, "eval_seed": 1, "warmup_steps": 0,
           "max_steps": 0, "weight_decay": 0, "kl_coef": 0, "seed": 0, "eval_every": 0, "eval_episodes": 0,
           "save_every": 0}
_ONE_TOKEN = " (an answer needs at least one token)"
_HINTS = {"lora_r": " (the LoRA adapter's rank; the paper uses 16)", "lora_alpha": " (LoRA scaling is alpha / r)",
          "max_new_tokens": _ONE_TOKEN, "eval_max_new_tokens": _ONE_TOKEN,
          "eval_every": " (0: evaluate only before and after training)", "save_every": " (0: save only at the end)",
          "prompts_per_step": " (scenes per optimizer step)",
          "num_iterations": " (updates per rollout batch; 1 is on-policy, the paper's)",
          "vllm_max_model_len": " (0: the model's own)", "max_steps": " (0 only evaluates the base)"}
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _field(default: Any, help: str) -> Any:
    """``field(default=..., metadata={"help": help})``; a list or dict default is copied per instance."""
    if isinstance(default, (list, tuple, dict)):
        factory = (lambda: dict(default)) if isinstance(default, dict) else (lambda: list(default))
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """A training run of the VLM agent's LoRA adapter on environment rollouts.

    A step makes one optimizer update from ``prompts_per_step * group_size`` completions, split
    into ``grad_accum_steps`` micro-batches: GRPO/GSPO sample ``group_size`` completions for each
    of ``prompts_per_step`` scenes (one ``reset(seed)`` each); SFT trains on the oracle answers of
    ``prompts_per_step * group_size`` scenes (the same batch, so objectives compare at equal batch
    size). Under ``torchrun`` (:mod:`training.distributed`) ``prompts_per_step``, and so the batch, is
    global (a contiguous shard per rank); ``grad_accum_steps`` and ``device`` are per rank. Each field is
    documented where it is declared (``metadata["help"]``, as TRL's ``GRPOConfig``); :meth:`add_arguments`
    makes it a flag with that help (``cubeworld train --help``).

    Raises:
        ConfigError: any field of the wrong type or out of range.
    """

    model: str = _field("tiny-base", "'tiny-base' (the shipped pre-trained tiny base), 'tiny' (random weights), "
                        "a local folder or a hub id such as Qwen/Qwen3-VL-8B-Instruct")
    init_adapter: str | None = _field(None, "a PEFT LoRA adapter folder to start from instead of a fresh "
                                      "adapter, e.g. an SFT run's checkpoints/step-NNNNNN (SFT, then GRPO); "
                                      "lora_r, lora_alpha and target_modules must match it; the KL reference "
                                      "stays the base model (the adapter switched off, as TRL with PEFT)")
    # Environments
    env_id: str = _field("TopBlockXOnly-v0", "Gymnasium id to train on (any registered id; 'envs:ID' also works)")
    env_mix: dict[str, float] | None = _field(None, "None, or {env_id: weight > 0} for multi-task training "
                                              "(weights need not sum to 1); replaces env_id when set")
    mix_schedule: str = _field("interleaved", "'interleaved' (each step's scenes drawn by weight) or 'blocked' "
                               "(contiguous blocks of steps per env, in env_mix order; the paper's A.9.4)")
    # Objective
    objective: str = _field("grpo", "'grpo' (token-level clipped, group-normalised advantages), 'gspo' "
                            "(sequence-level ratio) or 'sft' (cross-entropy on the oracle answer)")
    group_size: int = _field(16, "completions per scene, >= 2 for grpo/gspo; for sft a batch multiplier")
    prompts_per_step: int = _field(4, "scenes per step, all ranks together; the batch is prompts_per_step * group_size")
    grad_accum_steps: int = _field(1, "micro-batches per step (per rank); must divide the batch")
    # Optimisation (AdamW)
    learning_rate: float = _field(2e-3, "peak learning rate, > 0 (tiny quickstart 2e-3; Qwen LoRA ~1e-5 to 1e-4)")
    lr_schedule: str = _field("cosine", "'constant', 'linear' or 'cosine' (to 0 at max_steps), after warm-up; "
                              "cosine: the quickstart at constant 2e-3 fell back to the shortcut in 1 of 3 seeds")
    warmup_steps: int = _field(0, "linear warm-up steps, in [0, max_steps]")
    max_steps: int = _field(200, "optimizer steps of the run, >= 0 (0 only evaluates the base)")
    max_grad_norm: float = _field(1.0, "gradient-norm clipping threshold, > 0 (1e9 effectively disables it)")
    weight_decay: float = _field(0.0, "AdamW weight decay, >= 0")
    clip_eps_low: float = _field(0.2, "ratio clipped to [1 - low, 1 + high], in (0, 1) (GSPO: e.g. 3e-4)")
    clip_eps_high: float = _field(0.2, "upper clipping range of the ratio, in (0, 1) (GSPO: e.g. 4e-4)")
    loss_normalisation: str = _field("tokens", "'tokens' (sum over the batch / its completion tokens), 'sequence' "
                                     "(each completion's token mean, then the mean) or 'group_tokens' (each "
                                     "prompt's sum / its N completions' tokens, then the mean: the paper's eq. 1)")
    num_iterations: int = _field(1, "updates per rollout batch (TRL's num_iterations, the paper's and PPO's mu), "
                                 ">= 1; > 1 reuses the batch, so the clipped ratio acts (grpo/gspo)")
    tis_correction: bool | None = _field(None, "truncated importance sampling of the learner/engine mismatch "
                                         "(TRL's vllm_importance_sampling_correction): per-token weight "
                                         "min(pi_learner_old / pi_engine, tis_cap); null: on for vllm, off for hf")
    tis_cap: float = _field(3.0, "upper bound of the TIS weight, > 0 (TRL's vllm_importance_sampling_clip_max)")
    kl_coef: float = _field(0.05, "weight of a k3 KL penalty to the base, >= 0; 0 (the paper's) skips the "
                            "reference forward; 0.05 kept the quickstart off one-answer collapse")
    skip_degenerate_groups: bool = _field(True, "skip forward/backward of groups with all-equal rewards")
    # Multi-turn episodes (multi-step env ids; DESIGN.md section 7)
    advantage: str = _field("trajectory", "'trajectory' (the group-normalised return on every generated token "
                            "of the trajectory, as VAGEN / RAGEN) or 'turn' (the group-normalised "
                            "return-to-go at each turn index)")
    return_type: str | None = _field(None, "trajectory return: 'sum' of the turns' rewards, the 'final' turn's "
                                     "reward or 'discounted' (gamma); null: per protocol, 'final' for retry and "
                                     "sequential (a summed retry pays for failing first), 'sum' for build (the "
                                     "height gained)")
    gamma: float = _field(1.0, "discount of return_type 'discounted', in [0, 1]")
    sft_demonstrations: str = _field("oracle", "sft on a multi-step env: 'oracle' (the oracle's answer at "
                                     "every turn) or 'corrective' (a first attempt drawn from the base, then "
                                     "the oracle's correction after its feedback; the attempt is context only)")
    max_history_turns: int | None = _field(None, "earlier turns replayed in a multi-turn chat (null: all; "
                                           "0: none); bounds the prompt of long episodes")
    # Rollout sampling
    temperature: float = _field(1.0, "rollout sampling temperature, > 0 for grpo/gspo")
    top_p: float = _field(1.0, "rollout nucleus mass, in (0, 1]; 1 disables it")
    min_p: float = _field(0.0, "rollout min-p sampling, in [0, 1); 0 disables it")
    max_new_tokens: int = _field(16, "most tokens per rollout completion, >= 1")
    rollout_seeding: str | None = _field(None, "'step' (a step's prompts sampled in one seeded call) or 'prompt' (each "
                                         "prompt's group in its own call, seeded from the step and its index: the "
                                         "same samples on any number of ranks); null: 'prompt' under torchrun")
    # Held-out evaluation decoding
    # (defaults: EVAL_DECODING, the one decoding of every evaluation command)
    eval_temperature: float = _field(EVAL_DECODING.temperature, "the paper's evaluation decoding: temperature "
                                     "1.0, min_p 0.1; eval_temperature 0 is greedy")
    eval_top_p: float = _field(EVAL_DECODING.top_p, "evaluation nucleus mass, in (0, 1]; 1 disables it")
    eval_min_p: float = _field(EVAL_DECODING.min_p, "evaluation min-p, in [0, 1); 0 disables it")
    eval_max_new_tokens: int = _field(EVAL_DECODING.max_new_tokens, "most tokens per evaluation answer, >= 1")
    # Adapter (PEFT LoRA)
    lora_r: int = _field(16, "LoRA rank, >= 1 (the paper's 16)")
    lora_alpha: int = _field(16, "LoRA scale numerator (scaling = lora_alpha / lora_r), >= 1")
    lora_dropout: float = _field(0.0, "dropout on the LoRA input, in [0, 1)")
    target_modules: list[str] = _field(DEFAULT_TARGET_MODULES, "linear module names that get LoRA (non-empty)")
    train_vision: bool = _field(False, "LoRA on the vision encoder too (the paper's vision ablation)")
    # Model loading
    load_in_4bit: bool = _field(False, "quantise the base to 4-bit NF4 (QLoRA; needs bitsandbytes)")
    backend: str = _field("hf", "rollout backend: 'hf' (transformers generate), 'vllm' (vLLM's engine; the "
                          "adapter published to it before every generation) or 'vllm-server' (vllm_server_urls)")
    vllm_gpu_memory_utilization: float = _field(0.3, "share of the GPU's memory the vLLM engine may take, in "
                                                "(0, 1] (TRL's colocated default 0.3; the learner needs the rest)")
    vllm_max_model_len: int = _field(0, "the engine's longest prompt + completion in tokens; 0: the model's")
    vllm_enforce_eager: bool = _field(True, "no CUDA graphs in the engine: fast start; false decodes faster on GPU")
    vllm_sleep_mode: bool = _field(False, "the engine frees its GPU memory while the learner updates "
                                   "(vLLM sleep mode level 1; CUDA only)")
    vllm_server_urls: list[str] = _field([], "vllm-server: the rollout servers, e.g. [http://127.0.0.1:8000]")
    vllm_server_api_key: str | None = _field(None, "their API key; null: $VLLM_API_KEY (config.yaml is saved)")
    vllm_server_timeout_s: float = _field(600.0, "seconds a rollout request may take before the step fails")
    dtype: str = _field("auto", "'auto' (bf16 on CUDA, fp32 on CPU), 'bfloat16', 'float16' or 'float32'")
    device: str = _field("auto", "'auto' (CUDA when available, else CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'")
    # Reproducibility, evaluation, output
    seed: int = _field(0, "seed of everything (adapter init, scene seeds, sampling), >= 0")
    eval_every: int = _field(50, "evaluate every this many steps (0: only before and after training)")
    eval_episodes: int = _field(256, "held-out episodes per evaluation (0 disables evaluation)")
    eval_seed: int = _field(1_000_000, "held-out seeds start here; training draws from [0, eval_seed)")
    save_every: int = _field(50, "checkpoint every this many steps (0: only at the end)")
    output_dir: str = _field("runs/quickstart", "the run's folder (TensorBoard logs, metrics.jsonl, checkpoints)")
    log_every: int = _field(1, "log metrics every this many steps, >= 1")
    env_kwargs: dict[str, Any] = _field({}, "keyword arguments for gym.make, e.g. {image_size: 112}")

    # -- validation ---------------------------------------------------------------------------

    def __post_init__(self):
        for f in dataclasses.fields(self):
            setattr(self, f.name, coerce(f.name, f.type, getattr(self, f.name)))
        for name, options in _CHOICES.items():
            value = getattr(self, name)
            if value not in options:
                fail(f"{name} must be one of {list(options)}; got {value!r}{close_matches(str(value), options)}")
        if self.objective != "sft" and self.group_size < 2:
            fail(f"group_size must be >= 2 for {self.objective}: advantages are relative to the group; "
                  f"got {self.group_size}")
        for name, low in _MINIMA.items():
            if getattr(self, name) < low:
                fail(f"{name} must be >= {low}{_HINTS.get(name, '')}; got {getattr(self, name)}")
        if self.learning_rate <= 0:
            fail(f"learning_rate must be > 0; got {self.learning_rate} (e.g. 5e-5)")
        if self.max_grad_norm <= 0:
            fail(f"max_grad_norm must be > 0 (clipping to 0 would zero every gradient); got {self.max_grad_norm}; "
                  "use a huge value such as 1e9 to effectively disable clipping")
        if self.batch_size % self.grad_accum_steps:
            fail(f"the batch (prompts_per_step * group_size = {self.batch_size} completions) must be divisible by "
                  f"grad_accum_steps={self.grad_accum_steps}; pick a divisor of {self.batch_size}")
        if self.warmup_steps > self.max_steps:
            fail(f"warmup_steps ({self.warmup_steps}) must be <= max_steps ({self.max_steps}); "
                  "lower warmup_steps or raise max_steps")
        for name in ("clip_eps_low", "clip_eps_high"):
            if not 0 < getattr(self, name) < 1:
                fail(f"{name} must be in (0, 1) (the ratio is clipped to [1 - low, 1 + high]); "
                      f"got {getattr(self, name)}")
        if not 0 <= self.lora_dropout < 1:
            fail(f"lora_dropout must be in [0, 1); got {self.lora_dropout}")
        for prefix in ("", "eval_"):
            top_p, min_p, temperature = (getattr(self, prefix + n) for n in ("top_p", "min_p", "temperature"))
            if not 0 < top_p <= 1:
                fail(f"{prefix}top_p must be in (0, 1] (1 disables nucleus sampling); got {top_p}")
            if not 0 <= min_p < 1:
                fail(f"{prefix}min_p must be in [0, 1) (0 disables min-p sampling); got {min_p}")
            if temperature < 0:
                fail(f"{prefix}temperature must be >= 0; got {temperature}")
        if self.objective != "sft" and self.temperature == 0:
            fail(f"temperature must be > 0 for {self.objective}: greedy samples are identical, so every group "
                  "would be degenerate; use e.g. temperature=1.0")
        if self.eval_every > 0 and self.eval_episodes == 0:
            fail(f"eval_every={self.eval_every} asks for evaluation but eval_episodes is 0; "
                  "set eval_episodes >= 1 or eval_every=0")
        needed = self.scenes_per_step * max(self.max_steps, 1)
        if self.eval_seed < needed:
            fail(f"eval_seed ({self.eval_seed}) is too small: training draws scene seeds from [0, eval_seed) "
                  f"and uses up to {needed} scenes ({self.max_steps} steps x {self.scenes_per_step}); "
                  f"raise eval_seed to >= {needed}")
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", self.device):
            fail(f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got {self.device!r}")
        self._check_objective_options()
        if not self.model.strip() or not self.output_dir.strip():
            fail(f"model and output_dir must be non-empty; got model={self.model!r}, output_dir={self.output_dir!r}")
        self._check_target_modules()
        self._check_init_adapter()
        self._check_envs()

    def _check_objective_options(self):
        if self.tis_correction is not None and not isinstance(self.tis_correction, bool):
            fail(f"tis_correction must be true, false or null (null: on for backend vllm); got {self.tis_correction!r}")
        if self.return_type is not None and self.return_type not in RETURN_TYPES:
            fail(f"return_type must be null (per protocol) or one of {list(RETURN_TYPES)}; got "
                 f"{self.return_type!r}{close_matches(str(self.return_type), RETURN_TYPES)}")
        if not 0 <= self.gamma <= 1:
            fail(f"gamma must be in [0, 1] (the discount of return_type 'discounted'); got {self.gamma}")
        if self.max_history_turns is not None and self.max_history_turns < 0:
            fail(f"max_history_turns must be null (all turns) or >= 0; got {self.max_history_turns}")
        if not self.tis_cap > 0:
            fail(f"tis_cap must be > 0 (the TIS weight is min(ratio, tis_cap)); got {self.tis_cap}")
        if self.objective == "sft" and self.num_iterations != 1:
            fail(f"num_iterations={self.num_iterations} reuses a rollout batch, but sft has none; use num_iterations=1")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            fail(f"vllm_gpu_memory_utilization must be in (0, 1]; got {self.vllm_gpu_memory_utilization}")
        if self.device == "mps" and self.backend == "vllm":
            fail("backend='vllm' runs on CUDA or CPU, not mps; use backend=hf or device=cuda")
        if self.vllm_sleep_mode and (self.backend != "vllm" or self.device in ("cpu", "mps")):
            fail(f"vllm_sleep_mode needs backend='vllm' on CUDA (vLLM has no sleep mode on CPU); got "
                 f"backend={self.backend!r}, device={self.device!r}; set vllm_sleep_mode=false")
        self.vllm_server_urls = check_rollout_servers(self.backend, self.vllm_server_urls, self.vllm_server_timeout_s)
        if self.backend.startswith("vllm") and self.lora_r > VLLM_MAX_LORA_RANKS[-1]:
            fail(f"lora_r={self.lora_r} is above the largest LoRA rank vLLM serves ({VLLM_MAX_LORA_RANKS[-1]}); "
                 f"lower lora_r or use backend=hf")

    @property
    def max_images_per_prompt(self) -> int:
        """Most images one rollout prompt carries: 1 single-step; else the longest episode's turns
        (``max_turns`` of each env), capped by ``max_history_turns + 1``."""
        import gymnasium as gym

        import envs  # noqa: F401  (registers the ids)

        most = 1
        for env_id in self.env_weights:
            env = gym.make(env_id, **self.env_kwargs)
            most = max(most, int(getattr(env.unwrapped, "max_turns", 1)))
            env.close()
        return most if self.max_history_turns is None else min(most, self.max_history_turns + 1)

    def return_type_for(self, env_id: str) -> str:
        """``return_type``, or (null) the protocol's default: ``sum`` for TowerBuild-v0 (the return is the
        height gained), ``final`` otherwise (single-step: the one reward, the same thing)."""
        if self.return_type is not None:
            return self.return_type
        import gymnasium as gym

        spec = gym.spec(env_id.rpartition(":")[2])
        merged = {**(spec.kwargs or {}), **self.env_kwargs}
        return "sum" if merged.get("task") == "tower_build" else "final"

    @property
    def tis_enabled(self) -> bool:
        """Whether truncated importance sampling is on: ``tis_correction``, or (null) a vLLM backend."""
        return self.backend.startswith("vllm") if self.tis_correction is None else self.tis_correction

    def _check_target_modules(self):
        tm = self.target_modules
        if not tm or not all(isinstance(m, str) and re.fullmatch(r"[A-Za-z0-9_.]+", m) for m in tm):
            fail(f"target_modules must be a non-empty list of module names (letters, digits, '_', '.'), "
                  f"e.g. [q_proj, v_proj]; got {tm!r}")
        self.target_modules = list(tm)

    def _check_init_adapter(self):
        if self.init_adapter is not None:
            from .lora_targets import lora_target_regex

            check_init_adapter(self.init_adapter, {"r": self.lora_r, "lora_alpha": self.lora_alpha,
                                                   "target_modules": lora_target_regex(self.target_modules,
                                                                                       self.train_vision)})

    def _check_envs(self):
        import gymnasium as gym

        import envs  # noqa: F401  (registers the ids)

        check_env_id("env_id", self.env_id, gym)
        if self.env_mix is not None:
            if not self.env_mix:
                fail("env_mix must be None or a non-empty {env_id: weight} mapping; got {}")
            for env_id, w in self.env_mix.items():
                check_env_id(f"env_mix key {env_id!r}", env_id, gym)
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
                    fail(f"env_mix weight of {env_id!r} must be a number > 0; got {w!r} "
                          "(remove the env from the mix instead of giving it weight 0)")
            self.env_mix = {k: float(v) for k, v in self.env_mix.items()}
        for env_id in self.env_weights if self.env_kwargs else ():
            check_env_kwargs(env_id, self.env_kwargs, gym)

    # -- derived quantities -------------------------------------------------------------------

    @property
    def completions_per_scene(self) -> int:
        """``group_size`` for grpo/gspo; 1 for sft (one oracle answer per scene)."""
        return 1 if self.objective == "sft" else self.group_size

    @property
    def scenes_per_step(self) -> int:
        """Scenes (env resets) per optimizer step: ``prompts_per_step``, or the whole batch for sft."""
        return self.batch_size if self.objective == "sft" else self.prompts_per_step

    @property
    def batch_size(self) -> int:
        """Completions per optimizer step: ``prompts_per_step * group_size``, for every objective."""
        return self.prompts_per_step * self.group_size

    @property
    def micro_batch_size(self) -> int:
        """Completions per forward/backward: ``batch_size // grad_accum_steps``."""
        return self.batch_size // self.grad_accum_steps

    @property
    def env_weights(self) -> dict[str, float]:
        """The training distribution over env ids, weights summing to 1 (``{env_id: 1.0}`` without a mix)."""
        if self.env_mix is None:
            return {self.env_id: 1.0}
        total = sum(self.env_mix.values())
        return {k: v / total for k, v in self.env_mix.items()}

    @property
    def eval_seeds(self) -> range:
        """The held-out scene seeds: ``range(eval_seed, eval_seed + eval_episodes)``."""
        return range(self.eval_seed, self.eval_seed + self.eval_episodes)

    def agent_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`agents.vlm.VLMAgent.from_pretrained` ("auto" becomes None: the agent's
        default); for ``backend="vllm"`` the engine's options, its LoRA rank limit following ``lora_r``."""
        kwargs = {"load_in_4bit": self.load_in_4bit, "backend": self.backend,
                  "device": None if self.device == "auto" else self.device,
                  "dtype": None if self.dtype == "auto" else self.dtype, "max_history_turns": self.max_history_turns}
        if self.backend == "vllm-server":
            kwargs["backend_options"] = {"urls": self.vllm_server_urls, "api_key": self.vllm_server_api_key,
                                         "timeout_s": self.vllm_server_timeout_s}
        if self.backend == "vllm":
            kwargs["backend_options"] = {
                "max_lora_rank": engine_lora_rank(self.lora_r), "enforce_eager": self.vllm_enforce_eager,
                "gpu_memory_utilization": self.vllm_gpu_memory_utilization, "enable_sleep_mode": self.vllm_sleep_mode,
                "max_model_len": self.vllm_max_model_len or None, "seed": self.seed,
                # One image per turn the chat replays: vLLM budgets its encoder cache for the longest prompt.
                "max_images_per_prompt": self.max_images_per_prompt}
            if self.train_vision:  # else vLLM silently serves the vision encoder without its adapter
                kwargs["backend_options"]["enable_tower_connector_lora"] = True
        return kwargs

    def sampling_params(self, seed: int | None = None):
        """The rollouts' :class:`agents.backends.base.SamplingParams` (``n = completions_per_scene``)."""
        from agents.backends.base import SamplingParams

        return SamplingParams(temperature=self.temperature, top_p=self.top_p, min_p=self.min_p,
                              max_new_tokens=self.max_new_tokens, n=self.completions_per_scene, seed=seed)

    def eval_sampling_params(self):
        """The held-out evaluation's :class:`agents.backends.base.SamplingParams`: the ``eval_*`` fields,
        seeded with ``eval_seed`` as ``cubeworld eval --seed`` seeds its agent."""
        from agents.backends.base import SamplingParams

        return SamplingParams(temperature=self.eval_temperature, top_p=self.eval_top_p, min_p=self.eval_min_p,
                              max_new_tokens=self.eval_max_new_tokens, seed=self.eval_seed)

    # -- I/O ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """All fields as plain Python values (a deep copy), in declaration order."""
        return dataclasses.asdict(self)

    def to_yaml(self, path: str | Path) -> Path:
        """Write every field to ``path`` atomically (parents created); ``from_yaml`` reads it back equal."""
        import yaml

        from envs.atomic import write_text_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
        """Build from a mapping of field values plus ``KEY=VALUE`` overrides (see :meth:`from_yaml`)."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping of field names to values; got {type(data).__name__}")
        data = dict(data)
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                raise ConfigError(f"unknown config key {key!r}{close_matches(str(key), names)}; "
                                  f"valid keys: {', '.join(names)}")
        for item in overrides:
            apply_override(data, item, names)
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
        """Load a YAML file of field values (missing fields keep their defaults), then apply overrides.

        Args:
            path: the YAML file or a shipped config's name (``quickstart``, ``paper/grpo_top_block_x_only``;
                :func:`configs.find`), or None to start from the defaults.
            overrides: ``KEY=VALUE`` strings applied in order; VALUE is parsed as YAML
                (``learning_rate=1e-4``, ``target_modules=[q_proj,v_proj]``, ``env_mix=null``);
                ``FIELD.KEY=VALUE`` sets one entry of a dict field (``env_mix.TopBlockXOnly-v0=0.5``,
                ``env_kwargs.image_size=112``; VALUE ``null`` removes the entry).

        Raises:
            ConfigError: ``path`` is neither a file nor a shipped config (with close names), unknown
                keys (with close matches), malformed overrides, invalid values.
        """
        import yaml

        data: dict[str, Any] = {}
        if path is not None:
            try:
                text = configs.find(path).read_text(encoding="utf-8")
            except FileNotFoundError as exc:
                raise ConfigError(str(exc)) from None
            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: a config file must be a YAML mapping; got {type(data).__name__}")
        try:
            return cls.from_dict(data, overrides)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}" if path is not None else str(exc)) from None

    @classmethod
    def from_overrides(cls, overrides: Sequence[str] = ()) -> TrainConfig:
        """The defaults with ``KEY=VALUE`` overrides applied: ``from_yaml(None, overrides)``."""
        return cls.from_yaml(None, overrides)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        """Add ``--config FILE_OR_NAME`` (default: the shipped quickstart), ``--set KEY=VALUE``
        (repeatable) and one ``--field-name VALUE`` flag per field (VALUE parsed as YAML; its help is the
        field's ``metadata["help"]`` and default) to ``parser``, as ``cubeworld train`` does."""
        parser.add_argument("--config", metavar="FILE_OR_NAME", default=configs.DEFAULT,
                            help=f"YAML file or shipped config name, e.g. paper/grpo_top_block_x_only "
                                 f"(default: {configs.DEFAULT}, which equals the built-in defaults)")
        parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides",
                            help="override a field, e.g. --set learning_rate=1e-4 --set env_mix.SideBlockXY-v0=1")
        group = parser.add_argument_group("config fields (YAML key: the flag's name with '_'; each flag "
                                          "overrides --config and --set)")
        for f in dataclasses.fields(cls):
            default = json.dumps(f.default if f.default is not dataclasses.MISSING else f.default_factory())
            group.add_argument("--" + f.name.replace("_", "-"), dest="field_" + f.name, metavar="VALUE",
                               default=None, help=f"{f.metadata['help']} (default: {default})".replace("%", "%%"))
        return parser

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace) -> TrainConfig:
        """The config described by parsed :meth:`add_arguments` flags: file, then ``--set``s in
        order, then per-field flags."""
        flags = {f.name: getattr(ns, "field_" + f.name, None) for f in dataclasses.fields(cls)}
        return cls.from_yaml(ns.config, list(ns.overrides) + [f"{k}={v}" for k, v in flags.items() if v is not None])

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None) -> TrainConfig:
        """Parse ``argv`` (default ``sys.argv[1:]``) with :meth:`add_arguments` and build the config."""
        parser = cls.add_arguments(argparse.ArgumentParser(description="Train the VLM agent's LoRA adapter."))
        ns = parser.parse_args(argv)
        try:
            return cls.from_namespace(ns)
        except ConfigError as exc:
            parser.error(str(exc))
            raise  # unreachable: parser.error exits
