"""The text prompts of the block-tower tasks.

Provenance, stated honestly because the paper's wording matters for replication:

* ``SIDE_BLOCK_XY`` and ``SIDE_BLOCK_XY_REASONING`` are verbatim from the
  authors' own training code (repository ``kozzy97/vlm-interactive-intphys``,
  ``scripts/grpo.py``, ``format_fn``), the code behind Schulze Buschoff et al.
  (2026, arXiv 2602.06033). The reasoning variant there asks for "two floats";
  our answers are integers, so that one word is changed to "integers".
* The other prompts follow the same wording for the other tasks. The text of
  the paper's Appendix A.4 was not available to us when these were written;
  pass ``prompt=`` to any environment to use another wording. A prompt
  override is used as given, with no reasoning suffix added.

Units in every prompt: 100 answer units are one block edge.
"""

from __future__ import annotations

__all__ = ["PROMPTS", "REASONING_SUFFIX", "LERER", "prompt_for"]

_TAGS = "<answer> </answer>"

TOP_BLOCK_STABILITY = (
    "In the image you see a block tower. Your task is to judge whether the tower is "
    "stable or whether the top block will fall. Return your final answer like this, "
    f"with Yes (the tower is stable) or No (the top block will fall) between {_TAGS}."
)

TOP_BLOCK_X_ONLY = (
    "In the image you see a block tower whose top block may fall. Your task is to make "
    "the tower stable by moving the top block to the left or right. One block width is "
    "100 units; negative values move the block left, positive values move it right. "
    "Return your final answer like this, with one integer between -600 and 600 between "
    f"{_TAGS}."
)

SIDE_BLOCK_X_ONLY = (
    "In the image you see a block tower and a single red block next to it. Your task is "
    "to build a bigger tower by placing the red block on top of the existing tower. To "
    "accomplish this, you can move the red block to the left or right; it is then placed "
    "on top of the tower at that position. One block width is 100 units; negative values "
    "move the block left, positive values move it right. Return your final answer like "
    f"this, with one integer between -600 and 600 between {_TAGS}."
)

SIDE_BLOCK_XY = (
    "In the image you see a block tower and a single red block next to it. Your task is "
    "to build a bigger tower by placing the red block on top of the existing tower. To "
    "accomplish this, you can move the red block to the left or right and up, by "
    "responding with two values (x = left or right, y = up). Return your final answer "
    f"like this, with two integers between {_TAGS}."
)

SIDE_BLOCK_XY_REASONING = (
    "In the image you see a block tower and a single red block next to it. You can move "
    "the red block to the left or right and up, by responding with two values (x = left "
    "or right, y = up). Provide your reasoning between <think> and </think>. You can think "
    "about the problem for as long as you'd like. While thinking, you should robustly "
    "verify your solution. Once you are done thinking, return the final answer like this, "
    "with two integers between <answer> 120, 60 </answer>."
)

REASONING_SUFFIX = (
    " Provide your reasoning between <think> and </think> before the answer. You can "
    "think about the problem for as long as you'd like. While thinking, you should "
    "robustly verify your solution. Once you are done thinking, return the final answer."
)

LERER = (
    "In the image you see a block tower. Is the tower stable, or will it fall? Return "
    f"your final answer like this, with Yes (stable) or No (it will fall) between {_TAGS}."
)

PROMPTS: dict[str, str] = {
    "top_block_stability": TOP_BLOCK_STABILITY,
    "top_block_x_only": TOP_BLOCK_X_ONLY,
    "side_block_x_only": SIDE_BLOCK_X_ONLY,
    "side_block_xy": SIDE_BLOCK_XY,
}


def prompt_for(task: str, reasoning: bool = False) -> str:
    """The prompt of ``task`` (a key of :data:`PROMPTS`), optionally the long-reasoning variant.

    Raises:
        KeyError: ``task`` is not a key of :data:`PROMPTS`.
    """
    if task not in PROMPTS:
        raise KeyError(f"unknown task {task!r}; expected one of {sorted(PROMPTS)}")
    if not reasoning:
        return PROMPTS[task]
    if task == "side_block_xy":
        return SIDE_BLOCK_XY_REASONING
    return PROMPTS[task] + REASONING_SUFFIX
