"""The ``tiny-base`` recipe: pre-train the random ``tiny`` VLM into a miniature pre-trained VLM.

A random-weight model cannot learn the block-tower tasks by RL (its vision carries
nothing GRPO can use), and a real VLM would not start random either. This recipe
turns :mod:`agents.tiny`'s random Qwen2.5-VL (1.2M parameters, 64 image tokens per
256x256 image) into the base that ``cubeworld train`` starts from, in three seeded
stages, training with AdamW on CPU, loss = mean NLL of the answer tokens (and the
closing ``<|im_end|>``) given image + prompt, by teacher forcing. The data are
generic block scenes (:func:`generic_scene`: 1-5 unit cubes, one stack whose levels
are aligned or shifted by up to 0.95 block edges, standing at the image centre in
half of the scenes, the other cubes on the floor), rendered by the environments' own
camera, with perception questions, never the tasks' questions:

1. **Shift** (``shift_steps`` batches of ``shift_batch_size``, every weight):
   "Is the top block of the stack shifted to the left or to the right of the block
   below it?" -> ``<answer>left</answer>``. A cube is about one 28 px image token
   wide, so the shift is a sub-token detail. This stage comes first and alone for a
   measured reason: as a quarter to half of mixed batches the question stayed at
   chance for 750-1000 steps in three builds; given whole batches it is learned in
   about 200 steps.
2. **Perception** (every weight, lower learning rate: at 2e-3 the mixed questions
   erased the shift): "How many blocks ...?" -> ``<answer>3</answer>``; "Name the
   colours ... from top to bottom." -> ``<answer>green, blue, red</answer>``; "Give the
   bounding box of the blue block in image pixels." -> ``<answer>(x1, y1), (x2, y2)</answer>``
   (Qwen-VL grounding style, :func:`cube_bbox`); and the shift question again.
3. **Format** on every task: the four environments' prompts (and the Lerer
   real-photo prompt, :data:`envs.prompts.LERER`, on rendered towers) with a
   uniformly random legal answer as the target (:func:`envs.answers.sample_legal_answer`),
   so the base answers in format but knows no task physics; a fraction ``replay`` of
   each batch stays perception, and the vision encoder is frozen: random answers carry
   no image signal, and training the vision on them erased what perception taught
   (measured in an earlier build: the offset probe's R^2 fell from 0.90 to 0.65).

What the shipped seed-0 build (recipe 3: the papers' prompts, 500 shift steps) learns
(``--report --episodes 64``, the evaluation decoding of every command: temperature 1, min_p
0.1): legal answers 0.92-1.0 on the four tasks, rewards at the random baselines (0.58, 0.51,
-0.66, -2.03). Shift accuracy 0.96 on held-out generic scenes, count 0.75; pixel boxes get
the rows (y error 12 px against 19 px image-blind) but not the columns (26 px against 25;
absolute horizontal position is hard for this architecture: no absolute position
embedding, and M-RoPE gives the image columns its lowest rotary frequencies). The top cube's
offset on ``TopBlockXOnly-v0`` is linearly decodable (:func:`offset_probe`, held-out R^2
0.986 from the image tokens, 0.987 from the last prompt token; the shift-free recipe 1:
0.82 and 0.70): competence without performance, which GRPO then turns into performance.
With the prompts the tokenizer changes, so the same recipe draws other weights: with 300
shift steps (recipe 2's budget) this build reached shift accuracy 0.89 and R^2 0.979 /
0.975, and the quickstart beat the shortcut in one of two seeds, hence 500.

``cubeworld pretrain --out agents/data/tiny-base`` (alias: ``python -m training.pretrain``) rebuilds
the shipped seed-0 model (about 13 minutes on 2 CPU cores); ``--report`` adds the checks
(format, perception, offset probe). The same seed and settings give the same weights on the
same machine and thread count.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from agents.chat import chat_prompt
from envs.answers import sample_legal_answer
from envs.atomic import atomic_directory
from envs.physics import World
from envs.prompts import LERER
from envs.render import camera_matrices
from envs.scenes import PALETTE, RED, Cube, Scene
from envs.tower_env import TASKS, TowerEnv

__all__ = ["build_tiny_base", "ensure_tiny_base", "generic_scene", "cube_bbox", "perception_example",
           "perception_report", "offset_probe", "PERCEPTION_STEPS", "FORMAT_STEPS", "BATCH_SIZE"]

PERCEPTION_STEPS = 500
SHIFT_STEPS = 500
SHIFT_BATCH_SIZE = 32
SHIFT_LR = 1e-3
FORMAT_STEPS = 400
BATCH_SIZE = 16
LR = 5e-4  # after the shift stage: at 2e-3 the mixed questions erased what it taught (measured)
FORMAT_LR = 5e-4
REPLAY = 0.25
VISION_PREFIX = "model.visual."

IMAGE_SIZE = 256
COLOURS: dict[str, tuple[int, int, int]] = {**PALETTE, "red": RED}
QUESTIONS = {
    "count": "How many blocks are there in the image?",
    "colours": "Name the colours of the blocks from top to bottom.",
    "bbox": "Give the bounding box of the {colour} block in image pixels.",
    "shift": "Is the top block of the stack shifted to the left or to the right of the block below it?",
}
QUESTION_WEIGHTS = {"count": 0.2, "colours": 0.2, "bbox": 0.35, "shift": 0.25}
CENTRED = 0.5  # share of scenes whose stack stands at the image centre, x = 0

Example = tuple[str, np.ndarray, str, str]  # (user text, image, answer, kind)


# -- data ------------------------------------------------------------------------------------

def generic_scene(rng: np.random.Generator) -> Scene:
    """1-5 unit cubes of distinct colours: a stack at x in [-1.5, 1.5] whose levels are aligned
    (p = 0.4) or shifted by 0.05-0.95 edges, the rest on the floor at x in [-3.9, 3.9], not touching."""
    while True:
        n = int(rng.integers(1, 6))
        k = int(rng.integers(1, n + 1))
        names = list(COLOURS)
        colours = [COLOURS[names[i]] for i in rng.choice(len(names), size=n, replace=False)]
        x = 0.0 if rng.random() < CENTRED else float(rng.uniform(-1.5, 1.5))
        cubes = []
        for i in range(k):
            if i and rng.random() >= 0.4:
                x += float(rng.uniform(0.05, 0.95)) * (1 if rng.random() < 0.5 else -1)
            cubes.append(Cube(x, 0.0, i + 0.5, 1.0, colours[i]))
        for colour in colours[k:]:
            for _ in range(50):
                fx = float(rng.uniform(-3.9, 3.9))
                if all(abs(fx - c.x) >= 1.1 for c in cubes if c.z < 1.0):
                    cubes.append(Cube(fx, 0.0, 0.5, 1.0, colour))
                    break
        if len(cubes) == n:  # every floor cube found a place (else draw again)
            return Scene("generic", tuple(cubes), n - 1)


def cube_bbox(cube: Cube, size: int = IMAGE_SIZE) -> tuple[int, int, int, int]:
    """Pixel box ``(x1, y1, x2, y2)`` of ``cube``'s 8 projected corners in a ``size`` image, clipped."""
    view, proj = camera_matrices(size, size)
    h = cube.size / 2
    corners = np.array([[cube.x + dx, cube.y + dy, cube.z + dz, 1.0]
                        for dx in (-h, h) for dy in (-h, h) for dz in (-h, h)])
    clip = (proj @ view @ corners.T).T
    ndc = clip[:, :3] / clip[:, 3:4]
    cols, rows = (ndc[:, 0] + 1) / 2 * size, (1 - ndc[:, 1]) / 2 * size
    box = np.clip(np.rint([cols.min(), rows.min(), cols.max(), rows.max()]), 0, size - 1)
    return tuple(int(v) for v in box)  # type: ignore[return-value]


def _shifted_pairs(scene: Scene) -> list[tuple[Cube, Cube]]:
    """``[(top cube of the stack, the cube it rests on)]`` if the stack has >= 2 levels and its top
    is not aligned with its support, else ``[]``."""
    top = max(scene.cubes, key=lambda c: c.z)
    below = [b for b in scene.cubes if abs(top.z - b.z - 1.0) < 1e-6 and abs(top.x - b.x) < 1.0]
    return [(top, below[0])] if below and top.x != below[0].x else []


def _colour_name(cube: Cube) -> str:
    return next(name for name, rgb in COLOURS.items() if tuple(rgb) == tuple(cube.color))


def perception_example(scene: Scene, image: np.ndarray, rng: np.random.Generator,
                       kind: str | None = None) -> Example:
    """A question about ``scene`` (count, colours top to bottom, or one cube's box) and its answer."""
    if kind is None:
        kinds = list(QUESTION_WEIGHTS)
        kind = kinds[int(rng.choice(len(kinds), p=list(QUESTION_WEIGHTS.values())))]
    if kind == "count":
        return QUESTIONS["count"], image, f"<answer>{len(scene.cubes)}</answer>", kind
    if kind == "colours":
        order = sorted(scene.cubes, key=lambda c: (-c.z, c.x))  # top to bottom, then left to right
        return QUESTIONS["colours"], image, f"<answer>{', '.join(_colour_name(c) for c in order)}</answer>", kind
    if kind == "shift":
        shifted = _shifted_pairs(scene)
        if not shifted:  # no stack, or an aligned one: ask something else
            return perception_example(scene, image, rng, "bbox")
        a, b = shifted[0]
        return (QUESTIONS["shift"], image, f"<answer>{'left' if a.x < b.x else 'right'}</answer>", kind)
    cube = scene.cubes[int(rng.integers(len(scene.cubes)))]
    x1, y1, x2, y2 = cube_bbox(cube, image.shape[1])
    return (QUESTIONS["bbox"].format(colour=_colour_name(cube)), image,
            f"<answer>({x1}, {y1}), ({x2}, {y2})</answer>", kind)


class _Data:
    """Seeded example streams: generic perception scenes and the four tasks' observations."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.world = World()
        self.envs = {task: TowerEnv(task) for task in TASKS}

    def perception(self, kind: str | None = None) -> Example:
        if kind is None:
            kinds = list(QUESTION_WEIGHTS)
            kind = kinds[int(self.rng.choice(len(kinds), p=list(QUESTION_WEIGHTS.values())))]
        for _ in range(50):  # a shift question needs a scene with a shifted stack
            scene = generic_scene(self.rng)
            if kind != "shift" or _shifted_pairs(scene):
                break
        self.world.load(scene)
        return perception_example(scene, self.world.render(IMAGE_SIZE, IMAGE_SIZE), self.rng, kind)

    def format(self, task: str | None = None) -> Example:
        tasks = [*TASKS, "lerer"]
        task = task or tasks[int(self.rng.integers(len(tasks)))]
        if task == "lerer":  # the real-photo question (envs.prompts.LERER) on rendered towers
            obs, _ = self.envs["top_block_stability"].reset(seed=int(self.rng.integers(2**31)))
            return LERER, obs["image"], sample_legal_answer("binary", self.rng), "format:lerer"
        obs, _ = self.envs[task].reset(seed=int(self.rng.integers(2**31)))
        return obs["prompt"], obs["image"], sample_legal_answer(TASKS[task][1], self.rng), f"format:{task}"

    def close(self) -> None:
        self.world.close()
        for env in self.envs.values():
            env.close()


# -- training --------------------------------------------------------------------------------

def _train_stage(model, processor, make_batch: Callable[[], list[Example]], steps: int, lr: float,
                 desc: str, progress: bool) -> dict[str, float]:
    """AdamW with warm-up and cosine decay over ``steps`` batches; returns final loss per kind (EMA)."""
    import torch
    from tqdm.auto import tqdm

    from agents.backends.hf import batch_teacher_forced_logprobs

    if steps <= 0:
        return {}
    tok = processor.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * s / steps))))
    ema: dict[str, float] = {}
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, dynamic_ncols=True)
    for _ in bar:
        batch = make_batch()
        prompts = [chat_prompt(processor, text) for text, _, _, _ in batch]
        completions = [tok.encode(answer) + [eos] for _, _, answer, _ in batch]
        logps = batch_teacher_forced_logprobs(model, processor, prompts, [im for _, im, _, _ in batch], completions)
        loss = -torch.cat(logps).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        for (_, _, _, kind), lp in zip(batch, logps):
            kind = kind.split(":")[0]
            value = -float(lp.detach().mean())
            ema[kind] = value if kind not in ema else 0.95 * ema[kind] + 0.05 * value
        bar.set_postfix(loss=f"{loss.item():.3f}", **{k: f"{v:.2f}" for k, v in sorted(ema.items())})
    model.eval()
    return ema


def build_tiny_base(out_dir: str | os.PathLike, seed: int = 0, perception_steps: int = PERCEPTION_STEPS,
                    shift_steps: int = SHIFT_STEPS, format_steps: int = FORMAT_STEPS,
                    batch_size: int = BATCH_SIZE, shift_batch_size: int = SHIFT_BATCH_SIZE, lr: float = LR,
                    format_lr: float = FORMAT_LR, replay: float = REPLAY, freeze_vision_in_format: bool = True,
                    progress: bool = True, threads: int | None = None) -> pathlib.Path:
    """Build ``tiny-base`` into ``out_dir`` (replaced atomically) and return it as a Path.

    Starts from ``agents.tiny.build_tiny(seed=seed)``; all data come from
    ``numpy.random.default_rng(seed)``. The folder loads with plain
    ``AutoModelForImageTextToText.from_pretrained`` / ``VLMAgent.from_pretrained``
    and holds ``pretrain.json`` (settings, final losses, build seconds). ``freeze_vision_in_format``:
    stage 2 leaves the vision encoder as stage 1 left it (see the module docstring). ``threads``: torch CPU
    threads for the build (restored after; None keeps torch's setting). Bitwise reproducibility
    needs the same thread count and CPU kind: reductions are summed in another order otherwise.

    Raises:
        ValueError: a negative step count, ``batch_size`` < 1, or ``replay`` outside [0, 1].
    """
    if min(perception_steps, shift_steps, format_steps) < 0 or min(batch_size, shift_batch_size) < 1 or not 0 <= replay <= 1:
        raise ValueError(f"need steps >= 0, batch_size >= 1 and 0 <= replay <= 1; got perception_steps="
                         f"{perception_steps}, shift_steps={shift_steps}, format_steps={format_steps}, "
                         f"batch_size={batch_size}, replay={replay}")
    import torch
    from transformers import AutoModelForImageTextToText

    from agents.tiny import build_tiny
    from agents.tiny_base import RECIPE_VERSION
    from agents.vlm import load_processor

    start, cpu_start = time.time(), time.process_time()
    out = pathlib.Path(out_dir)
    rng = np.random.default_rng(seed)
    data = _Data(rng)
    threads_before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with atomic_directory(out) as tmp:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                build_tiny(tmp, seed=seed)
                processor = load_processor(str(tmp))
                model = AutoModelForImageTextToText.from_pretrained(tmp, dtype=torch.float32, use_safetensors=True)
                n_replay = round(replay * batch_size)
                # Which way a stack's top overhangs is a sub-token detail (a cube is about one 28 px image
                # token wide): it is learned only when it has whole batches to itself, so it comes first
                # (at a quarter to half of mixed batches it stayed at chance for 750-1000 steps); the mixed stage replays it.
                losses = {"shift": _train_stage(model, processor, lambda: [data.perception("shift") for _ in range(
                    shift_batch_size)], shift_steps, SHIFT_LR, "shift", progress)}
                losses["perception"] = _train_stage(model, processor, lambda: [data.perception() for _ in range(batch_size)],
                                                    perception_steps, lr, "perception", progress)
                # Random answers carry no image signal: their gradients only blur the vision, so it rests.
                vision = [p for name, p in model.named_parameters() if name.startswith(VISION_PREFIX)]
                for p in vision:
                    p.requires_grad_(not freeze_vision_in_format)
                losses["format"] = _train_stage(model, processor, lambda: [data.perception() for _ in range(n_replay)]
                                                + [data.format() for _ in range(batch_size - n_replay)],
                                                format_steps, format_lr, "format", progress)
                for p in vision:
                    p.requires_grad_(True)
            model.save_pretrained(tmp, safe_serialization=True)
            processor.save_pretrained(tmp)
            settings = {"recipe_version": RECIPE_VERSION, "seed": seed, "perception_steps": perception_steps,
                        "shift_steps": shift_steps, "shift_batch_size": shift_batch_size, "shift_lr": SHIFT_LR,
                        "format_steps": format_steps, "batch_size": batch_size, "lr": lr, "format_lr": format_lr, "replay": replay,
                        "freeze_vision_in_format": freeze_vision_in_format,
                        "torch_threads": torch.get_num_threads()}
            (tmp / "pretrain.json").write_text(json.dumps(
                {"recipe": "training.pretrain.build_tiny_base", "settings": settings, "final_loss_ema": losses,
                 "build_seconds": round(time.time() - start, 1),
                 "cpu_seconds": round(time.process_time() - cpu_start, 1)}, indent=1) + "\n")
            for f in [tmp, *tmp.iterdir()]:  # mkdtemp / safetensors leave owner-only modes
                f.chmod(0o755 if f.is_dir() else 0o644)
    finally:
        torch.set_num_threads(threads_before)
        data.close()
    return out


def ensure_tiny_base(seed: int = 0, progress: bool = True) -> pathlib.Path:
    """The ``tiny-base`` folder for ``seed`` (shipped or cached), built into the cache at the default budget if missing."""
    from agents.tiny_base import cache_path, tiny_base_path

    try:
        return tiny_base_path(seed)
    except FileNotFoundError:
        return build_tiny_base(cache_path(seed), seed=seed, progress=progress)


# -- checks ----------------------------------------------------------------------------------

def perception_report(model, processor, n: int = 96, seed: int = 12345) -> dict[str, float]:
    """Greedy answers to ``n`` held-out generic scenes per question kind.

    Returns count accuracy, colour-order exact match, and for boxes the parse rate,
    mean absolute corner error (pixels) and mean IoU.
    """
    import re

    from agents.backends.base import SamplingParams
    from agents.backends.hf import HFBackend

    data = _Data(np.random.default_rng(seed))
    backend = HFBackend(model, processor, batch_size=32)
    params = SamplingParams(temperature=0.0, max_new_tokens=32)
    report: dict[str, float] = {}
    try:
        for kind in QUESTIONS:
            examples = [data.perception(kind) for _ in range(n)]
            got = backend.generate([chat_prompt(processor, q) for q, _, _, _ in examples],
                                   [im for _, im, _, _ in examples], params)
            texts = [g[0].text.strip() for g in got]
            if kind != "bbox":
                report[f"{kind}_accuracy"] = float(np.mean([t == a for t, (_, _, a, _) in zip(texts, examples)]))
                continue
            wants = np.array([[int(v) for v in re.findall(r"\d+", a)] for _, _, a, _ in examples])
            errors, ious = [], []
            for text, want in zip(texts, wants):
                have = [int(v) for v in re.findall(r"-?\d+", text)]
                if len(have) != 4 or not text.startswith("<answer>") or not text.endswith("</answer>"):
                    continue
                errors.append(np.abs(np.subtract(have, want)))
                ix = max(0, min(have[2], want[2]) - max(have[0], want[0]))
                iy = max(0, min(have[3], want[3]) - max(have[1], want[1]))
                area = lambda b: max(0, b[2] - b[0]) * max(0, b[3] - b[1])  # noqa: E731
                ious.append(ix * iy / max(1, area(have) + area(want) - ix * iy))
            err = np.array(errors, dtype=float).reshape(-1, 4)
            report["bbox_parse_rate"] = len(errors) / n
            report["bbox_x_error_px"] = float(err[:, 0::2].mean()) if errors else float("nan")
            report["bbox_y_error_px"] = float(err[:, 1::2].mean()) if errors else float("nan")
            report["bbox_mean_iou"] = float(np.mean(ious)) if ious else float("nan")
            # The image-blind reference: always answering the mean box of these examples.
            blind = np.abs(wants - wants.mean(0))
            report["blind_x_error_px"], report["blind_y_error_px"] = float(blind[:, 0::2].mean()), float(blind[:, 1::2].mean())
    finally:
        data.close()
    return report


def offset_probe(model, processor, n_scenes: int = 300, seed: int = 100_000,
                 test_fraction: float = 1 / 3) -> dict[str, float]:
    """Held-out R^2 of a ridge regression from hidden states to the top cube's offset.

    ``TopBlockXOnly-v0`` scenes (seeds ``seed..seed+n_scenes-1``) with the task's prompt;
    features: the last layer's hidden states mean-pooled over the 64 image tokens
    (``image_r2``), and the last prompt token's (``last_token_r2``). Ridge with the
    penalty chosen by cross-validation on the training part (scikit-learn ``RidgeCV``).
    """
    import torch
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from agents.backends.hf import processor_inputs

    env = TowerEnv("top_block_x_only")
    obs, offsets = [], []
    for s in range(seed, seed + n_scenes):
        o, info = env.reset(seed=s)
        obs.append(o)
        offsets.append(info["offset"])
    env.close()
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    pooled, last = [], []
    with torch.no_grad():
        for i in range(0, n_scenes, 32):
            chunk = obs[i:i + 32]
            inputs = processor_inputs(processor, [chat_prompt(processor, o["prompt"]) for o in chunk],
                                       [o["image"] for o in chunk], next(model.parameters()).device)
            hidden = model(**inputs, use_cache=False, output_hidden_states=True).hidden_states[-1].float()
            mask = (inputs["input_ids"] == image_id).unsqueeze(-1).float()
            pooled.append(((hidden * mask).sum(1) / mask.sum(1)).cpu().numpy())
            last.append(hidden[:, -1].cpu().numpy())  # left padding: the last position is every row's last token
    y = np.asarray(offsets)
    n_test = int(round(n_scenes * test_fraction))
    result = {}
    for name, feats in (("image_r2", np.concatenate(pooled)), ("last_token_r2", np.concatenate(last))):
        probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 4, 15)))
        probe.fit(feats[n_test:], y[n_test:])
        result[name] = float(probe.score(feats[:n_test], y[:n_test]))
    return result


def _report(path: pathlib.Path, n_episodes: int) -> dict[str, Any]:
    from agents.vlm import VLMAgent
    from envs import ENV_IDS
    from evaluation import evaluate

    agent = VLMAgent.from_pretrained(str(path), device="cpu", seed=0)
    report: dict[str, Any] = {"perception": perception_report(agent.model, agent.processor),
                              "offset_probe": offset_probe(agent.model, agent.processor), "envs": {}}
    for env_id in ENV_IDS:
        # One batch: a seeded agent re-seeds every act() call, so batches would repeat their samples.
        res = evaluate(agent, env_id, n_episodes=n_episodes, batch_size=n_episodes)
        report["envs"][env_id] = {"legal_rate": res.legal_rate, "mean_reward": res.mean_reward, "ci95": res.ci95}
    return report


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The recipe's options (``cubeworld pretrain`` and ``python -m training.pretrain`` share them)."""
    parser.add_argument("--out", help="output folder (default: the tiny-base cache folder of --seed)")
    for flag, default in (("--seed", 0), ("--shift-steps", SHIFT_STEPS), ("--perception-steps", PERCEPTION_STEPS),
                          ("--format-steps", FORMAT_STEPS), ("--batch-size", BATCH_SIZE)):
        parser.add_argument(flag, type=int, default=default, help=f"(default: {default})")
    parser.add_argument("--lr", type=float, default=LR, help="peak learning rate of the perception stage")
    parser.add_argument("--format-lr", type=float, default=FORMAT_LR, help="peak learning rate of the format stage")
    parser.add_argument("--replay", type=float, default=REPLAY, help="share of each format batch kept perception")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--report", action="store_true", help="then check format, perception and the offset probe")
    parser.add_argument("--episodes", type=int, default=64, help="episodes per environment for --report")
    return parser


def run(args: argparse.Namespace) -> int:
    """Build the tiny base that parsed :func:`add_arguments` options describe; print where and the losses."""
    from agents.tiny_base import cache_path

    out = pathlib.Path(args.out) if args.out else cache_path(args.seed)
    start = time.time()
    path = build_tiny_base(out, seed=args.seed, perception_steps=args.perception_steps, shift_steps=args.shift_steps,
                           format_steps=args.format_steps, batch_size=args.batch_size, lr=args.lr,
                           format_lr=args.format_lr, replay=args.replay, threads=args.threads or None)
    meta = json.loads((path / "pretrain.json").read_text())
    size = sum(f.stat().st_size for f in path.iterdir()) / 2**20
    print(f"\ntiny-base written to {path} ({size:.1f} MiB) in {time.time() - start:.0f} s "
          f"({meta['cpu_seconds']:.0f} CPU-seconds) on {meta['settings']['torch_threads']} torch threads")
    for stage, losses in meta["final_loss_ema"].items():
        print(f"  {stage:<10} final loss " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(losses.items())))
    if args.report:
        print(json.dumps(_report(path, args.episodes), indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__.split("\n")[0])
    return run(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
