"""Checkpoints: PEFT-format adapter, optimizer/scheduler/RNG round trip, atomicity, pruning."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

peft = pytest.importorskip("peft")
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402

from training import checkpoints as ck  # noqa: E402
from training.checkpoints import latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint  # noqa: E402


class Toy(nn.Module):
    """Attention-like names so that LoRA targets match as on a Qwen model."""

    def __init__(self):
        super().__init__()
        self.q_proj, self.v_proj, self.out = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.q_proj(x)) + self.v_proj(x))


def make_base(seed=0):
    torch.manual_seed(seed)
    return Toy()


def make_peft(seed=0, name="default", r=4):
    return get_peft_model(
        make_base(seed), LoraConfig(r=r, lora_alpha=r, target_modules=["q_proj", "v_proj"]), adapter_name=name
    )


def make_opt(model):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    return opt, sched


def train(model, opt, sched, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, 8, generator=g)
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
        sched.step()


def lora_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def assert_same(a, b):
    assert a.keys() == b.keys() and a
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture
def trained():
    model = make_peft(0)
    opt, sched = make_opt(model)
    train(model, opt, sched, 3)  # LoRA B leaves zero: the adapter is non-trivial
    return model, opt, sched


def test_round_trip_restores_everything_and_training_continues_identically(tmp_path, trained):
    model, opt, sched = trained
    path = save_checkpoint(tmp_path, 3, model, opt, sched, extra_state={"cursor": 12, "env": {"seed": 7}})
    assert path == tmp_path / "checkpoints" / "step-000003"
    assert {
        "adapter_config.json",
        "adapter_model.safetensors",
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pt",
        "trainer_state.json",
    } <= {p.name for p in path.iterdir()}

    other = make_peft(1)  # different base init: only the adapter is restored, so compare adapters
    opt2, sched2 = make_opt(other)
    info = load_checkpoint(path, other, opt2, sched2)
    assert info["step"] == 3 and info["extra_state"] == {"cursor": 12, "env": {"seed": 7}}
    assert_same(lora_state(model), lora_state(other))
    assert sched2.last_epoch == sched.last_epoch and sched2.get_last_lr() == sched.get_last_lr()
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    for i in s1:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(s1[i][key], s2[i][key])

    # Same base, restored state: two more steps give bitwise-equal adapters.
    resumed = make_peft(0)
    opt3, sched3 = make_opt(resumed)
    load_checkpoint(path, resumed, opt3, sched3)
    train(model, opt, sched, 2, seed=1)
    train(resumed, opt3, sched3, 2, seed=1)
    assert_same(lora_state(model), lora_state(resumed))


def test_rng_states_restore_so_next_draws_repeat(tmp_path, trained):
    model, opt, sched = trained
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.normal()  # leaves a cached gaussian in numpy's state
    path = save_checkpoint(tmp_path, 1, model, opt, sched)
    expected = (random.random(), np.random.rand(3).tolist(), np.random.normal(), torch.rand(3).tolist())
    for _ in range(5):  # move every RNG on
        random.random(), np.random.rand(7), torch.rand(11)
    load_checkpoint(path, model)
    assert (
        random.random(),
        np.random.rand(3).tolist(),
        np.random.normal(),
        torch.rand(3).tolist(),
    ) == expected


def test_restore_rng_false_leaves_rngs_alone(tmp_path, trained):
    model, _, _ = trained
    path = save_checkpoint(tmp_path, 1, model)
    torch.manual_seed(123)
    expected = torch.rand(2)
    torch.manual_seed(123)
    load_checkpoint(path, model, restore_rng=False)
    assert torch.equal(torch.rand(2), expected)


@pytest.mark.parametrize("name", ["default", "policy"])
def test_plain_peft_from_pretrained_loads_the_saved_adapter(tmp_path, name):
    model = make_peft(0, name=name)
    opt, sched = make_opt(model)
    train(model, opt, sched, 3)
    path = save_checkpoint(tmp_path, 5, model, opt, sched)
    assert (path / "adapter_model.safetensors").is_file() and not (path / name).exists()
    loaded = PeftModel.from_pretrained(make_base(0), str(path))
    x = torch.randn(5, 8)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=0, rtol=0)
        assert not torch.allclose(make_base(0)(x), model(x))  # the adapter matters
    assert json.loads((path / "trainer_state.json").read_text())["adapter_name"] == name


def test_a_crash_mid_write_leaves_no_checkpoint_and_latest_unchanged(tmp_path, trained, monkeypatch):
    model, opt, sched = trained
    first = save_checkpoint(tmp_path, 1, model, opt, sched)
    real_save = torch.save

    def crash(obj, f, *a, **k):
        if str(f).endswith("scheduler.pt"):
            raise OSError("disk full (simulated)")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path, 2, model, opt, sched)
    root = tmp_path / "checkpoints"
    assert not (root / "step-000002").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]
    assert latest_checkpoint(tmp_path) == first


def test_latest_ignores_temporary_and_partial_folders(tmp_path, trained):
    model, opt, sched = trained
    good = save_checkpoint(tmp_path, 4, model, opt, sched)
    root = tmp_path / "checkpoints"
    # A write killed before its rename (SIGKILL: no cleanup ran) ...
    tmp = root / ".tmp-step-000009-abcd"
    tmp.mkdir()
    (tmp / "adapter_config.json").write_text("{}")
    # ... and a half-copied step folder, both newer than the good checkpoint.
    partial = root / "step-000008"
    partial.mkdir()
    (partial / "adapter_config.json").write_text("{}")
    (partial / "trainer_state.json").write_text('{"step": 8}')
    assert latest_checkpoint(tmp_path) == good
    (root / "latest").write_text("step-000008\n")  # even a pointer to it is not trusted
    assert latest_checkpoint(tmp_path) == good
    (root / "latest").unlink()
    assert latest_checkpoint(tmp_path) == good
    assert list_checkpoints(tmp_path) == [good]
    with pytest.raises(FileNotFoundError, match="no complete checkpoint"):
        load_checkpoint(partial, model)
    assert load_checkpoint(tmp_path, model)["path"] == good  # a run folder resolves to its latest
    save_checkpoint(tmp_path, 5, model, opt, sched)  # the next save cleans the temporary folder
    assert not tmp.exists()


def test_pointer_names_the_last_written_checkpoint(tmp_path, trained):
    model, opt, sched = trained
    save_checkpoint(tmp_path, 10, model, opt, sched)
    lower = save_checkpoint(tmp_path, 5, model, opt, sched)  # e.g. a run resumed from an earlier step
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step-000005"
    assert latest_checkpoint(tmp_path) == lower


def test_keep_last_prunes_old_checkpoints(tmp_path, trained):
    model, opt, sched = trained
    for step in range(1, 6):
        last = save_checkpoint(tmp_path, step * 10, model, opt, sched, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-000040", "step-000050"]
    assert latest_checkpoint(tmp_path) == last
    save_checkpoint(tmp_path, 60, model, keep_last=None)
    save_checkpoint(tmp_path, 70, model, keep_last=None)
    assert len(list_checkpoints(tmp_path)) == 4


def test_resaving_a_step_replaces_it(tmp_path, trained):
    model, opt, sched = trained
    save_checkpoint(tmp_path, 3, model, extra_state={"v": 1})
    path = save_checkpoint(tmp_path, 3, model, extra_state={"v": 2})
    assert load_checkpoint(path, model)["extra_state"] == {"v": 2}
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()] == ["step-000003"]


def test_non_json_extra_state_round_trips_through_torch(tmp_path, trained):
    model, _, _ = trained
    extra = {"buffer": torch.arange(5), "nan": float("nan")}
    path = save_checkpoint(tmp_path, 2, model, extra_state=extra)
    assert (path / "extra_state.pt").is_file()
    out = load_checkpoint(path, model)["extra_state"]
    assert torch.equal(out["buffer"], extra["buffer"]) and out["nan"] != out["nan"]


def test_numpy_scalars_and_nan_stay_json(tmp_path, trained):
    model, _, _ = trained
    rng_state = np.random.default_rng(5).bit_generator.state  # 128-bit ints: JSON keeps them exact
    extra = {"mean": np.float64(1.5), "n": np.int64(3), "ok": np.bool_(True), "nan": float("nan"), "env": rng_state}
    path = save_checkpoint(tmp_path, 2, model, extra_state=extra)
    assert not (path / "extra_state.pt").exists()
    out = load_checkpoint(path, model)["extra_state"]
    assert (out["mean"], out["n"], out["ok"], out["env"]) == (1.5, 3, True, rng_state) and out["nan"] != out["nan"]
    gen = np.random.default_rng()
    gen.bit_generator.state = out["env"]
    assert gen.random() == np.random.default_rng(5).random()


def test_a_mismatched_adapter_is_refused(tmp_path, trained):
    model, _, _ = trained
    path = save_checkpoint(tmp_path, 1, model)
    with pytest.raises((ValueError, RuntimeError)):
        load_checkpoint(path, make_peft(0, r=8))


def test_bad_arguments(tmp_path, trained):
    model, _, _ = trained
    assert latest_checkpoint(tmp_path) is None and list_checkpoints(tmp_path) == []
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(tmp_path, -1, model)
    with pytest.raises(ValueError, match="keep_last"):
        save_checkpoint(tmp_path, 1, model, keep_last=0)
    with pytest.raises(ValueError, match="no adapter"):
        save_checkpoint(tmp_path, 1, model, adapter_name="nope")


def test_tiny_vlm_adapter_round_trip_and_agent_loads_it(tmp_path):
    """The real thing: LoRA on the tiny Qwen2.5-VL, saved, then loaded by PEFT and by VLMAgent."""
    from transformers import AutoModelForImageTextToText

    from agents.tiny import tiny_model_path
    from agents.vlm import VLMAgent

    base_path = tiny_model_path()
    model = get_peft_model(
        AutoModelForImageTextToText.from_pretrained(base_path),
        LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.normal_()
    path = save_checkpoint(tmp_path, 1, model)
    loaded = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base_path), str(path))
    assert_same(lora_state(model), lora_state(loaded))
    agent = VLMAgent.from_pretrained("tiny", adapter=path, device="cpu")
    assert_same(lora_state(model), lora_state(agent.model))
    fresh = get_peft_model(
        AutoModelForImageTextToText.from_pretrained(base_path),
        LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"]),
    )
    load_checkpoint(path, fresh)
    assert_same(lora_state(model), lora_state(fresh))
    assert ck.CHECKPOINTS_DIR == "checkpoints"


_KILLED_WRITER = """
import sys, torch
sys.path.insert(0, {root!r})
from tests.training.test_checkpoints import make_opt, make_peft, train
from training.checkpoints import save_checkpoint
model = make_peft(0)
opt, sched = make_opt(model)
for step in range(1, 100000):
    train(model, opt, sched, 1)
    save_checkpoint({run!r}, step, model, opt, sched, extra_state={{"step": step}}, keep_last=2)
"""


@pytest.mark.slow
def test_sigkill_during_saves_leaves_a_loadable_latest(tmp_path):
    """Kill a process that checkpoints in a loop at an arbitrary moment: the latest checkpoint is complete."""
    import os
    import pathlib
    import signal
    import subprocess
    import sys
    import time

    root = str(pathlib.Path(__file__).resolve().parents[2])
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER.format(root=root, run=str(run))], cwd=root)
    try:
        deadline = time.monotonic() + 60
        while len(list_checkpoints(run)) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.137)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    latest = latest_checkpoint(run)
    assert latest is not None, "the writer made no checkpoint (did it fail to start?)"
    model = make_peft(0)
    opt, sched = make_opt(model)
    info = load_checkpoint(latest, model, opt, sched)
    assert info["step"] >= 3 and info["extra_state"] == {"step": info["step"]}
