"""Sizing on paper: GPUs, learner/engine split, memory per GPU and step time of the paper's configurations.

    python benchmarks/sizing.py [--config configs/paper/grpo_top_block_x_only.yaml] [--json] [--check]

Every figure here is an ESTIMATE computed from model shapes; nothing runs on a GPU. Parameter
counts are exact: each model is built from its config.json on PyTorch's meta device (no weights,
no download) and its tensors are counted by role. ``--check`` asserts those totals against the
model cards. The run settings (group size, prompts per step, micro-batch, max new tokens, LoRA rank
and targets, vLLM memory share) come from the training config, default the paper's GRPO run.

Model shapes (config.json; the Qwen repositories themselves are not in the searchable stores, so
the values were taken from published copies of the same file, which agree with each other):

* Qwen2.5-VL-7B-Instruct: ``benchmarks/random_model.py`` (QWEN25_VL_7B_CONFIG).
* Qwen3-VL-8B-Instruct: text 36 layers, hidden 4096, 32 heads, 8 KV heads, head_dim 128,
  intermediate 12288, vocab 151936, untied lm_head; vision depth 27, hidden 1152, intermediate
  4304, 16 heads, patch 16, out_hidden 4096, deepstack [8, 16, 24]. Copies: huggingface.co
  Steinate/Cortex and Chhagan005/CSM-DocExtract-8N config.json (Qwen3-VL-8B fine-tunes), the
  nvidia/Cosmos-Reason2-8B config quoted in GitHub code, Ascend MindSpeed-MM
  examples/qwen3vl/model_8B.json (init from Qwen3-VL-8B-Instruct).
* Qwen3-VL-32B-Instruct: text 64 layers, hidden 5120, 64 heads, 8 KV heads, head_dim 128,
  intermediate 25600, vocab 151936, untied; vision as 8B but out_hidden 5120. Copies:
  huggingface.co quanliang/F1 config.json (Qwen3VLForConditionalGeneration of this shape) and a
  GitHub text-encoder loader that pins Qwen3-VL-32B's text/vision shapes and deepstack (8, 16, 24).
  Layers and (KV) heads agree with Qwen3-8B / Qwen3-32B in the Qwen3 technical report, table 1.
* Published totals (``--check``, 0.5 % tolerance: the cards round to 3 digits): 8.29B
  (Qwen2.5-VL-7B-Instruct card), 8.77B (Qwen3-VL-8B-Instruct card), 33.4B (Qwen3-VL-32B-Instruct card).

Image tokens at 256x256 (the environments' observation), from the processors' ``smart_resize``:
Qwen2.5-VL: 14-px patches, 2x2 merge, sides rounded to 28: 256 -> 252, 18x18 patches, 81 tokens.
Qwen3-VL: 16-px patches, 2x2 merge, sides rounded to 32: 256 stays, 16x16 patches, 64 tokens.
(Checked with the embedded tiny image processor set to each model's patch size and pixel limits:
grids 1x18x18 and 1x16x16.)
Prompt text + chat template: ASSUMED 100 tokens (the longest paper prompt is 517 characters,
~100 words; Qwen's tokenizer splits digits singly).

Memory (GiB = 2**30 B; GPU = 80 GiB; N = parameter counts by role):

* Base weights: bf16 2 B/param. NF4 (bitsandbytes, QLoRA; Dettmers et al. 2023, sec. 3): 4 bits
  plus block-wise constants; double quantisation makes those 8/64 + 32/(64*256) = 0.127 bit/param,
  so 4.127 bit = 0.516 B/param. Only ``nn.Linear`` layers quantise, and ``agents/vlm.py`` skips
  ``visual`` and ``lm_head``: the language model's linears are NF4, embeddings, norms, lm_head and
  the vision tower stay bf16. vLLM's in-flight bitsandbytes quantisation (what the project asks
  for with ``load_in_4bit`` on CUDA) is sized the same way.
* LoRA (r on ``target_modules`` of every decoder layer; ``training/lora_targets.py``):
  r * (in + out) params per adapted linear. PEFT keeps adapters in fp32 under a bf16 base
  (``autocast_adapter_dtype``): weight 4 + gradient 4 + AdamW two moments 8 = 16 B/param.
* Activations saved for backward, per token and decoder layer, bf16 unless said (method of
  Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
  sec. 4, counted for this architecture: RMSNorm in fp32, SwiGLU MLP, GQA through SDPA/flash
  (no score matrix), PEFT casting each adapted linear's input to fp32, no dropout):
  2 RMSNorms 8h + attention 2h + 4q + 4kv (+ Qwen3's q/k-norm 4q + 4kv) + MLP 2h + 8I
  + LoRA inputs 20h + 4q + 4I bytes, h hidden, q = heads*head_dim, kv = kv_heads*head_dim,
  I intermediate. The project's learner runs the prompt once per group and the completions on
  its expanded K/V cache (``agents/backends/hf.py`` group_teacher_forced_logprobs), so a
  micro-batch holds prompts*prompt_len + rows*new_tokens tokens, plus the expanded prompt K/V.
  It has no gradient checkpointing (prompt sharing needs it off). The "ckpt" figure is what
  checkpointing every layer would hold: the one-pass path (prompt repeated per row), 2h per
  token per layer plus one layer's full activations.
* Logits of a micro-batch (rows * new_tokens * vocab): kept in fp32 for the log-softmax
  (4 B), and at the start of backward the fp32 gradient and softmax temporary join: 12 B peak.
* vLLM engine: weights (split over TP ranks) + one LoRA slot (bf16, max_loras=1) + KV cache for
  the step's tokens in flight: 2 (K, V) * layers * kv * 2 B per token, tokens = prompts *
  prompt_len (the group shares its prompt's blocks) + prompts*group*(new_tokens + 16) (16-token
  block rounding) + ASSUMED 2 GiB for CUDA context, profiling activations and sampler. vLLM
  then takes ``gpu_memory_utilization`` x GPU (the rest becomes KV cache): the engine's footprint
  is the larger of the two, and "min util" is the share the need requires.
* Colocated (one GPU, ``backend: vllm``): the learner's weights and optimizer states stay
  resident while the engine generates; during the update the engine keeps its share unless
  ``vllm_sleep_mode`` (level 1: weights to CPU, KV dropped; ASSUMED 1 GiB left). The sleep figure
  assumes the learner's cached activation blocks go back to the driver before the engine wakes
  (``agents/backends/vllm.py`` calls ``torch.cuda.empty_cache()`` before ``wake_up``, as TRL does,
  "required to avoid OOM"). Split
  (``backend: vllm-server``): the engine on its own GPU(s) (TP for 32B), the learner on one.
  The project's learner is data-parallel only (no tensor/FSDP sharding), so it must fit one GPU.
* ASSUMED 1 GiB CUDA context + allocator slack on the learner's GPU.

Step time (a step = generate, then update; both layouts are synchronous, so the split buys
memory, not time):

* Generation: prefill FLOPs 2 * N_lm * prompt tokens + vision 2 * N_vision * patches, at ASSUMED
  40 % of the GPU's dense bf16 peak; then max_new_tokens decode steps (upper bound: answers may
  stop earlier), each the roofline max of bytes read (LM weights + KV) / (HBM bandwidth x ASSUMED
  70 %) and 2 * N_lm * sequences FLOPs at 40 %. Tensor parallel divides both; its all-reduces are
  ignored (NVLink). vLLM's bitsandbytes kernels and ``vllm_enforce_eager: true`` (the project's
  default) add per-step costs this model leaves out: read generation times as lower bounds.
* Update: forward 2N and backward 4N FLOPs per token for full training (Kaplan et al. 2020,
  sec. 2.1, C = 6N); with a frozen base only the activation half of the backward runs (the LoRA
  paper, Hu et al. 2021, sec. 4.2: no gradients for most parameters), so 2N + 2N = 4N per token
  (6N with checkpointing's recompute), N the non-embedding language-model params; the frozen
  vision tower runs forward only. At 40 % of peak; NF4 dequantisation overhead is not modelled.
* GPUs: A100 80GB SXM (the paper's): 2.039 TB/s, 312 TFLOP/s dense bf16; H100 80GB SXM:
  3.35 TB/s, 989 TFLOP/s dense bf16 (NVIDIA data sheets).

No GPU was used for these figures; measure with ``benchmarks/vllm_vs_hf.py`` /
``benchmarks/trainer_vs_trl.py`` where one is available.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import pathlib
import sys
from typing import Any

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from random_model import QWEN25_VL_7B_CONFIG  # noqa: E402

GIB = 2**30
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # QLoRA sec. 3: 4-bit code + double-quantised absmax constants
PROMPT_TEXT_TOKENS = 100  # assumption (see module docstring)
MFU = 0.40  # assumed share of dense bf16 peak reached by matmuls
MBU = 0.70  # assumed share of HBM bandwidth reached by decode
ENGINE_OVERHEAD_GIB = 2.0  # assumed: CUDA context, profiling activations, sampler
SLEEPING_ENGINE_GIB = 1.0  # assumed: what a level-1 sleeping engine keeps
LEARNER_OVERHEAD_GIB = 1.0  # assumed: CUDA context + allocator slack


def _qwen3_vl_config(text: dict[str, Any], out_hidden: int) -> dict[str, Any]:
    """A Qwen3-VL config.json in transformers 5's layout, from the text shape and the vision output width."""
    return {
        "architectures": ["Qwen3VLForConditionalGeneration"], "model_type": "qwen3_vl",
        "tie_word_embeddings": False, "image_token_id": 151655, "video_token_id": 151656,
        "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "text_config": {"model_type": "qwen3_vl_text", "head_dim": 128, "hidden_act": "silu", "vocab_size": 151936,
                        "num_key_value_heads": 8, "max_position_embeddings": 262144, "rms_norm_eps": 1e-6,
                        "attention_bias": False, "tie_word_embeddings": False,
                        "rope_parameters": {"mrope_interleaved": True, "mrope_section": [24, 20, 20],
                                            "rope_theta": 5000000, "rope_type": "default"}, **text},
        "vision_config": {"model_type": "qwen3_vl", "depth": 27, "hidden_size": 1152, "intermediate_size": 4304,
                          "num_heads": 16, "in_channels": 3, "patch_size": 16, "spatial_merge_size": 2,
                          "temporal_patch_size": 2, "num_position_embeddings": 2304, "out_hidden_size": out_hidden,
                          "hidden_act": "gelu_pytorch_tanh", "deepstack_visual_indexes": [8, 16, 24]},
    }


QWEN3_VL_8B_CONFIG = _qwen3_vl_config({"hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                                       "num_attention_heads": 32}, out_hidden=4096)
QWEN3_VL_32B_CONFIG = _qwen3_vl_config({"hidden_size": 5120, "intermediate_size": 25600, "num_hidden_layers": 64,
                                        "num_attention_heads": 64}, out_hidden=5120)

# name -> (config.json, published total params, image tokens at 256x256, vision patches at 256x256)
MODELS: dict[str, tuple[dict[str, Any], float, int, int]] = {
    "Qwen2.5-VL-7B": (QWEN25_VL_7B_CONFIG, 8.29e9, 81, 324),
    "Qwen3-VL-8B": (QWEN3_VL_8B_CONFIG, 8.77e9, 64, 256),
    "Qwen3-VL-32B": (QWEN3_VL_32B_CONFIG, 33.4e9, 64, 256),
}


@dataclasses.dataclass(frozen=True)
class GPU:
    name: str
    memory_gib: float
    hbm_bytes_per_s: float
    bf16_flops: float  # dense, no sparsity


GPUS = (GPU("A100 80GB", 80.0, 2.039e12, 312e12), GPU("H100 80GB", 80.0, 3.35e12, 989e12))


@dataclasses.dataclass(frozen=True)
class Shapes:
    """Exact parameter counts of one model by role, and the shapes the activation formulas need."""

    total: int
    vision: int
    embed: int
    lm_head: int
    lm_linear: int  # the language model's nn.Linear weights: what NF4 quantises
    lora: int  # LoRA params at the run's rank and targets
    layers: int
    hidden: int
    q_dim: int
    kv_dim: int
    intermediate: int
    vocab: int
    qk_norm: bool
    image_tokens: int
    vision_patches: int

    @property
    def lm_nonembed(self) -> int:
        """Non-embedding language-model params (Kaplan et al.'s N): everything but vision and embeddings."""
        return self.total - self.vision - self.embed


def count_shapes(config: dict[str, Any], lora_r: int, targets: list[str], image_tokens: int,
                 vision_patches: int) -> Shapes:
    """Build ``config`` on the meta device and count its parameters by role (no weights, no download).

    Raises:
        ValueError: no linear layer of the language model matches ``targets``.
    """
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForImageTextToText

    raw = copy.deepcopy(config)
    cfg = CONFIG_MAPPING[raw["model_type"]](**raw)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(cfg)
    counts = dict.fromkeys(("total", "vision", "embed", "lm_head", "lm_linear", "lora"), 0)
    for name, p in model.named_parameters():
        counts["total"] += p.numel()
        counts["vision"] += p.numel() if ".visual." in f".{name}" else 0
        counts["embed"] += p.numel() if "embed_tokens" in name else 0
        counts["lm_head"] += p.numel() if name.startswith("lm_head") else 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and "language_model" in name:
            counts["lm_linear"] += module.weight.numel()
            if name.rsplit(".", 1)[-1] in targets:
                counts["lora"] += lora_r * (module.in_features + module.out_features)
    if counts["lora"] == 0:
        raise ValueError(f"no language-model linear matches target_modules={targets}; use names such as q_proj")
    text = cfg.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return Shapes(**counts, layers=text.num_hidden_layers, hidden=text.hidden_size,
                  q_dim=text.num_attention_heads * head_dim, kv_dim=text.num_key_value_heads * head_dim,
                  intermediate=text.intermediate_size, vocab=text.vocab_size,
                  qk_norm=raw["model_type"].startswith("qwen3"), image_tokens=image_tokens,
                  vision_patches=vision_patches)


# ---- memory formulas (bytes) -------------------------------------------------------------------

def weight_bytes(s: Shapes, nf4: bool) -> float:
    """Base weights: bf16 everywhere, or NF4 (QLoRA's 4.127 bit) on the language model's linears except lm_head."""
    if not nf4:
        return 2.0 * s.total
    quantised = s.lm_linear - s.lm_head
    return quantised * NF4_BITS / 8 + 2.0 * (s.total - quantised)


def lora_train_bytes(s: Shapes) -> float:
    """fp32 adapter + fp32 gradient + AdamW's two fp32 moments: 16 B per LoRA param."""
    return 16.0 * s.lora


def activation_bytes_per_token_layer(s: Shapes) -> float:
    """Tensors saved for backward per token and decoder layer (formula in the module docstring)."""
    h, q, kv, inter = s.hidden, s.q_dim, s.kv_dim, s.intermediate
    norms = 8 * h + ((4 * q + 4 * kv) if s.qk_norm else 0)
    attention = 2 * h + 4 * q + 4 * kv
    mlp = 2 * h + 8 * inter
    lora_inputs = 20 * h + 4 * q + 4 * inter
    return float(norms + attention + mlp + lora_inputs)


def prompt_tokens(s: Shapes) -> int:
    return s.image_tokens + PROMPT_TEXT_TOKENS


def learner_activation_bytes(s: Shapes, rows: int, group_size: int, new_tokens: int, checkpointing: bool) -> float:
    """Activations of one micro-batch of ``rows`` completions (prompt sharing, or one-pass with checkpointing)."""
    per_layer = activation_bytes_per_token_layer(s)
    prompts = math.ceil(rows / group_size)
    if checkpointing:
        tokens = rows * (prompt_tokens(s) + new_tokens)  # the one-pass path: prompt repeated per row
        return tokens * (2.0 * s.hidden * s.layers + per_layer)
    tokens = prompts * prompt_tokens(s) + rows * new_tokens
    expanded_kv = rows * prompt_tokens(s) * 2 * s.kv_dim * 2 * 2 * s.layers  # repeat_interleave + the cat
    return tokens * per_layer * s.layers + expanded_kv


def logits_peak_bytes(s: Shapes, rows: int, new_tokens: int) -> float:
    """fp32 logits + softmax temporary + fp32 gradient at the start of backward: 12 B per logit."""
    return 12.0 * rows * new_tokens * s.vocab


def kv_cache_bytes(s: Shapes, prompts: int, group_size: int, new_tokens: int) -> float:
    """KV cache of a step's generation: 2 (K, V) x layers x kv x 2 B per token in flight."""
    tokens = prompts * prompt_tokens(s) + prompts * group_size * (new_tokens + 16)
    return 2.0 * s.layers * s.kv_dim * 2 * tokens


# ---- layouts ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Layout:
    model: str
    learner_nf4: bool
    engine_nf4: bool
    split: bool  # engine on its own GPU(s) (vllm-server) instead of colocated (vllm)
    engine_tp: int = 1
    sleep: bool = False

    @property
    def label(self) -> str:
        learner = "NF4" if self.learner_nf4 else "bf16"
        engine = "bnb-4bit" if self.engine_nf4 else "bf16"
        where = f"split, engine TP={self.engine_tp}" if self.split else "colocated" + (" + sleep" if self.sleep else "")
        return f"{self.model}: learner {learner}, engine {engine}, {where}"

    @property
    def gpus(self) -> int:
        return 1 + self.engine_tp if self.split else 1


LAYOUTS = (
    Layout("Qwen2.5-VL-7B", True, True, split=False),
    Layout("Qwen3-VL-8B", True, True, split=False),
    Layout("Qwen3-VL-8B", True, False, split=True),
    Layout("Qwen3-VL-32B", True, True, split=False),
    Layout("Qwen3-VL-32B", True, True, split=False, sleep=True),
    Layout("Qwen3-VL-32B", True, False, split=True, engine_tp=2),
    Layout("Qwen3-VL-32B", False, False, split=True, engine_tp=2),
)


def size_layout(layout: Layout, s: Shapes, run: dict[str, Any], gpu: GPU) -> dict[str, Any]:
    """Memory per GPU (GiB) and step time (s) of one layout on one GPU type; see the module docstring."""
    prompts, group, new, rows = run["prompts_per_step"], run["group_size"], run["max_new_tokens"], run["micro_batch"]
    static = weight_bytes(s, layout.learner_nf4) + lora_train_bytes(s) + LEARNER_OVERHEAD_GIB * GIB
    dynamic = learner_activation_bytes(s, rows, group, new, False) + logits_peak_bytes(s, rows, new)
    dynamic_ckpt = learner_activation_bytes(s, rows, group, new, True) + logits_peak_bytes(s, rows, new)
    tp = layout.engine_tp
    engine_need = ((weight_bytes(s, layout.engine_nf4) + 2.0 * s.lora + kv_cache_bytes(s, prompts, group, new)) / tp
                   + ENGINE_OVERHEAD_GIB * GIB)
    budget = run["vllm_gpu_memory_utilization"] * gpu.memory_gib * GIB
    if layout.split:
        engine_gpu = engine_need
        learner_gpu = static + dynamic
        peak = max(engine_gpu, learner_gpu)
        min_util = engine_need / (gpu.memory_gib * GIB)
    else:
        engine = max(budget, engine_need)
        resident = SLEEPING_ENGINE_GIB * GIB if layout.sleep else engine
        learner_gpu = engine_gpu = max(static + engine, static + dynamic + resident)
        peak = learner_gpu
        min_util = engine_need / (gpu.memory_gib * GIB)
    # -- time
    flops_s = gpu.bf16_flops * MFU
    lm_flops_tok = 2.0 * s.lm_nonembed
    prefill = (lm_flops_tok * prompts * prompt_tokens(s) + 2.0 * s.vision * s.vision_patches * prompts) / (tp * flops_s)
    decode_bytes = (weight_bytes(s, layout.engine_nf4) - 2.0 * (s.vision + s.embed)) / tp
    seqs = prompts * group
    avg_kv = 2.0 * s.layers * s.kv_dim * 2 * seqs * (prompt_tokens(s) + new / 2) / tp
    step_decode = max((decode_bytes + avg_kv) / (gpu.hbm_bytes_per_s * MBU), lm_flops_tok * seqs / (tp * flops_s))
    generation = prefill + new * step_decode
    tokens = prompts * prompt_tokens(s) + seqs * new
    update = (4.0 * s.lm_nonembed * tokens + 2.0 * s.vision * s.vision_patches * prompts) / flops_s
    return {"layout": layout.label, "gpu": gpu.name, "gpus": layout.gpus,
            "learner_gib": learner_gpu / GIB, "engine_gib": engine_gpu / GIB, "peak_gib": peak / GIB,
            "fits": peak <= gpu.memory_gib * GIB, "min_vllm_util": min_util,
            "learner_static_gib": static / GIB, "learner_dynamic_gib": dynamic / GIB,
            "learner_dynamic_ckpt_gib": dynamic_ckpt / GIB, "engine_need_gib": engine_need / GIB,
            "generation_s": generation, "update_s": update, "step_s": generation + update}


# ---- output -------------------------------------------------------------------------------------

def load_run(config_path: str) -> dict[str, Any]:
    """The run settings the sizing needs, from a training config (YAML, validated by TrainConfig)."""
    from training.config import TrainConfig

    path = pathlib.Path(config_path)
    if not path.exists() and (REPO / path).exists():  # the default names a path from the repository root
        path = REPO / path
    cfg = TrainConfig.from_yaml(path)
    if cfg.objective == "sft":
        raise SystemExit(f"{config_path}: objective 'sft' has no rollouts to size; give a grpo/gspo config, "
                         "e.g. configs/paper/grpo_top_block_x_only.yaml")
    return {"config": config_path, "group_size": cfg.completions_per_scene, "prompts_per_step": cfg.prompts_per_step,
            "grad_accum_steps": cfg.grad_accum_steps, "micro_batch": cfg.micro_batch_size,
            "max_new_tokens": cfg.max_new_tokens, "lora_r": cfg.lora_r, "target_modules": list(cfg.target_modules),
            "vllm_gpu_memory_utilization": cfg.vllm_gpu_memory_utilization}


def shapes_table(shapes: dict[str, Shapes], run: dict[str, Any]) -> list[str]:
    lines = [f"| model | params (meta count) | published | vision | embed + lm_head | LoRA r={run['lora_r']} "
             "| weights bf16 | weights NF4 | LoRA + AdamW | act./token/layer | image tokens |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in shapes.items():
        lines.append(f"| {name} | {s.total / 1e9:.3f}B | {MODELS[name][1] / 1e9:.2f}B | {s.vision / 1e9:.3f}B "
                     f"| {(s.embed + s.lm_head) / 1e9:.3f}B | {s.lora / 1e6:.1f}M | {weight_bytes(s, False) / GIB:.1f} GiB "
                     f"| {weight_bytes(s, True) / GIB:.1f} GiB | {lora_train_bytes(s) / GIB:.2f} GiB "
                     f"| {activation_bytes_per_token_layer(s) / 1024:.0f} KiB | {s.image_tokens} |")
    return lines


def layout_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| configuration | GPUs | learner GPU peak (GiB) | engine GPU (GiB) | fits 80 GiB | min vLLM util "
             "| learner act.+logits (ckpt) | generation s A100 / H100 | update s A100 / H100 | step s A100 / H100 |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    by_layout: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        by_layout.setdefault(r["layout"], []).append(r)
    for label, (a, h) in by_layout.items():
        colocated = "colocated" in label
        engine = "same GPU" if colocated else f"{a['engine_gib']:.1f}"
        lines.append(f"| {label} | {a['gpus']} | {a['learner_gib']:.1f} | {engine} | {'yes' if a['fits'] else 'NO'} "
                     f"| {a['min_vllm_util']:.2f} | {a['learner_dynamic_gib']:.1f} ({a['learner_dynamic_ckpt_gib']:.1f}) "
                     f"| {a['generation_s']:.2f} / {h['generation_s']:.2f} | {a['update_s']:.2f} / {h['update_s']:.2f} "
                     f"| {a['step_s']:.1f} / {h['step_s']:.1f} |")
    return lines


def check(shapes: dict[str, Shapes]) -> None:
    """Assert the meta-device totals against the model cards (0.5 %: the cards round to 3 digits)."""
    for name, s in shapes.items():
        published = MODELS[name][1]
        assert abs(s.total - published) / published < 0.005, (
            f"{name}: {s.total / 1e9:.3f}B parameters from the config, model card says {published / 1e9:.2f}B")
    print("check: parameter counts match the model cards (8.29B, 8.77B, 33.4B within 0.5 %)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/paper/grpo_top_block_x_only.yaml",
                        help="training config whose run settings are sized (default: the paper's GRPO run)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    parser.add_argument("--check", action="store_true", help="assert parameter counts against the model cards")
    args = parser.parse_args(argv)
    run = load_run(args.config)
    shapes = {name: count_shapes(cfg, run["lora_r"], run["target_modules"], tokens, patches)
              for name, (cfg, _, tokens, patches) in MODELS.items()}
    if args.check:
        check(shapes)
    results = [size_layout(layout, shapes[layout.model], run, gpu) for layout in LAYOUTS for gpu in GPUS]
    if args.json:
        print(json.dumps({"run": run, "shapes": {k: dataclasses.asdict(v) for k, v in shapes.items()},
                          "layouts": results}, indent=2))
        return
    print(f"Sizing on paper (estimates, no GPU measured) for {run['config']}: {run['prompts_per_step']} prompts x "
          f"{run['group_size']} completions, micro-batch {run['micro_batch']} rows, max_new_tokens "
          f"{run['max_new_tokens']}, LoRA r={run['lora_r']} on {','.join(run['target_modules'])}, "
          f"vllm_gpu_memory_utilization {run['vllm_gpu_memory_utilization']}\n")
    print("\n".join(shapes_table(shapes, run)))
    print()
    print("\n".join(layout_table(results)))
    print(f"\nAssumptions: prompt = image tokens + {PROMPT_TEXT_TOKENS} text tokens; matmuls at {MFU:.0%} of dense bf16 "
          f"peak, decode at {MBU:.0%} of HBM bandwidth; every completion runs to max_new_tokens; engine overhead "
          f"{ENGINE_OVERHEAD_GIB:g} GiB, learner overhead {LEARNER_OVERHEAD_GIB:g} GiB, sleeping engine "
          f"{SLEEPING_ENGINE_GIB:g} GiB; NF4 dequantisation, bitsandbytes decode kernels and enforce_eager launch "
          "overhead not modelled. Formulas and sources: the docstring of benchmarks/sizing.py.")


if __name__ == "__main__":
    main()
