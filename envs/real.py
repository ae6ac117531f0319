"""Real photos of block towers: a dataset reader and the ``RealTowerStability-v0`` environment.

A dataset is a folder laid out like ``../shared/data/lerer-dev`` (photos of
wooden towers from Lerer, Gross & Fergus 2016, with human judgements)::

    DIR/images/<name>          the photos (any size, any format Pillow reads)
    DIR/labels.csv             columns: image, n_blocks, falls (1 = the tower falls,
                               0 = stable); optional: colors_top_to_bottom (';'-separated),
                               human_p_falls (fraction of participants who said "falls")
    DIR/human_responses.csv    optional: image, then one column per participant,
                               1 = "will fall", 0 = "stable", empty = no response

Image size: every photo is resized to ``image_size x image_size`` (default 256,
the size of the synthetic environments) with Pillow's bicubic filter; a photo
already of that size is passed through unchanged (``image_size=224`` keeps the
lerer-dev photos pixel for pixel). A non-square photo is *letterboxed*, never
cropped (a crop could cut off the top block, the part the question is about):
its longer side is scaled to ``image_size`` and the shorter side is padded
symmetrically with the median colour of the photo's outermost pixel ring (the
background, so the padding adds no edge or colour of its own).

Nothing here imports torch; reading needs only numpy and Pillow.
"""

from __future__ import annotations

import csv
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image, ImageOps

from .answers import completion_space, parse_answer
from .prompts import LERER
from .rewards import binary_reward

__all__ = ["Photo", "RealTowerDataset", "RealTowerEnv", "fit_square", "episode_photo", "REQUIRED_COLUMNS"]

REQUIRED_COLUMNS = ("image", "n_blocks", "falls")
_LAYOUT_HINT = "a folder with images/ and labels.csv (columns image, n_blocks, falls), like ../shared/data/lerer-dev"


@dataclass(frozen=True)
class Photo:
    """One labelled photo.

    Attributes:
        name: file name inside ``images/`` (the ``image`` column), e.g. ``"7.png"``.
        path: full path of the file.
        n_blocks: cubes in the tower.
        falls: ground truth, True when the tower falls (``falls == 1``).
        colors: block colours top to bottom (empty when the column is absent).
        human_p_falls: fraction of participants who said "falls" (None when unknown).
    """

    name: str
    path: Path
    n_blocks: int
    falls: bool
    colors: tuple[str, ...] = ()
    human_p_falls: float | None = None

    @property
    def stable(self) -> bool:
        """Ground truth: the tower stands (the answer ``Yes`` is correct)."""
        return not self.falls


def fit_square(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
    """``image`` as a ``(size, size, 3)`` uint8 array: bicubic resize, letterboxed if not square.

    Args:
        image: a Pillow image (any mode; alpha is dropped) or an ``(H, W)`` /
            ``(H, W, 3)`` / ``(H, W, 4)`` uint8 array.
        size: output side in pixels.

    ``PIL.ImageOps.pad``: an image already ``size x size`` is returned unchanged;
    a square one is resized; otherwise the longer side is scaled to ``size``
    (aspect ratio kept) and the image centred, the shorter side padded on both
    sides with the median colour of the image's outermost pixel ring (an odd
    padding puts the extra pixel where Pillow's ``round`` does).
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    rgb = image.convert("RGB")
    a = np.asarray(rgb)
    ring = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    fill = tuple(int(v) for v in np.median(ring, axis=0))
    return np.asarray(ImageOps.pad(rgb, (size, size), Image.Resampling.BICUBIC, color=fill), dtype=np.uint8).copy()


def episode_photo(k: int, n_photos: int, shuffle: bool = True) -> int:
    """Index of the photo that episode ``k`` shows (``k >= 0``; a dataset of ``n_photos``).

    Episodes run through the photos in passes of ``n_photos``: pass ``p = k // n_photos``
    shows them in the order ``numpy.random.default_rng(p).permutation(n_photos)``
    (file order of ``labels.csv`` when ``shuffle`` is False), and episode ``k`` is
    position ``k % n_photos`` of its pass. So episodes ``0 .. n_photos - 1`` show
    every photo exactly once.

    Raises:
        ValueError: ``k < 0`` or ``n_photos < 1``.
    """
    if n_photos < 1 or k < 0:
        raise ValueError(f"need k >= 0 and n_photos >= 1, got k={k}, n_photos={n_photos}")
    position = k % n_photos
    if not shuffle:
        return position
    return int(np.random.default_rng(k // n_photos).permutation(n_photos)[position])


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return [c.strip() for c in (reader.fieldnames or [])], rows


def _parse_int(value: str, what: str, path: Path, row: int, allowed: tuple[int, ...] | None = None) -> int:
    try:
        number = int(float(value))
        if float(value) != number or (allowed is not None and number not in allowed):
            raise ValueError
    except (TypeError, ValueError):
        want = f"one of {list(allowed)}" if allowed else "an integer"
        raise ValueError(f"{path}, row {row}: {what} must be {want}, got {value!r}; fix the file") from None
    return number


class RealTowerDataset:
    """The photos, labels and (optional) human responses of one dataset folder.

    Args:
        data_dir: the folder (see the module docstring for the layout).
        image_size: side of the square images :meth:`image` returns, pixels.

    Attributes:
        data_dir: the folder, as a ``Path``.
        photos: one :class:`Photo` per row of ``labels.csv``, in file order.
        participants: participant column names of ``human_responses.csv`` (empty without it).
        human_responses: ``(n_photos, n_participants)`` float64, 1.0 = "falls",
            0.0 = "stable", nan = no response; None without ``human_responses.csv``.

    Raises:
        FileNotFoundError: ``data_dir``, ``images/``, ``labels.csv`` or a listed photo is missing.
        ValueError: a required column is missing, a value is malformed, or
            ``human_responses.csv`` does not cover exactly the labelled photos.
    """

    def __init__(self, data_dir: str | Path, image_size: int = 256) -> None:
        if not isinstance(image_size, int) or not 16 <= image_size <= 2048:
            raise ValueError(f"image_size must be an int in [16, 2048], got {image_size!r}")
        self.data_dir = Path(data_dir).expanduser()
        self.image_size = image_size
        if not self.data_dir.is_dir():
            raise FileNotFoundError(f"real-photo data folder {str(self.data_dir)!r} does not exist; "
                                    f"pass {_LAYOUT_HINT}")
        images, labels = self.data_dir / "images", self.data_dir / "labels.csv"
        for needed in (images, labels):
            if not needed.exists():
                raise FileNotFoundError(f"{str(needed)!r} is missing; {self.data_dir} must be {_LAYOUT_HINT}")
        columns, rows = _read_csv(labels)
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{labels} lacks column(s) {missing} (has {columns}); add them: "
                             f"image (file name in images/), n_blocks (int), falls (1 = falls, 0 = stable)")
        if not rows:
            raise ValueError(f"{labels} has no rows; add one row per photo")
        photos = []
        for i, row in enumerate(rows, start=2):  # row 1 is the header
            name = (row["image"] or "").strip()
            p = row.get("human_p_falls")
            try:
                p_falls = float(p) if p not in (None, "") else None
            except ValueError:
                raise ValueError(f"{labels}, row {i}: human_p_falls must be a number in [0, 1], got {p!r}") from None
            colors = tuple(c.strip() for c in (row.get("colors_top_to_bottom") or "").split(";") if c.strip())
            photos.append(Photo(name, images / name, _parse_int(row["n_blocks"], "n_blocks", labels, i),
                                bool(_parse_int(row["falls"], "falls", labels, i, (0, 1))), colors, p_falls))
        names = [p.name for p in photos]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"{labels} lists photo(s) {dup[:5]} more than once; keep one row per photo")
        absent = [p.name for p in photos if not p.path.is_file()]
        if absent:
            raise FileNotFoundError(f"{len(absent)} photo(s) listed in {labels} are not in {images}: "
                                    f"{absent[:5]}; add the files or remove their rows")
        self._index = {n: i for i, n in enumerate(names)}
        self.participants: tuple[str, ...] = ()
        self.human_responses: np.ndarray | None = None
        responses = self.data_dir / "human_responses.csv"
        if responses.exists():
            self._read_responses(responses)
            if all(p.human_p_falls is None for p in photos):
                p_falls = np.nanmean(self.human_responses, axis=1)
                photos = [Photo(p.name, p.path, p.n_blocks, p.falls, p.colors, float(q))
                          for p, q in zip(photos, p_falls)]
        self.photos: tuple[Photo, ...] = tuple(photos)

    def _read_responses(self, path: Path) -> None:
        columns, rows = _read_csv(path)
        if "image" not in columns or len(columns) < 2:
            raise ValueError(f"{path} needs a column 'image' and one column per participant (has {columns[:5]})")
        participants = [c for c in columns if c != "image"]
        table = np.full((len(self._index), len(participants)), np.nan)
        seen = set()
        for i, row in enumerate(rows, start=2):
            name = (row["image"] or "").strip()
            if name not in self._index:
                raise ValueError(f"{path}, row {i}: photo {name!r} is not in labels.csv; remove the row or label it")
            seen.add(name)
            for j, c in enumerate(participants):
                value = (row.get(c) or "").strip()
                if value:
                    table[self._index[name], j] = _parse_int(value, c, path, i, (0, 1))
        unseen = [n for n in self._index if n not in seen]
        if unseen:
            raise ValueError(f"{path} has no row for photo(s) {unseen[:5]}; add a row per labelled photo")
        self.participants, self.human_responses = tuple(participants), table

    def __len__(self) -> int:
        return len(self.photos)

    def index_of(self, name: str) -> int:
        """Row index of the photo named ``name``.

        Raises:
            KeyError: no photo of that name (lists a few that exist).
        """
        if name not in self._index:
            raise KeyError(f"no photo {name!r} in {self.data_dir}; photos include {list(self._index)[:5]}")
        return self._index[name]

    def image(self, index: int) -> np.ndarray:
        """Photo ``index`` as ``(image_size, image_size, 3)`` uint8 (see :func:`fit_square`).

        Raises:
            ValueError: the file is not an image Pillow can read.
        """
        path = self.photos[index].path
        try:
            with Image.open(path) as im:
                return fit_square(im, self.image_size)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read photo {str(path)!r} as an image ({exc}); replace the file") from exc

    @property
    def falls(self) -> np.ndarray:
        """``(n_photos,)`` int64 ground truth, 1 = falls, 0 = stable."""
        return np.array([int(p.falls) for p in self.photos], dtype=np.int64)

    @property
    def n_blocks(self) -> np.ndarray:
        """``(n_photos,)`` int64 cubes per tower."""
        return np.array([p.n_blocks for p in self.photos], dtype=np.int64)


class RealTowerEnv(gym.Env):
    """Is the tower in the photo stable? One binary question per real photo.

    ## Description

    Each episode shows one photo of a :class:`RealTowerDataset` with the Lerer
    prompt (:data:`envs.prompts.LERER`); the agent answers once ``Yes``
    (stable) or ``No`` (it will fall) inside ``<answer>...</answer>``.

    ## Episode order

    ``reset(seed=s)`` starts episode ``k = s``; ``reset()`` without a seed
    starts ``k + 1`` (the first unseeded reset is ``k = 0``). Episode ``k``
    shows photo :func:`episode_photo` ``(k, n_photos, shuffle)``: seeds
    ``0 .. n_photos - 1`` (what ``evaluate(..., seed=0)`` uses) cover every
    photo exactly once, in a seeded shuffled order; later seeds start new
    passes in new orders. ``reset(options={"image": name})`` shows that photo.

    ## Action Space

    ``Text`` of up to 2**17 printable characters (:func:`envs.answers.completion_space`: a long
    reasoning completion fits); any ``str`` is judged by :func:`envs.answers.parse_answer` (binary).

    ## Observation Space

    ``Dict(image=Box(0, 255, (image_size, image_size, 3), uint8), prompt=Text)``;
    photos are resized or letterboxed as the module docstring says.

    ## Rewards

    :func:`envs.rewards.binary_reward`: 1 correct (``Yes`` on a stable tower,
    ``No`` on one that falls, per ``labels.csv``), 0 incorrect, -1 unparseable.

    ## Episode End

    ``terminated=True`` after the answer; ``truncated`` is always False.

    ## Info

    After ``reset``: ``task`` (``"real_tower_stability"``), ``answer_format``
    (``"binary"``), ``image`` (file name), ``index`` (row in ``labels.csv``),
    ``episode`` (``k``), ``n_blocks``, ``stable_initially`` (the label),
    ``optimal_action``, ``human_p_falls`` (or None), ``offset`` (None: unknown
    for photos). After ``step`` also: ``parsed_action``, ``parse_error``,
    ``outcome`` (``correct``, ``incorrect``, ``unparseable``), ``distance``,
    ``stable_after`` (None) and ``sim_steps`` (0): nothing is simulated.

    ## Arguments

    * ``data_dir``: the dataset folder (required).
    * ``render_mode``: None or ``"rgb_array"`` (the photo).
    * ``prompt``: replaces the Lerer prompt (used verbatim).
    * ``image_size``: side of the square image, pixels (default 256).
    * ``shuffle``: seeded order within each pass (default True) or file order.

    ## Version History

    * v0: first version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 2}
    task = "real_tower_stability"
    answer_format = "binary"

    def __init__(self, data_dir: str | Path | None = None, render_mode: str | None = None,
                 prompt: str | None = None, image_size: int = 256, shuffle: bool = True) -> None:
        if data_dir is None:
            raise ValueError("RealTowerStability-v0 needs data_dir=...: gym.make('RealTowerStability-v0', "
                             f"data_dir='path/to/lerer-dev'), {_LAYOUT_HINT}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.dataset = RealTowerDataset(data_dir, image_size)
        self.render_mode = render_mode
        self.image_size = image_size
        self.shuffle = bool(shuffle)
        self.prompt = LERER if prompt is None else prompt
        charset = "".join(sorted(set(string.printable) | set(self.prompt)))
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (image_size, image_size, 3), np.uint8),
            "prompt": spaces.Text(max_length=max(4096, len(self.prompt)), charset=charset),
        })
        self.action_space = completion_space()
        self._episode = -1
        self._index: int | None = None
        self._obs: dict[str, Any] | None = None
        self._done = True

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Show the next photo (see "Episode order"), or ``options["image"]`` (a file name).

        Raises:
            KeyError: ``options["image"]`` names no photo of the dataset.
        """
        super().reset(seed=seed)
        self._episode = seed if seed is not None else self._episode + 1
        if options and options.get("image") is not None:
            self._index = self.dataset.index_of(options["image"])
        else:
            self._index = episode_photo(self._episode, len(self.dataset), self.shuffle)
        self._obs = {"image": self.dataset.image(self._index), "prompt": self.prompt}
        self._done = False
        return self._copy_obs(), self._episode_info()

    def step(self, action: str) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """Judge ``action`` (any ``str``) against the photo's label and end the episode.

        Raises:
            RuntimeError: called before ``reset`` or after the episode ended.
        """
        reward, info = self.judge(action)
        self._done = True
        return self._copy_obs(), reward, True, False, info

    def judge(self, action: str) -> tuple[float, dict[str, Any]]:
        """Reward and ``info`` of ``action`` without ending the episode (as :meth:`TowerEnv.judge`).

        Raises:
            RuntimeError: called before ``reset`` or after the episode ended.
        """
        if self._done or self._index is None:
            raise RuntimeError("the episode has ended (or never started): call reset() first")
        parsed = parse_answer(action, "binary")
        if parsed.value is None:
            outcome = "unparseable"
        else:
            outcome = "correct" if (parsed.value == "Yes") == self.dataset.photos[self._index].stable else "incorrect"
        info = self._episode_info()
        info.update(parsed_action=parsed.value, parse_error=parsed.error, outcome=outcome, distance=None,
                    stable_after=None, sim_steps=0)
        return binary_reward(outcome), info

    def render(self) -> np.ndarray | None:
        """The photo as ``(image_size, image_size, 3)`` uint8, or None without a render mode."""
        if self.render_mode is None:
            gym.logger.warn("render() needs render_mode='rgb_array' (gym.make(..., render_mode='rgb_array'))")
            return None
        if self._obs is None:
            raise RuntimeError("render() before reset()")
        return self._obs["image"].copy()

    def _episode_info(self) -> dict[str, Any]:
        photo = self.dataset.photos[self._index]
        return {
            "task": self.task,
            "answer_format": self.answer_format,
            "image": photo.name,
            "index": self._index,
            "episode": self._episode,
            "n_blocks": photo.n_blocks,
            "stable_initially": photo.stable,
            "optimal_action": f"<answer>{'Yes' if photo.stable else 'No'}</answer>",
            "human_p_falls": photo.human_p_falls,
            "offset": None,
        }

    def _copy_obs(self) -> dict[str, Any]:
        assert self._obs is not None
        return {"image": self._obs["image"].copy(), "prompt": self._obs["prompt"]}
