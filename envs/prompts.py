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

* ``TowerStability-v0`` (:data:`TOWER_STABILITY`): the Cubeworld towers pre-prompt of
  "Testing the limits of fine-tuning to improve reasoning in vision language models"
  (ICML 2025), section 2.3, verbatim; there **Yes means the tower falls**. That study scored
  the pre-prompt by the probabilities of the Yes and No tokens; for sampled answers we
  append one sentence, the 2026 paper's closing "Return your final answer between
  <answer> </answer>." (so its reasoning variant is built as the others'). The
  log-probability judge's text is :data:`TOWER_STABILITY_PRE_PROMPT` alone.
* ``PyramidCounterfactual-v0`` (:data:`PYRAMID_COUNTERFACTUAL`): that study's causal-pyramid
  pre-prompt (same section), verbatim (**Yes means other blocks would fall**), then the same
  one sentence; :data:`PYRAMID_COUNTERFACTUAL_PRE_PROMPT` alone for the log-probability judge.

* **Ours, not the papers'**: ``ShapeStacksStability-v0``'s prompt (:data:`SHAPESTACKS_STABILITY`;
  the 2026 ShapeStacks diagnostic gives no prompt text, only its True / False labels: True =
  balanced, the first answer asserts stability), the ``TowerBuild-v0`` prompt (:func:`tower_build_prompt`),
  and the multi-step turn texts of DESIGN.md section 7: the feedback sentences
  (:func:`feedback_sentence`: what happened, stood or fell, and the reward) and the
  instruction of each later turn (:data:`NEXT_TURN`). They are plain ASCII.

A prompt override (``prompt=`` on any environment) is used as given, with no
reasoning sentences added (it replaces the first turn's prompt only). Units: 100 answer units are one block edge (the
prompts themselves do not say so; the papers' do not either).
"""

from __future__ import annotations

__all__ = ["PROMPTS", "WORLD_PROMPTS", "PRE_PROMPTS", "TOWER_STABILITY", "TOWER_STABILITY_PRE_PROMPT", "REASONING", "LERER",
           "PYRAMID_COUNTERFACTUAL", "PYRAMID_COUNTERFACTUAL_PRE_PROMPT", "SHAPESTACKS_STABILITY",
           "prompt_for", "reasoning_variant", "PAPER_REASONING_TASKS",
           "TOWER_BUILD", "tower_build_prompt", "feedback_sentence", "NEXT_TURN", "next_turn_prompt"]

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

# TowerStability-v0: the ICML 2025 pre-prompt (Yes = falls), then our request for the tags.
TOWER_STABILITY_PRE_PROMPT = (
    "You are now viewing a tower of blocks. Will the tower fall? Answer Yes if you think this tower is "
    "unstable and will fall. Answer No if you think this tower is stable and will not fall."
)
TOWER_STABILITY = f"{TOWER_STABILITY_PRE_PROMPT} {_RETURN}"

# PyramidCounterfactual-v0: the ICML 2025 causal-pyramid pre-prompt (Yes = other blocks fall), then
# the same request for the tags.
PYRAMID_COUNTERFACTUAL_PRE_PROMPT = (
    "You are now viewing a pyramid of blocks. If the red block was not there, would any other blocks fall? "
    "Answer Yes if you think that other blocks would fall if the red block was not there. Answer No if you "
    "think that no other blocks would fall if the red block was not there."
)
PYRAMID_COUNTERFACTUAL = f"{PYRAMID_COUNTERFACTUAL_PRE_PROMPT} {_RETURN}"

# ShapeStacksStability-v0 (ours): balanced True, about to collapse False.
SHAPESTACKS_STABILITY = (
    "In the image you see a stack of objects: cubes, cuboids, cylinders and spheres. Your task is to "
    "determine if the stack is balanced. Respond with True if the stack is balanced and will stay as it "
    f"is, or False if it is unbalanced and about to collapse. {_RETURN}"
)

# The paper's reasoning sentences (Appendix A.4, TopBlockXOnly-v0 with long generation).
REASONING = (
    "Provide your reasoning between <think> and </think>. You can think about the problem for as "
    "long as you'd like. While thinking, you should robustly verify your solution."
)

# TowerBuild-v0 (ours). {colours}: the floor cubes' colour names, e.g. "green, blue and red".
TOWER_BUILD = (
    "In the image you see a grey block in the centre and coloured blocks on the floor: {colours}. Your "
    "task is to build the tallest stable tower you can on top of the grey block, one block per turn. "
    "Move a block from the floor by responding with its colour and an integer x between -600 and 600: "
    "the block is lifted and set down at x, where 0 is the centre of the grey block and 100 is the "
    "width of the grey block, on whatever lies below. Answer as <answer>COLOUR, X</answer>. "
    f"{_RETURN}"
)

PROMPTS: dict[str, str] = {
    "top_block_stability": TOP_BLOCK_STABILITY,
    "top_block_x_only": TOP_BLOCK_X_ONLY,
    "side_block_x_only": SIDE_BLOCK_X_ONLY,
    "side_block_xy": SIDE_BLOCK_XY,
}

# The tasks of DESIGN.md section 8's worlds. Apart from PROMPTS, which code that loops over the
# paper's four tasks reads (the tiny model's tokenizer and format training among it).
WORLD_PROMPTS: dict[str, str] = {"tower_stability": TOWER_STABILITY,
                                 "pyramid_counterfactual": PYRAMID_COUNTERFACTUAL,
                                 "shapestacks_stability": SHAPESTACKS_STABILITY}
# World task -> the study's pre-prompt, which its WORLD_PROMPTS entry extends by our request for the
# tags: the log-probability judge (agents.logprob) scores the bare answers after the pre-prompt alone.
PRE_PROMPTS: dict[str, str] = {"tower_stability": TOWER_STABILITY_PRE_PROMPT,
                               "pyramid_counterfactual": PYRAMID_COUNTERFACTUAL_PRE_PROMPT}

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
    """The prompt of ``task`` (a key of :data:`PROMPTS` or :data:`WORLD_PROMPTS`), optionally the
    long-reasoning variant.

    Raises:
        KeyError: ``task`` is a key of neither.
    """
    text = PROMPTS.get(task, WORLD_PROMPTS.get(task))
    if text is None:
        raise KeyError(f"unknown task {task!r}; expected one of {sorted(PROMPTS) + sorted(WORLD_PROMPTS)}")
    return reasoning_variant(text) if reasoning else text


def _names(colours) -> str:
    colours = list(colours)
    if len(colours) <= 1:
        return "".join(colours) or "none"
    return f"{', '.join(colours[:-1])} and {colours[-1]}"


def tower_build_prompt(colours) -> str:
    """The first prompt of a ``TowerBuild-v0`` episode, naming the floor cubes' ``colours`` (strs)."""
    return TOWER_BUILD.format(colours=_names(colours))


# One sentence per outcome (DESIGN.md section 7, feedback "outcome"): what happened and the reward.
_FEEDBACK = {
    "stable": "The tower stood, and the reward was {reward}.",
    "unstable": "The tower did not stand: a block fell, and the reward was {reward}.",
    "lower": "The block came to rest lower than the top of the tower, so the tower is no taller, and the "
             "reward was {reward}.",
    "inside_tower": "The block would have been inside the tower, so nothing was moved, and the reward was "
                    "{reward}.",
    "below_floor": "The block would have been below the floor, so nothing was moved, and the reward was "
                   "{reward}.",
    "out_of_range": "The answer was out of range, so nothing was moved, and the reward was {reward}.",
    "unparseable": "The answer could not be read, so nothing was moved, and the reward was {reward}.",
    "unknown_colour": "No block of that colour could be lifted from the floor, so nothing was moved, and "
                      "the reward was {reward}.",
}


def feedback_sentence(outcome: str, reward: float, simulated: bool = True) -> str:
    """The one-sentence feedback of a turn: what happened (stood or fell) and the reward (2 decimals).

    Args:
        outcome: the turn's ``info["outcome"]`` (:data:`envs.rewards.OUTCOMES`, less the binary ones).
        reward: the turn's reward.
        simulated: False for an ``unstable`` x-y answer that was not simulated because the
            block rests lower than the tower's top (nothing fell; the tower is just no taller).

    Raises:
        KeyError: an outcome without a sentence (``correct`` / ``incorrect``: binary tasks are single-step).
    """
    key = "lower" if outcome == "unstable" and not simulated else outcome
    if key not in _FEEDBACK:
        raise KeyError(f"no feedback sentence for outcome {outcome!r}; expected one of {sorted(_FEEDBACK)}")
    return _FEEDBACK[key].format(reward=f"{reward:.2f}")


# The instruction of every turn after the first, per protocol (DESIGN.md section 7).
NEXT_TURN = {
    "retry": "The blocks are back where they were in the first image. Try again: answer the same task "
             f"in the same way. {_RETURN}",
    "sequential": "The image shows where the blocks came to rest. Move the misplaced block again, from "
                  f"where it is now, answering in the same way. {_RETURN}",
    "build": "The image shows where the blocks came to rest. Blocks you can still move from the floor: "
             f"{{colours}}. Move another block, answering as <answer>COLOUR, X</answer>. {_RETURN}",
}


def next_turn_prompt(interaction: str, feedback: str | None, colours=()) -> str:
    """The prompt of a later turn: the feedback sentence (or None) and then :data:`NEXT_TURN`.

    Raises:
        KeyError: ``interaction`` is not ``retry``, ``sequential`` or ``build``.
    """
    if interaction not in NEXT_TURN:
        raise KeyError(f"no next-turn prompt for interaction {interaction!r}; expected one of {sorted(NEXT_TURN)}")
    instruction = NEXT_TURN[interaction].format(colours=_names(colours)) if interaction == "build" \
        else NEXT_TURN[interaction]
    return f"{feedback} {instruction}" if feedback else instruction
