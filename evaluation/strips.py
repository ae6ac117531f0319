"""Trajectory strips: one multi-step episode as one image, the agent's views left to right.

:func:`trajectory_strip` draws each turn's image with its answer, reward and outcome
underneath, and the prompt the agent read next (the feedback sentence and the
instruction to try again), so a reader sees what the agent saw and did. It depends on
numpy and Pillow only (Pillow's default font), and the same input gives the same pixels
on one Pillow version; ``cubeworld demo`` writes strips of example episodes, and
training can log the same arrays to TensorBoard (``add_image(..., dataformats="HWC")``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["trajectory_strip", "record_episode", "STRIP_TURN_KEYS"]

STRIP_TURN_KEYS = ("image", "prompt", "answer", "reward", "outcome")
"""Keys every turn dict needs; ``"success"`` (bool) is optional and frames the panel green."""

_BACKGROUND = (255, 255, 255)
_TEXT = (20, 20, 20)
_MUTED = (90, 90, 90)
_SUCCESS = (30, 150, 60)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, ImportError, OSError):  # Pillow < 10.1 or without FreeType: the bitmap font
        return ImageFont.load_default()


def _clean(text: Any) -> str:
    """One line of printable ASCII: whitespace runs become one space, other characters ``?``.

    Model output can hold any character; the default bitmap font draws Latin-1 only.
    """
    words = str(text).split()
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in " ".join(words))


def _wrap(text: str, font, width: int, max_lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels, at most ``max_lines`` lines (the last ends ``...`` if cut)."""
    def fits(s: str) -> bool:
        return font.getlength(s) <= width

    lines: list[str] = []
    line = ""
    for word in text.split(" "):
        candidate = f"{line} {word}" if line else word
        if fits(candidate):
            line = candidate
            continue
        if line:
            lines.append(line)
        while not fits(word):  # a word wider than the panel: break it by characters
            cut = 1
            while cut < len(word) and fits(word[:cut + 1]):
                cut += 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and not fits(last + "..."):
            last = last[:-1]
        lines = lines[:max_lines - 1] + [last + "..."]
    return lines


def _fit(image: np.ndarray, size: int) -> Image.Image:
    """``image`` scaled (aspect kept, bilinear) and centred on a ``size`` x ``size`` white square."""
    pil = Image.fromarray(image)
    scale = size / max(pil.width, pil.height)
    w, h = max(1, round(pil.width * scale)), max(1, round(pil.height * scale))
    if (w, h) != pil.size:
        pil = pil.resize((w, h), Image.Resampling.BILINEAR)
    square = Image.new("RGB", (size, size), _BACKGROUND)
    square.paste(pil, ((size - w) // 2, (size - h) // 2))
    return square


def _check(turns: Sequence[Mapping[str, Any]]) -> None:
    if len(turns) == 0:
        raise ValueError("turns is empty; give at least one turn dict with keys " + ", ".join(STRIP_TURN_KEYS))
    for k, turn in enumerate(turns):
        missing = [key for key in STRIP_TURN_KEYS if key not in turn]
        if missing:
            raise ValueError(f"turn {k} lacks {missing}; every turn needs {list(STRIP_TURN_KEYS)}")
        image = np.asarray(turn["image"])
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"turn {k}: image must be (H, W, 3) uint8, got shape {image.shape} dtype {image.dtype}")


def trajectory_strip(
    turns: Sequence[Mapping[str, Any]],
    image_size: int = 256,
    final_image: np.ndarray | None = None,
    font_size: int = 12,
    max_answer_lines: int = 3,
    max_prompt_lines: int = 6,
    gap: int = 8,
) -> np.ndarray:
    """Draw one episode: every turn's image left to right, its answer, reward and outcome below.

    Under turn k's image: ``turn k``, the answer (wrapped, at most ``max_answer_lines``
    lines), ``reward R  outcome``, and, when a turn k + 1 exists, ``next:`` and its prompt
    (the feedback sentence, wrapped, at most ``max_prompt_lines`` lines). Text is drawn
    with :func:`PIL.ImageFont.load_default` as printable ASCII (other characters as ``?``).

    Args:
        turns: one dict per turn, oldest first, with ``"image"`` ((H, W, 3) uint8: what the
            agent saw that turn), ``"prompt"`` (str), ``"answer"`` (str), ``"reward"``
            (float) and ``"outcome"`` (str); optional ``"success"`` (bool) frames the panel green.
        image_size: side of every panel in pixels; images are scaled to fit, aspect kept.
        final_image: optional (H, W, 3) uint8 image after the last answer (the simulated
            result), drawn as a last panel captioned ``result``.
        font_size: text size in pixels (the bitmap fallback font has one size).
        max_answer_lines, max_prompt_lines: text beyond them is cut with ``...``.
        gap: pixels between and around panels.

    Returns:
        uint8 array ``(H, W, 3)`` with ``W = n * image_size + (n + 1) * gap`` for
        ``n = len(turns)`` (+ 1 with ``final_image``), and ``H = image_size + 2 * gap`` plus
        the height of the tallest caption.

    Raises:
        ValueError: no turns, a turn without a required key, an image that is not
            (H, W, 3) uint8, or ``image_size`` / ``font_size`` < 1.
    """
    _check(turns)
    if image_size < 1 or font_size < 1:
        raise ValueError(f"image_size and font_size must be >= 1, got {image_size} and {font_size}")
    font = _font(font_size)
    line_height = int(font.getbbox("Ayg|")[3]) + 3
    captions: list[list[tuple[str, tuple[int, int, int]]]] = []
    for k, turn in enumerate(turns):
        lines = [(f"turn {k + 1}", _MUTED)]
        lines += [(s, _TEXT) for s in _wrap("answer: " + _clean(turn["answer"]), font, image_size,
                                            max_answer_lines)]
        lines.append((_clean(f"reward {float(turn['reward']):.2f}  {turn['outcome']}"), _TEXT))
        if k + 1 < len(turns):
            lines += [(s, _MUTED) for s in _wrap("next: " + _clean(turns[k + 1]["prompt"]), font, image_size,
                                                 max_prompt_lines)]
        captions.append(lines)
    panels = [np.asarray(t["image"]) for t in turns]
    if final_image is not None:
        final_image = np.asarray(final_image)
        if final_image.ndim != 3 or final_image.shape[2] != 3 or final_image.dtype != np.uint8:
            raise ValueError(f"final_image must be (H, W, 3) uint8, got shape {final_image.shape} "
                             f"dtype {final_image.dtype}")
        panels.append(final_image)
        captions.append([("result", _MUTED)])
    text_height = max(len(c) for c in captions) * line_height + gap
    width = len(panels) * image_size + (len(panels) + 1) * gap
    height = image_size + 2 * gap + text_height
    canvas = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for j, (pixels, caption) in enumerate(zip(panels, captions)):
        x = gap + j * (image_size + gap)
        canvas.paste(_fit(pixels, image_size), (x, gap))
        if j < len(turns) and turns[j].get("success"):
            draw.rectangle((x - 3, gap - 3, x + image_size + 2, gap + image_size + 2), outline=_SUCCESS, width=3)
        y = 2 * gap + image_size
        for text, colour in caption:
            draw.text((x, y), text, fill=colour, font=font)
            y += line_height
    return np.asarray(canvas, dtype=np.uint8).copy()


def record_episode(env: Any, agent: Any, seed: int, max_turns: int | None = None
                   ) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """Play one episode of ``env`` with ``agent`` and return the turns :func:`trajectory_strip` draws.

    Each turn the agent gets ``[{**obs, "info": info}]`` (the latest info, as
    :func:`evaluation.evaluate` passes it); the episode ends on ``terminated or truncated``.

    Args:
        env: a Gymnasium env; made with ``render_mode="rgb_array"`` the result image is returned.
        agent: anything with ``act(observations) -> list[str]``.
        seed: the ``reset`` seed.
        max_turns: turns at most (default ``env.unwrapped.max_turns``, else 1).

    Returns:
        ``(turns, final_image)``: turn dicts with :data:`STRIP_TURN_KEYS` plus ``"success"``,
        and ``env.render()`` after the last step ((H, W, 3) uint8; None without a render mode).

    Raises:
        RuntimeError: the episode had not ended after ``max_turns`` turns.
    """
    limit = int(max_turns or getattr(env.unwrapped, "max_turns", 1))
    obs, info = env.reset(seed=seed)
    turns: list[dict[str, Any]] = []
    for _ in range(limit):
        answer = agent.act([{**obs, "info": info}])[0]
        next_obs, reward, terminated, truncated, info = env.step(answer)
        turns.append({"image": obs["image"], "prompt": obs["prompt"], "answer": answer, "reward": float(reward),
                      "outcome": info["outcome"], "success": bool(info.get("success", False))})
        obs = next_obs
        if terminated or truncated:
            return turns, env.render() if env.render_mode == "rgb_array" else None
    raise RuntimeError(f"episode of seed {seed} still running after {limit} turns; the env must end it "
                       "(terminated or truncated) by its max_turns-th step")
