"""``cubeworld probe``: layer-wise linear probes of stability and offset (:mod:`evaluation.probes`).

Also home of the model list that ``cubeworld probe`` and ``cubeworld attention``
share (:class:`ModelSpec`, :func:`add_model_arguments`). A model is given as

* ``--model MODEL``: a VLM name or folder (``tiny``, ``tiny-base``, a hub id, a path); its label is MODEL;
* ``--model LABEL=MODEL``: the same, labelled LABEL in tables and plots;
* ``--model [LABEL=]MODEL+adapter=ADAPTER_DIR``: with a PEFT LoRA adapter folder loaded on top
  (the agent specs' syntax, :data:`agents.factory.ADAPTER_SEPARATOR`, the one adapter syntax of
  every command).

Repeat ``--model`` to compare models, e.g.
``cubeworld probe --model tiny --model base=tiny-base --model rl=tiny-base+adapter=runs/grpo/checkpoints/step-000200 -n 600 --out probes/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

__all__ = ["ModelSpec", "parse_model_spec", "add_model_arguments", "add_subcommand"]


@dataclasses.dataclass
class ModelSpec:
    """One model to load: ``label`` (tables, plots), ``model`` (name or folder), ``adapter`` (folder or None)."""

    label: str
    model: str
    adapter: str | None = None

    def load(self, device: str | None = None) -> Any:
        """The :class:`agents.vlm.VLMAgent` (``from_pretrained(model, adapter=adapter, device=device)``).

        Raises:
            ValueError: the model or adapter cannot be loaded (the message names it).
        """
        from agents.vlm import VLMAgent

        try:
            return VLMAgent.from_pretrained(self.model, adapter=self.adapter, device=device)
        except OSError as exc:  # FileNotFoundError included: no such folder / checkpoint
            what = f"model {self.model!r}" + (f" with adapter {self.adapter!r}" if self.adapter else "")
            raise ValueError(f"cannot load {what} for {self.label!r}: {exc}") from exc


def parse_model_spec(text: str) -> ModelSpec:
    """``[LABEL=]MODEL[+adapter=ADAPTER_DIR]`` -> :class:`ModelSpec` (the adapter syntax of
    :func:`agents.factory.split_adapter`; the label defaults to the text after ``LABEL=``).

    Raises:
        ValueError: an empty label, model or adapter part.
    """
    from agents.factory import ADAPTER_SEPARATOR, split_adapter

    head = text.split(ADAPTER_SEPARATOR, 1)[0]  # a label's "=" comes before the adapter's
    label, sep, _ = head.partition("=")
    rest = text[len(label) + 1:] if sep else text
    try:
        model, adapter = split_adapter(rest)
    except ValueError:
        model, adapter = "", None
    if (sep and not label) or not model or rest.endswith(ADAPTER_SEPARATOR):
        raise ValueError(f"bad --model {text!r}: use MODEL, LABEL=MODEL or LABEL=MODEL{ADAPTER_SEPARATOR}ADAPTER_DIR "
                         f"(e.g. tiny-base, base=tiny-base, rl=tiny-base{ADAPTER_SEPARATOR}runs/grpo/checkpoints/step-000200)")
    return ModelSpec(label=label if sep else rest, model=model, adapter=adapter)


class _ModelAction(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        specs = list(getattr(namespace, self.dest, None) or [])
        try:
            spec = parse_model_spec(values)
        except ValueError as exc:
            parser.error(str(exc))
        if any(s.label == spec.label for s in specs):
            parser.error(f"two models are labelled {spec.label!r}; name them apart with LABEL=MODEL")
        specs.append(spec)
        setattr(namespace, self.dest, specs)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the repeatable ``--model`` and ``--device`` (dest ``models``: ModelSpecs)."""
    parser.add_argument("--model", dest="models", action=_ModelAction, metavar="[LABEL=]MODEL[+adapter=ADAPTER_DIR]",
                        help="a VLM name or folder (tiny, tiny-base, hub id, path), optionally labelled and with a "
                        "PEFT adapter folder; repeat to compare models")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda when available)")


def _probe(args: argparse.Namespace) -> int:
    from evaluation.probes import extract_features, fit_probes, probe_scenes, save_probe_results

    if not args.models:
        raise ValueError("no model to probe: give at least one --model (e.g. --model tiny-base)")
    if args.folds < 2 or args.scenes < 2 * args.folds:
        raise ValueError(f"need --folds >= 2 and -n >= 2 x folds scenes, got --folds {args.folds} and -n {args.scenes}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    start = time.perf_counter()
    data = probe_scenes(args.scenes, seed=args.seed, env_id=args.env)
    print(f"{args.scenes} scenes of {args.env} (seeds {args.seed}..{args.seed + args.scenes - 1}): "
          f"{data.stability.mean():.1%} stable, offset std {data.offset.std():.3f} block edges")
    results = {}
    for spec in args.models:
        agent = spec.load(args.device)
        feats = extract_features(agent.model, agent.processor, data.observations,
                                 batch_size=args.batch_size, pool=args.pool)
        del agent
        meta = {"model": spec.model, "adapter": spec.adapter, "env_id": args.env, "pool": args.pool,
                "scene_seeds": [args.seed, args.seed + args.scenes - 1], "hidden_size": int(feats.shape[2])}
        results[spec.label] = fit_probes(feats, data.stability, data.offset, n_folds=args.folds,
                                         seed=args.cv_seed, C=args.C, label=spec.label, meta=meta)
        print(results[spec.label].table())
    settings = {"n_scenes": args.scenes, "seed": args.seed, "env_id": args.env, "n_folds": args.folds,
                "cv_seed": args.cv_seed, "C": args.C, "pool": args.pool,
                "seconds": round(time.perf_counter() - start, 1)}
    json_path, png_path = save_probe_results(results, args.out, settings)
    print(f"results written to {json_path} and {png_path}")
    return 0


def add_subcommand(subparsers: Any) -> None:
    """Register ``cubeworld probe``."""
    from evaluation.probes import DEFAULT_PROBE_SEED

    p = subparsers.add_parser(
        "probe",
        help="layer-wise linear probes of stability and top-cube offset from a VLM's hidden states",
        description="Run each model over N top-block scenes, mean-pool every layer's hidden states over the "
        "image tokens, and cross-validate an L2 logistic regression for stability (accuracy) and a Bayesian "
        "linear regression for the top cube's x offset (R^2) per layer (the paper's A.6). Writes "
        "OUT/probes.json and OUT/probes.png. Models: --model [LABEL=]MODEL[+adapter=ADAPTER_DIR] (repeatable).",
    )
    add_model_arguments(p)
    p.add_argument("-n", "--scenes", type=int, default=600, help="scenes (default: 600)")
    p.add_argument("--seed", type=int, default=DEFAULT_PROBE_SEED,
                   help=f"first scene seed (default: {DEFAULT_PROBE_SEED}, held out from training)")
    p.add_argument("--env", default="TopBlockStability-v0",
                   help="environment of the scenes and prompt (default: TopBlockStability-v0)")
    p.add_argument("--folds", type=int, default=10, help="cross-validation folds (default: 10)")
    p.add_argument("--cv-seed", type=int, default=0, help="seed of the fold shuffles (default: 0)")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength of the logistic regression (default: 1)")
    p.add_argument("--pool", choices=("image_mean", "last_token"), default="image_mean",
                   help="features: mean over the image tokens (default) or the last prompt token")
    p.add_argument("--batch-size", type=int, default=32, help="scenes per forward pass (default: 32)")
    p.add_argument("--out", default="probes", help="output folder (default: probes)")
    p.set_defaults(func=_probe)
