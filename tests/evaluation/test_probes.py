"""Probes: planted signals are found, noise is not; feature shapes on the tiny model; the CLI end to end."""

import json

import numpy as np
import pytest

from cubeworld.cli import main
from cubeworld.cli_probe import ModelSpec, parse_model_spec
from evaluation import ProbeResult, extract_features, fit_probes, probe_scenes
from evaluation.probes import plot_probe_curves


def _planted(n_scenes=300, n_features=24, seed=0):
    """Layer 0: noise. Layer 1: the offset along one direction. Layer 2: stability along another."""
    rng = np.random.default_rng(seed)
    offset = rng.uniform(-1, 1, n_scenes)
    stability = np.abs(offset) < 0.5
    feats = rng.normal(size=(3, n_scenes, n_features)).astype(np.float32)
    feats[1] += np.outer(offset, rng.normal(size=n_features)) * 2.0
    feats[2] += np.outer(stability.astype(float) - 0.5, rng.normal(size=n_features)) * 2.0
    return feats, stability, offset


def test_planted_signals_are_recovered_and_noise_is_not():
    feats, stability, offset = _planted()
    result = fit_probes(feats, stability, offset, n_folds=10, seed=0, label="planted")
    assert result.stability_folds.shape == result.offset_folds.shape == (3, 10)
    assert result.chance_accuracy == pytest.approx(max(stability.mean(), 1 - stability.mean()))
    assert result.offset_mean[1] > 0.9              # the offset layer
    assert result.stability_mean[2] > 0.95          # the stability layer
    assert result.offset_mean[0] <= 0.1             # noise: no R^2
    assert abs(result.stability_mean[0] - result.chance_accuracy) < 0.1
    # stability is |offset| < 0.5: not linear in the offset, so the offset layer cannot read it
    assert result.stability_mean[1] < result.stability_mean[2] - 0.2
    assert np.all(result.stability_std >= 0) and np.all(result.offset_std > 0)


def test_same_folds_same_scores_and_seed_matters():
    feats, stability, offset = _planted(n_scenes=120)
    a = fit_probes(feats, stability, offset, n_folds=5, seed=1)
    b = fit_probes(feats, stability, offset, n_folds=5, seed=1)
    c = fit_probes(feats, stability, offset, n_folds=5, seed=2)
    np.testing.assert_array_equal(a.offset_folds, b.offset_folds)
    assert not np.array_equal(a.offset_folds, c.offset_folds)


def test_bad_input_names_the_problem():
    feats, stability, offset = _planted(n_scenes=40)
    with pytest.raises(ValueError, match="n_layers, n_scenes, n_features"):
        fit_probes(feats[0], stability, offset)
    with pytest.raises(ValueError, match=r"\(40,\)"):
        fit_probes(feats, stability[:-1], offset)
    with pytest.raises(ValueError, match="rarer stability class"):
        fit_probes(feats, np.r_[np.ones(37, bool), np.zeros(3, bool)], offset, n_folds=5)
    bad = feats.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="finite"):
        fit_probes(bad, stability, offset)


def test_result_round_trips_through_json_and_plots(tmp_path):
    feats, stability, offset = _planted(n_scenes=60)
    result = fit_probes(feats, stability, offset, n_folds=3, label="x", meta={"model": "m"})
    again = ProbeResult.from_dict(json.loads(json.dumps(result.to_dict())))
    np.testing.assert_allclose(again.stability_folds, result.stability_folds)
    np.testing.assert_allclose(again.offset_folds, result.offset_folds)
    assert (again.label, again.n_scenes, again.n_folds, again.meta) == ("x", 60, 3, {"model": "m"})
    assert "layer" in result.table() and len(result.table().splitlines()) == 2 + 3
    path = tmp_path / "curves.png"
    plot_probe_curves([result, again], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scenes_carry_ground_truth():
    data = probe_scenes(6, seed=5)
    assert len(data.observations) == 6 and data.seeds.tolist() == list(range(5, 11))
    assert data.stability.dtype == bool and data.offset.dtype == np.float64
    # the same scenes as TopBlockXOnly-v0 (only the prompt differs)
    other = probe_scenes(6, seed=5, env_id="TopBlockXOnly-v0")
    np.testing.assert_array_equal(other.offset, data.offset)
    assert other.observations[0]["prompt"] != data.observations[0]["prompt"]
    with pytest.raises(ValueError, match="n_scenes"):
        probe_scenes(1)


@pytest.fixture(scope="module")
def tiny_base():
    from agents.vlm import VLMAgent

    return VLMAgent.from_pretrained("tiny-base", device="cpu")


def test_features_have_the_documented_shape(tiny_base):
    data = probe_scenes(5, seed=0)
    model, processor = tiny_base.model, tiny_base.processor
    feats = extract_features(model, processor, data.observations, batch_size=2)
    n_layers = model.config.text_config.num_hidden_layers + 1
    assert feats.shape == (n_layers, 5, model.config.text_config.hidden_size) == (5, 5, 128)
    assert feats.dtype == np.float32 and np.isfinite(feats).all()
    # batching does not change the features; each scene's are its own
    np.testing.assert_allclose(extract_features(model, processor, data.observations, batch_size=5), feats,
                               atol=1e-4)
    assert not np.allclose(feats[:, 0], feats[:, 1])
    last = extract_features(model, processor, data.observations[:2], pool="last_token")
    assert last.shape == (5, 2, 128) and not np.allclose(last[2], feats[2, :2])
    with pytest.raises(ValueError, match="pool"):
        extract_features(model, processor, data.observations, pool="max")


def test_features_follow_a_lora_adapter(tiny_base):
    import torch
    from peft import LoraConfig, get_peft_model

    data = probe_scenes(3, seed=0)
    base = extract_features(tiny_base.model, tiny_base.processor, data.observations)
    torch.manual_seed(0)
    config = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(tiny_base.model, config)
    try:
        adapted = extract_features(peft_model, tiny_base.processor, data.observations)
        # LoRA on the language model only: the embedding output (layer 0) is unchanged, later layers move
        np.testing.assert_allclose(adapted[0], base[0], atol=1e-5)
        assert np.abs(adapted[1:] - base[1:]).max() > 1e-3
    finally:
        tiny_base.model = peft_model.unload()


@pytest.mark.parametrize("text, expected", [
    ("tiny", ModelSpec("tiny", "tiny", None)),
    ("base=tiny-base", ModelSpec("base", "tiny-base", None)),
    ("rl=tiny-base+adapter=runs/a/final", ModelSpec("rl", "tiny-base", "runs/a/final")),
    ("tiny-base:3+adapter=ad", ModelSpec("tiny-base:3+adapter=ad", "tiny-base:3", "ad")),
])
def test_model_specs(text, expected):
    assert parse_model_spec(text) == expected


@pytest.mark.parametrize("text", ["=tiny", "x=", "x=tiny+adapter=", "+adapter=ad"])
def test_bad_model_specs(text):
    with pytest.raises(ValueError, match="LABEL=MODEL"):
        parse_model_spec(text)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    """A LoRA adapter of tiny-base with random (non-zero) B, saved in PEFT format."""
    import torch
    from peft import LoraConfig, get_peft_model

    from agents.vlm import VLMAgent

    agent = VLMAgent.from_pretrained("tiny-base", device="cpu")
    torch.manual_seed(0)
    model = get_peft_model(agent.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                   init_lora_weights=False))
    path = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(path)
    return path


def test_cli_probes_two_models_end_to_end(tmp_path, adapter_dir, capsys):
    out = tmp_path / "probes"
    code = main(["probe", "--model", "tiny", "--model", f"rl=tiny-base+adapter={adapter_dir}",
                 "--model", f"tiny-base+adapter={adapter_dir}",
                 "-n", "40", "--folds", "5", "--out", str(out)])
    assert code == 0
    payload = json.loads((out / "probes.json").read_text())
    assert list(payload["models"]) == ["tiny", "rl", f"tiny-base+adapter={adapter_dir}"]
    assert payload["settings"]["n_scenes"] == 40 and payload["settings"]["n_folds"] == 5
    for entry in payload["models"].values():
        assert len(entry["stability_accuracy_mean"]) == len(entry["offset_r2_mean"]) == 5
        assert np.asarray(entry["stability_accuracy_folds"]).shape == (5, 5)
    # the same model and adapter, labelled or not, give the same numbers
    rl, pair = payload["models"]["rl"], payload["models"][f"tiny-base+adapter={adapter_dir}"]
    assert rl["offset_r2_folds"] == pair["offset_r2_folds"]
    assert payload["models"]["rl"]["meta"]["adapter"] == str(adapter_dir)
    assert (out / "probes.png").read_bytes()[:4] == b"\x89PNG"
    assert "stability acc" in capsys.readouterr().out


def test_cli_reports_bad_models(tmp_path, capsys):
    assert main(["probe", "--model", "tiny-base+adapter=/no/such/adapter", "-n", "20", "--folds", "2",
                 "--out", str(tmp_path)]) == 2
    assert "/no/such/adapter" in capsys.readouterr().err
    assert main(["probe", "--model", "tiny-base", "-n", "10", "--folds", "10", "--out", str(tmp_path)]) == 2
    assert "--folds 10 and -n 10" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one adapter syntax: MODEL+adapter=DIR, no --adapter option
        main(["probe", "--model", "tiny", "--adapter", "x"])
    assert "unrecognized arguments: --adapter" in capsys.readouterr().err
