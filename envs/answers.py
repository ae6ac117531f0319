"""Reading a model's text answer: pure functions, no physics.

The answer is the content of the last complete ``<answer>...</answer>`` block
(tags matched case-insensitively; with nested tags, the innermost block). Every
``str`` is accepted and judged; nothing here raises on model output.

Answer formats (DESIGN.md section 2):

* ``binary``: ``Yes`` or ``No`` (any case, one optional trailing ``.`` or ``!``).
* ``true_false`` (``ShapeStacksStability-v0``): ``True`` or ``False``, read like ``binary``.
  :data:`BINARY_LABELS` gives each two-answer format's answers, the first asserting what
  the task's ``yes_means`` says (:mod:`envs.worlds`).
* ``x``: one integer (optional sign, decimal digits only: ``35.0`` and ``1e3``
  are not integers) in ``[-600, 600]``.
* ``xy``: two integers separated by a comma and/or whitespace: x in
  ``[-600, 600]``, up in ``[0, 1000]``; a negative up is ``below_floor``.
* ``colour_x`` (``TowerBuild-v0``): a colour word (letters, any case, returned in
  lower case) and one integer x in ``[-600, 600]``, separated by a comma and/or
  whitespace: ``green, -120``. Whether a cube of that colour can be lifted is the
  environment's judgement (outcome ``unknown_colour``), not the parser's.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "AnswerFormat", "ParsedAnswer", "parse_answer", "extract_answer", "sample_legal_answer",
    "X_RANGE", "UP_RANGE", "ANSWER_FORMATS", "MAX_COMPLETION_CHARS", "completion_space",
    "BINARY_LABELS", "is_binary",
]

AnswerFormat = Literal["binary", "true_false", "x", "xy", "colour_x"]
ANSWER_FORMATS = ("binary", "true_false", "x", "xy", "colour_x")
# The two-answer formats and their answers, in the order (first, second) that envs.rewards.binary_truth reads.
BINARY_LABELS: dict[str, tuple[str, str]] = {"binary": ("Yes", "No"), "true_false": ("True", "False")}

X_RANGE = (-600, 600)
UP_RANGE = (0, 1000)
# What the action space declares: a whole completion, long reasoning included. 2**17 characters
# hold 32k generated tokens at about 4 characters a token, the longest thinking budgets of
# current VLMs (the tiny base answers in 16 tokens); step() judges longer strings all the same.
MAX_COMPLETION_CHARS = 2**17

_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_CLOSE = re.compile(r"</answer>", re.IGNORECASE)
_INT = r"[+-]?[0-9]+"
_X = re.compile(rf"\s*({_INT})\s*")
_XY = re.compile(rf"\s*({_INT})\s*(?:,\s*|\s+)({_INT})\s*")
_COLOUR_X = re.compile(rf"\s*([A-Za-z]+)\s*(?:,\s*|\s+)({_INT})\s*")
_BINARY = {fmt: re.compile(rf"\s*({a}|{b})[.!]?\s*", re.IGNORECASE) for fmt, (a, b) in BINARY_LABELS.items()}
# Integers longer than this are out of range whatever their digits; checking the
# length first keeps int() away from 100k-digit strings (Python caps str->int).
_MAX_DIGITS = 7


@dataclass(frozen=True)
class ParsedAnswer:
    """The judgement of one answer string.

    Attributes:
        value: ``"Yes"``/``"No"`` (binary), ``"True"``/``"False"`` (true_false), ``int`` (x), ``(x, up)`` ints (xy),
            ``(colour, x)`` (colour_x: lower-case str, int), or None when the answer is not legal.
        outcome: None for a legal answer, else ``"unparseable"``,
            ``"out_of_range"`` or ``"below_floor"``.
        error: why the answer is not legal (None when legal).
    """

    value: str | int | tuple[int, int] | tuple[str, int] | None
    outcome: str | None = None
    error: str | None = None

    @property
    def legal(self) -> bool:
        return self.outcome is None



def completion_space() -> Any:
    """The environments' action space: ``gymnasium.spaces.Text`` of 0 to :data:`MAX_COMPLETION_CHARS`
    characters of ``string.printable`` (newlines and tabs included), so a long reasoning completion
    is contained. ``step`` accepts any ``str`` beyond it (other characters, longer text) and judges it."""
    from gymnasium import spaces

    return spaces.Text(max_length=MAX_COMPLETION_CHARS, min_length=0, charset=string.printable)

def is_binary(answer_format: str) -> bool:
    """True for the two-answer formats (:data:`BINARY_LABELS`: ``binary``, ``true_false``)."""
    return answer_format in BINARY_LABELS


def extract_answer(text: str) -> str | None:
    """Content of the last complete ``<answer>...</answer>`` block, or None.

    Linear time in ``len(text)``. With nested tags
    (``<answer><answer>5</answer></answer>``) the innermost block wins.
    """
    closes = [m.start() for m in _CLOSE.finditer(text)]
    if not closes:
        return None
    last_close = closes[-1]
    opens = [m.end() for m in _OPEN.finditer(text, 0, last_close)]
    if not opens:
        return None
    start = opens[-1]
    # The first close after the last open ends the last innermost block.
    end = next(c for c in closes if c >= start)
    return text[start:end]


def _int_or_none(token: str) -> int | None:
    digits = token.lstrip("+-").lstrip("0")
    if len(digits) > _MAX_DIGITS:
        return None
    return int(token)


def _unparseable(why: str) -> ParsedAnswer:
    return ParsedAnswer(None, "unparseable", why)


def _checked_x(token: str) -> int | ParsedAnswer:
    """``token`` as an x in :data:`X_RANGE`, or the ``out_of_range`` judgement."""
    x = _int_or_none(token)
    return x if x is not None and X_RANGE[0] <= x <= X_RANGE[1] else _out_of_range("x", token, *X_RANGE)


def _out_of_range(what: str, token: str, lo: int, hi: int) -> ParsedAnswer:
    shown = token if len(token) <= 20 else token[:17] + "..."
    return ParsedAnswer(None, "out_of_range", f"{what} {shown} is outside [{lo}, {hi}]")


def parse_answer(text: str, answer_format: AnswerFormat) -> ParsedAnswer:
    """Judge ``text`` as an answer of ``answer_format``; never raises on any ``str``.

    Raises:
        ValueError: ``answer_format`` is not one of :data:`ANSWER_FORMATS`
            (a programming error, not a model error).
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    if not isinstance(text, str):
        return _unparseable(f"answer is a {type(text).__name__}, not a str")
    content = extract_answer(text)
    if content is None:
        return _unparseable("no complete <answer>...</answer> block")
    if answer_format in BINARY_LABELS:
        first, second = BINARY_LABELS[answer_format]
        m = _BINARY[answer_format].fullmatch(content)
        if not m:
            return _unparseable(f"answer is not {first} or {second}")
        return ParsedAnswer(first if m.group(1).lower() == first.lower() else second)
    if answer_format == "x":
        m = _X.fullmatch(content)
        if not m:
            return _unparseable("answer is not one integer")
        x = _checked_x(m.group(1))
        return x if isinstance(x, ParsedAnswer) else ParsedAnswer(x)
    if answer_format == "colour_x":
        m = _COLOUR_X.fullmatch(content)
        if not m:
            return _unparseable("answer is not a colour and one integer (COLOUR, X)")
        x = _checked_x(m.group(2))
        return x if isinstance(x, ParsedAnswer) else ParsedAnswer((m.group(1).lower(), x))
    m = _XY.fullmatch(content)
    if not m:
        return _unparseable("answer is not two integers (x, up)")
    x, up = _checked_x(m.group(1)), _int_or_none(m.group(2))
    if isinstance(x, ParsedAnswer):
        return x
    if up is not None and up < UP_RANGE[0]:
        return ParsedAnswer(None, "below_floor", f"up {up} is below the floor (up must be >= 0)")
    if up is None:
        if m.group(2).startswith("-"):
            return ParsedAnswer(None, "below_floor", "up is below the floor (up must be >= 0)")
        return _out_of_range("up", m.group(2), *UP_RANGE)
    if up > UP_RANGE[1]:
        return _out_of_range("up", m.group(2), *UP_RANGE)
    return ParsedAnswer((x, up))


def sample_legal_answer(answer_format: AnswerFormat, rng, colours: Sequence[str] | None = None) -> str:
    """A uniformly random legal answer text of ``answer_format``, drawn from ``rng``.

    Args:
        rng: a ``numpy.random.Generator``.
        colours: colour_x only: the colours to choose from (default: every colour a
            TowerBuild-v0 cube can have, :data:`envs.scenes.PALETTE` and red).

    Binary (and true_false): either answer with equal probability; x: an integer uniform in
    ``X_RANGE``; xy: x uniform in ``X_RANGE`` and up uniform in ``UP_RANGE``;
    colour_x: a colour uniform in ``colours`` and x uniform in ``X_RANGE``.
    """
    if answer_format in BINARY_LABELS:
        first, second = BINARY_LABELS[answer_format]
        return f"<answer>{first if rng.random() < 0.5 else second}</answer>"
    if answer_format == "colour_x":
        if not colours:
            from .scenes import PALETTE

            colours = [*PALETTE, "red"]
        colour = colours[int(rng.integers(len(colours)))]
        return f"<answer>{colour}, {int(rng.integers(X_RANGE[0], X_RANGE[1] + 1))}</answer>"
    x = int(rng.integers(X_RANGE[0], X_RANGE[1] + 1))
    if answer_format == "x":
        return f"<answer>{x}</answer>"
    if answer_format == "xy":
        up = int(rng.integers(UP_RANGE[0], UP_RANGE[1] + 1))
        return f"<answer>{x}, {up}</answer>"
    raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
