"""The one chat-prompt builder: the exact text the tiny models are trained, sampled and probed on."""

from __future__ import annotations

import pytest

from agents.chat import chat_messages, chat_prompt

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
