"""Which linear layers get a LoRA adapter: PEFT's ``target_modules`` regex for every supported generation.

:func:`lora_target_regex` adapts the language model's modules named in ``target_modules``
(default :data:`training.config.DEFAULT_TARGET_MODULES`: q/k/v/o, gate/up/down) and, with
``train_vision`` (the paper's vision ablation), the linear layers of every vision-encoder
block: attention ``qkv`` and ``proj``, and the block MLP under whichever names the
generation uses. Module names below are those of transformers 5.24's
``*ForConditionalGeneration`` (``model.visual`` + ``model.language_model`` + ``lm_head``);
the regex also accepts the older layout without the leading ``model.``.

Adapted modules, per generation (``i`` every decoder layer, ``j`` every vision block):

=============  ===========================================  ==============================================
generation     language (always)                            vision (only with ``train_vision``)
=============  ===========================================  ==============================================
Qwen2-VL       ``model.language_model.layers.i.``            ``model.visual.blocks.j.``
               ``self_attn.{q,k,v,o}_proj``,                 ``attn.{qkv,proj}``, ``mlp.{fc1,fc2}``
               ``mlp.{gate,up,down}_proj``
Qwen2.5-VL     as Qwen2-VL                                   ``attn.{qkv,proj}``, ``mlp.{gate,up,down}_proj``
Qwen3-VL       as Qwen2-VL                                   ``attn.{qkv,proj}``, ``mlp.linear_fc{1,2}``
=============  ===========================================  ==============================================

Sources (``transformers/models/<gen>/modeling_<gen>.py``, 5.24):

* ``qwen2_vl``: ``VisionAttention.qkv/proj`` (l. 351-352), ``VisionMlp.fc1/fc2`` (l. 298, 300),
  ``Qwen2VLVisionBlock.attn/mlp`` (l. 434-435); text ``Qwen2VLAttention.{q,k,v,o}_proj``
  (l. 504-507), ``Qwen2MLP.{gate,up,down}_proj`` (l. 461-463); ``PatchEmbed.proj`` Conv3d
  (l. 268), ``PatchMerger.mlp`` = ``Sequential(Linear, GELU, Linear)`` (l. 284-287).
* ``qwen2_5_vl``: ``Qwen2_5_VLVisionAttention.qkv/proj`` (l. 266-267), vision MLP
  ``Qwen2_5_VLMLP(bias=True).{gate,up,down}_proj`` (l. 90-92, 348); text attention
  (l. 625-628), ``Qwen2MLP`` (l. 556-558); patch embed Conv3d (l. 114), merger
  ``Sequential(Linear, GELU, Linear)`` (l. 190-193).
* ``qwen3_vl``: ``Qwen3VLVisionAttention.qkv/proj`` (l. 252-253), ``Qwen3VLVisionMLP.linear_fc1/2``
  (l. 83-84, 334); text attention (l. 484-495), ``Qwen3VLTextMLP`` (l. 549-551); patch embed
  Conv3d (l. 100), ``pos_embed`` Embedding (l. 639), ``merger`` and ``deepstack_merger_list``
  of ``Qwen3VLVisionPatchMerger`` whose linears are *also* named ``linear_fc1/2`` (l. 177, 179,
  648, 654).

Never adapted: ``lm_head``, ``embed_tokens``, norms, the patch embedding (a Conv3d), Qwen3-VL's
learned ``pos_embed``, and the vision-language mergers (``visual.merger``, Qwen3-VL's
``visual.deepstack_merger_list``). The mergers are left out on purpose: the paper adapts "the
vision encoder's linear layers", and Qwen's own description splits the model into vision
encoder (the ViT blocks), MLP vision-language merger and LLM, so the merger is the projector,
not the encoder. This also keeps the ablation the same across generations (Qwen2/2.5's merger,
``merger.mlp.0/2``, was never matched by name), and it is why the vision pattern is anchored on
``visual.blocks.<j>.``: matching the bare name ``linear_fc1`` would silently adapt Qwen3-VL's
merger and its deepstack mergers (three in the 8B) as well.

Qwen3-VL-MoE (``qwen3_vl_moe``, not one of the paper's models) gets attention adapters only on
its MoE layers: the experts are fused ``nn.Parameter`` tensors (``mlp.experts.gate_up_proj`` /
``down_proj``), not ``nn.Linear`` modules, and the router ``mlp.gate`` is not matched either.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["VISION_BLOCK_TARGETS", "lora_target_regex"]

#: Linear layers inside one vision-encoder block (``visual.blocks.<j>.``), per generation.
VISION_BLOCK_TARGETS: dict[str, tuple[str, ...]] = {
    "qwen2_vl": ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"),
    "qwen2_5_vl": ("attn.qkv", "attn.proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"),
    "qwen3_vl": ("attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2"),
}


def _alternation(names: Iterable[str]) -> str:
    return "|".join(re.escape(n) for n in sorted(set(names)))


def lora_target_regex(target_modules: Iterable[str], train_vision: bool) -> str:
    """PEFT ``target_modules`` regex: the named language-model modules, and the vision encoder's if asked.

    Qwen-VL's vision blocks reuse names such as ``gate_proj`` (Qwen2.5-VL), so plain names
    would silently adapt the vision encoder too; the language part excludes every module
    under ``visual``. With ``train_vision`` the vision part adds every vision block's linear
    layers (attention and MLP, in each generation's naming; see the module docstring),
    whatever ``target_modules`` says, and never the mergers.

    Args:
        target_modules: language-model module names (the last component, or a dotted tail).
        train_vision: also adapt the vision encoder (the paper's vision ablation).

    Returns:
        a regex PEFT matches against each full module name (``re.fullmatch``).
    """
    language = rf"^(?!.*visual).*\.({_alternation(target_modules)})$"
    if not train_vision:
        return language
    block = _alternation(t for targets in VISION_BLOCK_TARGETS.values() for t in targets)
    vision = rf"^(?:.*\.)?visual\.blocks\.\d+\.({block})$"
    return f"(?:{language})|(?:{vision})"
