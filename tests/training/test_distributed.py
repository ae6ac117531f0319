"""Data-parallel training (torchrun, gloo on CPU): 2 ranks end where 1 rank does; a killed 2-rank run resumes.

The 1-rank reference uses ``grad_accum_steps=2``: its two micro-batches are then the two ranks'
shards, so each forward/backward is the same computation and ``a + b`` (accumulation) equals
``a + b`` (all-reduce); every process runs one thread (torchrun's default for several ranks)
so that no GEMM splits its reductions differently. With ``grad_accum_steps=1`` the gradient sums
in another order and Adam turns those last-bit differences into ~1e-5 in the adapter.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from training.config_rules import ConfigError, check_world_size  # noqa: E402
from training.distributed import DistContext, from_env, prompt_seed, shard  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
RUN = dict(model="tiny-base", max_steps=3, prompts_per_step=4, group_size=4, max_new_tokens=8, eval_episodes=0,
           eval_every=0, save_every=1, learning_rate=1e-3, seed=3, rollout_seeding="prompt")
# Wall-clock figures differ run to run; every other logged figure must be equal bit for bit.
TIMED = ("time_rollout_s", "time_step_s", "completions_per_s", "tokens_per_s")
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
ENV.pop("WORLD_SIZE", None)

# Rank 0 dies (SIGKILL) right after writing its step-2 checkpoint; torchrun then stops rank 1.
DIE_AFTER_STEP_2 = """
import os, runpy, signal, sys
import training.trainer as trainer
save = trainer.save_checkpoint
def save_then_die(run_dir, step, *args, **kwargs):
    path = save(run_dir, step, *args, **kwargs)
    if step == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return path
trainer.save_checkpoint = save_then_die
sys.argv = ["cubeworld", *sys.argv[1:]]
runpy.run_module("cubeworld", run_name="__main__")
"""


def _args(out: Path, **sets) -> list[str]:
    args = ["train", "--quiet", "--output-dir", str(out)]
    for key, value in {**RUN, **sets}.items():
        args += ["--set", f"{key}={value}"]
    return args


def _torchrun(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    proc = subprocess.run(cmd, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=600)
    if check and proc.returncode:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def _logged(out: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMED}
            for line in (out / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(a: Path, b: Path) -> None:
    assert _logged(a) == _logged(b)  # rewards, losses, gradient norms: bitwise-equal JSON
    wa = load_file(str(a / "checkpoints" / "step-000003" / "adapter_model.safetensors"))
    wb = load_file(str(b / "checkpoints" / "step-000003" / "adapter_model.safetensors"))
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.allclose(wa[key], wb[key], rtol=0, atol=1e-5), (key, float((wa[key] - wb[key]).abs().max()))


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("distributed") / "one"
    subprocess.run([sys.executable, "-m", "cubeworld", *_args(out, grad_accum_steps=2)], env=ENV, cwd=REPO,
                   check=True, capture_output=True)
    return out


def test_two_gloo_ranks_end_at_the_one_rank_adapter(one_rank, tmp_path):
    _torchrun("-m", "cubeworld", *_args(tmp_path / "two"))
    _assert_same_run(one_rank, tmp_path / "two")
    assert not (tmp_path / "two" / "rollout_adapter-rank1").exists()  # hf reads the live adapter


def test_a_killed_two_rank_run_resumes_to_the_same_adapter(one_rank, tmp_path):
    script, out = tmp_path / "die_after_step_2.py", tmp_path / "killed"
    script.write_text(DIE_AFTER_STEP_2)
    killed = _torchrun(str(script), *_args(out), check=False)
    assert killed.returncode != 0, "the run survived its rank 0's death"
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step-"))
    assert checkpoints == ["step-000001", "step-000002"]
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-000002"
    _torchrun("-m", "cubeworld", *_args(out), "--resume")
    _assert_same_run(one_rank, out)


def test_shards_are_contiguous_cover_every_index_once_and_differ_by_at_most_one():
    for n in range(1, 12):
        for world in range(1, 5):
            parts = [shard(n, DistContext(rank=r, world_size=world)) for r in range(world)]
            assert [i for p in parts for i in p] == list(range(n))
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_prompt_seeds_depend_on_step_seed_and_index_only():
    seeds = {prompt_seed(s, i) for s in range(20) for i in range(20)}
    assert len(seeds) == 400 and all(0 <= x < 2**31 - 1 for x in seeds)
    assert prompt_seed(7, 3) == prompt_seed(7, 3)


def test_world_size_rules_name_the_value_and_the_fix(monkeypatch):
    check_world_size(4, None, 2)
    check_world_size(4, "step", 1)
    with pytest.raises(ConfigError, match="prompts_per_step=1 is global.*world size 2"):
        check_world_size(1, "prompt", 2)
    with pytest.raises(ConfigError, match="use rollout_seeding=prompt"):
        check_world_size(4, "step", 2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert from_env() == DistContext()  # no launcher: one process, no process group
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an integer"):
        from_env()
