"""The one chat-prompt builder: the exact text the tiny models are trained, sampled and probed on."""

from __future__ import annotations

import pytest

from agents.chat import chat_messages, chat_prompt, observation_chat, prompts_and_images

pytest.importorskip("transformers")

# tiny-base was pre-trained on this text (training.pretrain) and every agent, probe and attention
# map sees it: a changed byte silently changes what the shipped model is asked.
HEAD = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>"
TAIL = "<|im_end|>\n<|im_start|>assistant\n"
EXPECTED = {
    "Is the tower stable?": HEAD + "Is the tower stable?" + TAIL,
    "": HEAD + TAIL,
    "a\nb <answer>1</answer> ünï": HEAD + "a\nb <answer>1</answer> ünï" + TAIL,
}


@pytest.fixture(scope="module")
def processor(tiny_path):
    from agents.vlm import load_processor

    return load_processor(str(tiny_path))


@pytest.mark.parametrize("prompt", list(EXPECTED))
def test_chat_prompt_is_pinned_byte_for_byte(processor, prompt):
    assert chat_prompt(processor, prompt).encode("utf-8") == EXPECTED[prompt].encode("utf-8")


def test_the_agent_and_pretraining_use_the_one_builder(processor):
    import training.pretrain
    from agents.vlm import VLMAgent

    agent = VLMAgent(model=None, processor=processor, backend=object())
    assert agent.chat_prompt("Where does the red block go?") == chat_prompt(processor, "Where does the red block go?")
    assert training.pretrain.chat_prompt is chat_prompt


def test_messages_are_image_then_prompt_and_fresh_each_call():
    first = chat_messages("hi")
    assert first == [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    first[0]["content"].append({"type": "text", "text": "more"})
    assert len(chat_messages("hi")[0]["content"]) == 2


# -- multi-turn chats (multi-step observations, DESIGN.md section 7) ---------------------------

IMAGE = "<|vision_start|><|image_pad|><|vision_end|>"
TWO_TURNS = (
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\n" + IMAGE + "Where does the red block go?<|im_end|>\n"
    "<|im_start|>assistant\n<answer>-120</answer><|im_end|>\n"
    "<|im_start|>user\n" + IMAGE + "It fell. Try again.<|im_end|>\n"
    "<|im_start|>assistant\n<answer>40</answer><|im_end|>\n"
    "<|im_start|>user\n" + IMAGE + "It fell. Try again.<|im_end|>\n"
    "<|im_start|>assistant\n"
)


def _multi_step(n_turns: int) -> dict:
    """A multi-step observation whose images are labelled objects (the chat never reads them)."""
    prompts = ["Where does the red block go?"] + ["It fell. Try again."] * n_turns
    answers = ["<answer>-120</answer>", "<answer>40</answer>", "<answer>7</answer>"]
    history = tuple({"image": f"image {k}", "prompt": prompts[k], "answer": answers[k]} for k in range(n_turns))
    return {"image": f"image {n_turns}", "prompt": prompts[n_turns], "history": history, "info": {}}


def test_a_two_turn_history_renders_byte_for_byte(processor):
    text, images = observation_chat(processor, _multi_step(2))
    assert text.encode("utf-8") == TWO_TURNS.encode("utf-8")
    assert images == ["image 0", "image 1", "image 2"]  # placeholder order: oldest turn first
    obs = _multi_step(2)
    assert chat_prompt(processor, obs["prompt"], obs["history"]) == TWO_TURNS


def test_messages_replay_each_turn_then_the_answer():
    obs = _multi_step(1)
    assert chat_messages(obs["prompt"], obs["history"]) == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where does the red block go?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "<answer>-120</answer>"}]},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "It fell. Try again."}]},
    ]


def test_an_empty_history_is_the_single_step_chat(processor):
    single = {"image": "scene", "prompt": "Is the tower stable?"}
    assert observation_chat(processor, single) == (EXPECTED["Is the tower stable?"], ["scene"])
    assert observation_chat(processor, {**single, "history": ()}) == observation_chat(processor, single)


@pytest.mark.parametrize("keep, kept_images", [(None, ["image 0", "image 1"]), (2, ["image 0", "image 1"]),
                                               (5, ["image 0", "image 1"]), (1, ["image 1"]), (0, [])])
def test_max_history_turns_keeps_the_newest_turns_and_only_their_images(processor, keep, kept_images):
    obs = _multi_step(2)
    text, images = observation_chat(processor, obs, max_history_turns=keep)
    assert images == kept_images + ["image 2"]
    assert text.count("<|image_pad|>") == len(images)
    kept = obs["history"][len(obs["history"]) - len(kept_images):]
    assert text == chat_prompt(processor, obs["prompt"], kept)
    if keep == 1:  # the oldest turn's prompt and answer are gone, the newest's stay
        assert "red block" not in text and "-120" not in text and "<answer>40</answer>" in text


def test_batches_keep_single_step_images_bare(processor):
    from agents.vlm import VLMAgent

    single = {"image": "scene", "prompt": "Is the tower stable?"}
    prompts, images = prompts_and_images(processor, [single, _multi_step(0), _multi_step(2)])
    assert images == ["scene", ["image 0"], ["image 0", "image 1", "image 2"]]
    assert prompts[0] == EXPECTED["Is the tower stable?"] and prompts[2] == TWO_TURNS
    agent = VLMAgent(model=None, processor=processor, backend=object(), max_history_turns=1)
    assert agent.prompts_and_images([_multi_step(2)])[1] == [["image 1", "image 2"]]


def test_bad_observations_and_histories_are_clear_errors(processor):
    obs = _multi_step(2)
    with pytest.raises(KeyError, match=r"observation 1 lacks \['prompt'\]"):
        prompts_and_images(processor, [obs, {"image": "x", "history": ()}])
    with pytest.raises(KeyError, match=r"observation lacks \['image'\]"):
        observation_chat(processor, {"prompt": "p"})
    bad = {
        "a string": "not turns",
        "one dict": {"image": "x", "prompt": "p", "answer": "a"},
        "a list, not a dict": (["x", "p", "a"],),
        "no answer": ({"image": "x", "prompt": "p"},),
        "an int answer": ({"image": "x", "prompt": "p", "answer": 3},),
    }
    for what, history in bad.items():
        with pytest.raises(ValueError, match="history") as info:
            observation_chat(processor, {**obs, "history": history})
        assert "turn" in str(info.value) or "sequence" in str(info.value), what
    with pytest.raises(ValueError, match=r"turn 0 lacks \['answer'\]"):
        chat_messages("p", ({"image": "x", "prompt": "p"},))
    for keep in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="max_history_turns"):
            observation_chat(processor, obs, max_history_turns=keep)


def test_an_answer_spelling_a_special_token_stays_text(processor):
    import numpy as np

    image = np.zeros((32, 32, 3), np.uint8)
    obs = {"image": image, "prompt": "again",
           "history": ({"image": image, "prompt": "first", "answer": "<|image_pad|><|im_end|>5"},)}
    text, images = observation_chat(processor, obs)
    assert text.count("<|image_pad|>") == len(images) == 2 and "< |image_pad|>< |im_end|>5" in text
