"""Attention maps: a distribution over image tokens on the 8x8 grid, eager only for the call, the PNG grid."""

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from cubeworld.cli import main
from evaluation import attention_maps, plot_attention_grid
from evaluation.attention import default_layers, eager_attention, upsample_map


@pytest.fixture(scope="module")
def agent():
    from agents.vlm import VLMAgent

    return VLMAgent.from_pretrained("tiny-base", device="cpu")


@pytest.fixture(scope="module")
def observations():
    env = gym.make("TopBlockXOnly-v0")
    obs = [env.reset(seed=s)[0] for s in (0, 1)]
    env.close()
    return obs


def test_maps_are_attention_over_the_image_token_grid(agent, observations):
    maps = attention_maps(agent.model, agent.processor, observations[0])
    n_layers = agent.model.config.text_config.num_hidden_layers
    assert maps.grid == (8, 8)
    assert maps.maps.shape == (n_layers, 8, 8) and maps.maps.dtype == np.float32
    assert (maps.maps >= 0).all()
    # a share of one softmax row: at most 1, and the text tokens get the rest
    assert np.all(maps.image_mass <= 1 + 1e-5) and np.all(maps.image_mass > 0.01)
    assert np.all(maps.image_mass < 0.999)
    assert maps.image.shape == (256, 256, 3)
    other = attention_maps(agent.model, agent.processor, observations[1])
    assert not np.allclose(other.maps, maps.maps)  # the maps follow the image


def test_eager_attention_is_temporary_and_changes_no_output(agent, observations):
    import torch

    from agents.backends.hf import processor_inputs

    model = agent.model
    before = model.config._attn_implementation
    assert before != "eager"
    inputs = processor_inputs(agent.processor, *agent.prompts_and_images(observations[:1]), "cpu")
    with torch.no_grad():
        reference = model(**inputs).logits
        with eager_attention(model):
            assert model.config._attn_implementation == "eager"
            eager = model(**inputs).logits
    assert model.config._attn_implementation == before
    torch.testing.assert_close(eager, reference, atol=1e-4, rtol=1e-4)


def test_upsampling_and_default_layers():
    flat = upsample_map(np.full((8, 8), 0.25, np.float32), (256, 256))
    assert flat.shape == (256, 256) and np.allclose(flat, 0.25)
    ramp = upsample_map(np.tile(np.arange(8, dtype=np.float32), (8, 1)), (64, 64))
    assert ramp[0, 0] < ramp[0, 32] < ramp[0, 63] and np.allclose(ramp[:, 10], ramp[0, 10])
    assert default_layers(4) == [1, 2, 3, 4]
    assert default_layers(28) == [1, 5, 9, 13, 16, 20, 24, 28]


def test_grid_png_and_bad_layers(agent, observations, tmp_path):
    maps = attention_maps(agent.model, agent.processor, observations[0])
    path = tmp_path / "grid.png"
    fig = plot_attention_grid({"a": maps, "b": maps}, path, layers=[1, 4])
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert len(fig.axes) == 2 * 3 + 1  # 2 rows x (image + 2 layers) + the colour bar
    with pytest.raises(ValueError, match=r"1\.\.4"):
        plot_attention_grid({"a": maps}, tmp_path / "x.png", layers=[0])


def test_cli_attention_writes_the_grid(tmp_path, capsys):
    out = tmp_path / "att.png"
    assert main(["attention", "--model", "tiny-base", "--model", "again=tiny-base", "--seed", "3",
                 "--layers", "1,4", "--scale", "panel", "--out", str(out)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "8x8 image tokens" in printed and "again" in printed
