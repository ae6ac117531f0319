"""The text prompts of the block-tower tasks, verbatim from the papers.

Provenance (``../shared/data/paper-prompts.md`` holds the same texts):

* The four tasks, the Lerer real-photo question and the reasoning variant of
  ``TopBlockXOnly-v0`` are verbatim from Schulze Buschoff, Voudouris, Demircan &
  Schulz (2026), *Can vision language models learn intuitive physics from
  interaction?*, arXiv 2602.06033, Appendix A.4, character for character
  (including "You can move the top block" in the side-block x-only prompt, the
  paper's own wording).
* The paper gives a reasoning variant for ``TopBlockXOnly-v0`` only. The reasoning
  variants of the other tasks are **ours**: the same reasoning sentences
  (:data:`REASONING`) inserted before the final "Return your final answer ..."
  sentence, which is exactly how the paper's one variant is built from its task prompt.

A prompt override (``prompt=`` on any environment) is used as given, with no
reasoning sentences added. Units: 100 answer units are one block edge (the
prompts themselves do not say so; the papers' do not either).
"""

from __future__ import annotations

__all__ = ["PROMPTS", "REASONING", "LERER", "prompt_for", "reasoning_variant", "PAPER_REASONING_TASKS"]

# The sentence every task prompt ends with; the reasoning sentences go before it.
_RETURN = "Return your final answer between <answer> </answer>."

TOP_BLOCK_STABILITY = (
    "In the image you see a block tower with a single misplaced block on top. Your task is to "
    "determine if this is a stable tower. Respond with Yes if the tower is stable or No if it is "
    f"not stable. {_RETURN}"
)

TOP_BLOCK_X_ONLY = (
    "In the image you see a block tower with a single misplaced block on top. Your task is to build "
    "a stable tower by moving the top block to the most stable position. You can move the top block "
    f"to the left or right, by responding with an integer between -600 and 600. {_RETURN}"
)

SIDE_BLOCK_X_ONLY = (
    "In the image you see a block tower in the centre with a single misplaced block to the side. "
    "Your task is to build a stable tower by moving the misplaced block to the most stable position "
    "on the top of the tower. You can move the top block to the left or right, by responding with an "
    f"integer between -600 and 600. {_RETURN}"
)

SIDE_BLOCK_XY = (
    "In the image you see a block tower in the centre with a single misplaced block to the side. "
    "Your task is to build a stable tower by moving the misplaced block to the most stable position "
    "on the top of the tower. You can move the misplaced block to the left or right and up, by "
    "responding with two integers. The first integer should be between -600 and +600 and moves the "
    "block left or right. The second integer should be between 0 and +1000 and moves the block up. "
    f"{_RETURN}"
)

# RealTowerStability-v0: the question the paper asked about the Lerer photographs.
LERER = (
    "In the image you see a block tower. Your task is to determine if this is a stable tower. "
    f"Respond with Yes if the tower is stable or No if it is not stable. {_RETURN}"
)

# The paper's reasoning sentences (Appendix A.4, TopBlockXOnly-v0 with long generation).
REASONING = (
    "Provide your reasoning between <think> and </think>. You can think about the problem for as "
    "long as you'd like. While thinking, you should robustly verify your solution."
)

PROMPTS: dict[str, str] = {
    "top_block_stability": TOP_BLOCK_STABILITY,
    "top_block_x_only": TOP_BLOCK_X_ONLY,
    "side_block_x_only": SIDE_BLOCK_X_ONLY,
    "side_block_xy": SIDE_BLOCK_XY,
}

# Tasks whose reasoning variant the paper gives; the others' are ours (same construction).
PAPER_REASONING_TASKS = frozenset({"top_block_x_only"})


def reasoning_variant(prompt: str) -> str:
    """``prompt`` with :data:`REASONING` inserted before its final "Return your final answer ..." sentence.

    Raises:
        ValueError: ``prompt`` does not end with that sentence.
    """
    if not prompt.endswith(_RETURN):
        raise ValueError(f"a reasoning variant needs a prompt ending with {_RETURN!r}; got {prompt[-60:]!r}")
    return f"{prompt[:-len(_RETURN)]}{REASONING} {_RETURN}"


def prompt_for(task: str, reasoning: bool = False) -> str:
    """The prompt of ``task`` (a key of :data:`PROMPTS`), optionally the long-reasoning variant.

    Raises:
        KeyError: ``task`` is not a key of :data:`PROMPTS`.
    """
    if task not in PROMPTS:
        raise KeyError(f"unknown task {task!r}; expected one of {sorted(PROMPTS)}")
    return reasoning_variant(PROMPTS[task]) if reasoning else PROMPTS[task]
