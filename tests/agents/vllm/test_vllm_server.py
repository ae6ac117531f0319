"""Rollouts from a vLLM server, for real: ``cubeworld serve-rollouts tiny-base`` and ``backend: vllm-server``.

Runs only where vLLM is installed (``bash scripts/setup_vllm_env.sh``; CI's second stage). The server is
started as a user starts it (``python -m cubeworld serve-rollouts tiny-base`` on a free localhost port,
with an API key), waited for through ``/health`` with a deadline, and always stopped by the test (its
whole process group: the API server and vLLM's engine process). Checked:

* a 3-step GRPO run generates every rollout on the server; after every publish (before the first
  generation, then after each update) the server's log-probs of fresh completions equal the learner's
  teacher-forced ones under the same adapter within 1e-4 (fp32): each update is served, not a stale one;
  the server lists only the newest adapter version;
* the server killed mid-run fails the next step with :class:`RolloutServerError` naming its URL and how
  to continue; once a server is back on that URL, ``train(resume=True)`` finishes the run from the last
  checkpoint, its updates served too;
* multi-image chats (a multi-step observation's earlier turns) are served with log-probs equal to the
  learner's, seeded requests repeat, and a prompt over the server's image limit, a wrong API key, a
  request that times out, an unreachable URL and a server command without a key give clear errors.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

if importlib.util.find_spec("vllm") is None:
    pytest.skip("vLLM is not installed (its tests run in the environment of scripts/setup_vllm_env.sh)",
                allow_module_level=True)

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
requests = pytest.importorskip("requests")

from agents.backends.base import SamplingParams  # noqa: E402
from agents.backends.vllm_server import API_KEY_ENV, RolloutServerError, VLLMServerBackend  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.trainer import Trainer  # noqa: E402

TOL = 1e-4
START_TIMEOUT_S = 420  # vLLM's start on 2 busy CI cores (about 20 s on an idle machine)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RolloutServer:
    """``cubeworld serve-rollouts tiny-base`` in its own process group, logging to ``log``."""

    def __init__(self, port: int, key: str, log: Path):
        self.url, self.key, self.log, self.port = f"http://127.0.0.1:{port}", key, log, port
        self.process: subprocess.Popen | None = None

    def start(self) -> RolloutServer:
        if self.process is not None and self.process.poll() is None:
            return self  # running
        env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}  # the key comes from --api-key
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cubeworld", "serve-rollouts", "tiny-base", "--port", str(self.port),
                 "--api-key", self.key, "--dtype", "float32", "--max-lora-rank", "8", "--max-images-per-prompt", "4"],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"serve-rollouts exited with code {self.process.returncode}:\n{self.tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/health", timeout=5).status_code == 200:
                    return self
            time.sleep(1)
        self.stop()
        pytest.fail(f"serve-rollouts was not healthy after {START_TIMEOUT_S} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole group (a crash: no clean shutdown)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM (vLLM shuts its engine down), SIGKILL what is left after 30 s."""
        self._signal(signal.SIGTERM)

    def _signal(self, sig: int) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):  # the engine process, should it outlive its parent
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None

    def served_models(self) -> list[str]:
        reply = requests.get(self.url + "/v1/models", headers={"Authorization": f"Bearer {self.key}"}, timeout=30)
        reply.raise_for_status()
        return sorted(m["id"] for m in reply.json()["data"])


@pytest.fixture(scope="module")
def server(vllm_environment, tmp_path_factory):
    """One server on a free port for the module's tests (each restarts it if it is down); stopped at the
    end whatever happens."""
    srv = RolloutServer(_free_port(), secrets.token_urlsafe(16), tmp_path_factory.mktemp("server") / "server.log")
    try:
        yield srv.start()
    finally:
        srv.stop()


def _checking_publish(trainer, probes, gaps, after=None):
    """After each publish: the server's log-probs of fresh completions vs the learner's; then ``after(step)``."""
    publish = trainer._publish_adapter

    def checked(step):
        publish(step)
        agent = trainer.agent
        groups = agent.sample(probes, params=SamplingParams(temperature=1.0, max_new_tokens=8, n=2, seed=step))
        completions = [c for group in groups for c in group]
        obs = [o for o, group in zip(probes, groups) for _ in group]
        trainer.model.eval()
        with torch.no_grad():
            learner = agent.completion_logprobs(obs, [c.token_ids for c in completions])
        worst = max(float((torch.tensor(c.logprobs) - row).abs().max())
                    for c, row in zip(completions, learner) if c.token_ids)
        gaps.append((step, worst))
        if after is not None:
            after(step)

    trainer._publish_adapter = checked


def test_training_on_a_rollout_server_serves_every_update_and_resumes_after_a_crash(server, observations, tmp_path):
    server.start()
    config = TrainConfig(model="tiny-base", backend="vllm-server", vllm_server_urls=[server.url],
                         vllm_server_api_key=server.key, vllm_server_timeout_s=120, device="cpu", dtype="float32",
                         max_steps=3, prompts_per_step=2, group_size=4, max_new_tokens=12, learning_rate=5e-3,
                         lora_r=8, lora_alpha=8, kl_coef=0.0, eval_episodes=0, eval_every=0, save_every=1, seed=1,
                         output_dir=str(tmp_path / "run"))
    assert config.tis_enabled
    probes = observations[:2]
    gaps: list[tuple[int, float]] = []
    listed: dict[int, tuple[list[str], list[str], str]] = {}

    def crash_after_step_2(step):
        backend = first.agent.backend
        listed[step] = (server.served_models(), sorted([backend.base_model[server.url], backend._served["default"]]),
                        backend._served["default"])
        if step == 2:
            server.kill()  # step 2 is still checkpointed (after its publish); step 3's rollouts find no server

    first = Trainer(config)  # the backend built from the config, as `cubeworld train` does
    _checking_publish(first, probes, gaps, after=crash_after_step_2)
    with pytest.raises(RolloutServerError) as failure:
        first.train(progress=False)
    message = str(failure.value)
    assert server.url in message and "--resume" in message, message
    assert first.agent.backend.name == "vllm-server"
    assert [s for s, _ in gaps] == [0, 1, 2]
    assert all(served == expected for served, expected, _ in listed.values()), listed  # old versions unloaded
    assert len({name for _, _, name in listed.values()}) == 3  # a new served name per version
    assert (tmp_path / "run" / "checkpoints" / "step-000002").exists()

    server.start()  # back on the same URL
    second = Trainer(config)  # a fresh process's view: new agent, new backend
    _checking_publish(second, probes, gaps)
    result = second.train(resume=True, progress=False)

    assert [s for s, _ in gaps] == [0, 1, 2, 2, 3]
    assert all(gap < TOL for _, gap in gaps), gaps
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3]
    trained = [r for r in rows if r.get("groups_used")]
    assert trained and all(r["logprob_gap"] < TOL for r in trained), rows
    assert result.steps == 3
    moved = any("lora_B" in n and p.abs().sum() > 0 for n, p in second.model.named_parameters())
    assert moved, "the adapter never changed: the comparisons above would prove nothing"


def _multi_step(observations, n_turns: int) -> dict:
    """A multi-step observation over real scenes: ``n_turns`` earlier turns (scenes 0..), then scene ``n_turns``."""
    history = tuple({"image": observations[k]["image"], "prompt": observations[0]["prompt"] if k == 0
                     else "It fell. Try again.", "answer": f"<answer>{30 * k - 45}</answer>"} for k in range(n_turns))
    return {"image": observations[n_turns]["image"], "prompt": "It fell. Try again.", "history": history}


def test_multi_image_chats_match_teacher_forcing_and_errors_are_clear(server, observations, tmp_path, monkeypatch,
                                                                     capsys):
    from peft import LoraConfig

    from agents.vlm import VLMAgent, _locate_model, load_processor
    from cubeworld.cli import main

    server.start()
    agent = VLMAgent.from_pretrained("tiny-base", backend="vllm-server", device="cpu", dtype="float32",
                                     backend_options={"urls": [server.url], "api_key": server.key})
    batch = [observations[5], _multi_step(observations, 1), _multi_step(observations, 3)]
    assert [p.count("<|image_pad|>") for p in agent.prompts_and_images(batch)[0]] == [1, 2, 4]
    params = SamplingParams(temperature=1.0, max_new_tokens=24, n=2, seed=13)
    groups = agent.sample(batch, params=params)
    completions = [c for g in groups for c in g]
    assert len(completions) == 6 and all(c.token_ids for c in completions)
    with torch.no_grad():
        scored = agent.completion_logprobs([o for o, g in zip(batch, groups) for _ in g],
                                           [c.token_ids for c in completions])
    worst = max((got - torch.tensor(c.logprobs)).abs().max().item() for c, got in zip(completions, scored))
    assert worst < TOL, f"the server's multi-image log-probs differ from the learner's by {worst:.2e}"
    again = [c.token_ids for g in agent.sample(batch, params=params) for c in g]
    assert again == [c.token_ids for c in completions]  # seeded requests repeat
    with pytest.raises(RolloutServerError, match=re.escape(f"rollout server {server.url} answered") + ".*HTTP 400"):
        agent.sample([_multi_step(observations, 4)], params=params)  # 5 images, over the server's 4

    # Two backends (a resumed run while the server kept a crashed run's adapters) publish the same version.
    agent.load_adapter(LoraConfig(r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"]), name="default")
    agent.model.save_pretrained(str(tmp_path / "v1"))
    agent.mark_adapter_updated(path=tmp_path / "v1")
    agent.sample(batch[:1], params=params)
    other = VLLMServerBackend([server.url], agent.processor, agent.backend.model_path, api_key=server.key)
    assert other.generate(*agent.prompts_and_images(batch[:1]), params, adapter=agent._adapter_request())
    assert other._served["default"] != agent.backend._served["default"]

    path = _locate_model("tiny-base")
    processor = load_processor(path)
    with pytest.raises(RolloutServerError, match="rejected the API key"):
        VLLMServerBackend([server.url], processor, path, api_key="not-the-key")
    backend = agent.backend
    backend.timeout_s = 1e-3  # no generation answers within a millisecond
    with pytest.raises(RolloutServerError, match=re.escape(f"rollout server {server.url} did not answer")):
        agent.sample(batch[:1], params=params)
    backend.timeout_s = 120.0
    nobody = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(RolloutServerError, match=re.escape(f"rollout server {nobody} is unreachable")):
        VLLMServerBackend([nobody], processor, path, api_key="k", timeout_s=10)

    monkeypatch.delenv(API_KEY_ENV, raising=False)
    assert main(["serve-rollouts", "tiny-base"]) == 2
    assert "needs an API key" in capsys.readouterr().err
