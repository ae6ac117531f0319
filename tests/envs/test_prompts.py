"""Every registered env's prompt is the papers' text, character for character.

The texts are pinned here (so the test runs on any clone) and, where the team's
shared folder is present (``../shared/data/paper-prompts.md``), checked against it too.
"""

import re
from pathlib import Path

import gymnasium as gym
import pytest

import envs
from envs.prompts import LERER, PAPER_REASONING_TASKS, REASONING, prompt_for

PAPER_PROMPTS = Path(__file__).resolve().parents[3] / "shared" / "data" / "paper-prompts.md"
LERER_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "lerer-dev"

# Schulze Buschoff et al. (2026), arXiv 2602.06033, Appendix A.4, verbatim.
PINNED = {
    "TopBlockStability-v0": "In the image you see a block tower with a single misplaced block on top. Your task is to determine if this is a stable tower. Respond with Yes if the tower is stable or No if it is not stable. Return your final answer between <answer> </answer>.",  # noqa: E501
    "TopBlockXOnly-v0": "In the image you see a block tower with a single misplaced block on top. Your task is to build a stable tower by moving the top block to the most stable position. You can move the top block to the left or right, by responding with an integer between -600 and 600. Return your final answer between <answer> </answer>.",  # noqa: E501
    "SideBlockXOnly-v0": "In the image you see a block tower in the centre with a single misplaced block to the side. Your task is to build a stable tower by moving the misplaced block to the most stable position on the top of the tower. You can move the top block to the left or right, by responding with an integer between -600 and 600. Return your final answer between <answer> </answer>.",  # noqa: E501
    "SideBlockXY-v0": "In the image you see a block tower in the centre with a single misplaced block to the side. Your task is to build a stable tower by moving the misplaced block to the most stable position on the top of the tower. You can move the misplaced block to the left or right and up, by responding with two integers. The first integer should be between -600 and +600 and moves the block left or right. The second integer should be between 0 and +1000 and moves the block up. Return your final answer between <answer> </answer>.",  # noqa: E501
    "RealTowerStability-v0": "In the image you see a block tower. Your task is to determine if this is a stable tower. Respond with Yes if the tower is stable or No if it is not stable. Return your final answer between <answer> </answer>.",  # noqa: E501
}
PINNED_REASONING = {
    "TopBlockXOnly-v0": "In the image you see a block tower with a single misplaced block on top. Your task is to build a stable tower by moving the top block to the most stable position. You can move the top block to the left or right, by responding with an integer between -600 and 600. Provide your reasoning between <think> and </think>. You can think about the problem for as long as you'd like. While thinking, you should robustly verify your solution. Return your final answer between <answer> </answer>.",  # noqa: E501
}


def _prompt_of(env_id: str, **kwargs) -> str:
    if env_id == "RealTowerStability-v0":
        if not (LERER_DIR / "labels.csv").is_file():
            return LERER  # the env needs photos; its prompt is this constant
        kwargs["data_dir"] = str(LERER_DIR)
    env = gym.make(env_id, **kwargs)
    obs, _ = env.reset(seed=0)
    env.close()
    return obs["prompt"]


def _paper_file() -> dict[tuple[str, bool], str]:
    """``(env id, reasoning) -> text`` from paper-prompts.md: a backticked id line, then an indented block."""
    text = PAPER_PROMPTS.read_text()
    section = text.split("## ", 2)[1]  # the 2026 paper's section only
    out = {}
    for m in re.finditer(r"^`(\w+-v0)`( with `reasoning=True`)?[^\n]*\n\n((?:    [^\n]*\n?)+)", section, re.M):
        out[(m.group(1), bool(m.group(2)))] = "\n".join(ln[4:] for ln in m.group(3).rstrip("\n").split("\n"))
    return out


def test_every_registered_env_has_a_pinned_prompt():
    assert set(PINNED) == set(envs.ENV_IDS) | {"RealTowerStability-v0"}


@pytest.mark.parametrize("env_id", sorted(PINNED))
def test_prompt_is_the_papers_text(env_id):
    assert _prompt_of(env_id) == PINNED[env_id]


@pytest.mark.parametrize("env_id", sorted(PINNED_REASONING))
def test_reasoning_prompt_is_the_papers_text(env_id):
    assert _prompt_of(env_id, reasoning=True) == PINNED_REASONING[env_id]


def test_our_reasoning_variants_insert_the_papers_sentences_before_the_last_one():
    assert PAPER_REASONING_TASKS == {"top_block_x_only"}
    for task in envs.TASKS:
        text = prompt_for(task, reasoning=True)
        assert text == prompt_for(task).replace("Return your final", f"{REASONING} Return your final")


@pytest.mark.skipif(not PAPER_PROMPTS.is_file(), reason=f"no {PAPER_PROMPTS} (the team's shared folder)")
def test_pinned_texts_equal_the_shared_paper_prompts():
    paper = _paper_file()
    assert {k: v for (k, r), v in paper.items() if not r} == PINNED
    assert {k: v for (k, r), v in paper.items() if r} == PINNED_REASONING
