"""Multi-turn training: credit (hand-computed), the rows the loss sees, and the trainer over trajectories."""

import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import load_file  # noqa: E402

from agents.backends.base import Completion  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.credit import returns_to_go, trajectory_advantages, turn_advantages  # noqa: E402
from training.objectives import policy_loss  # noqa: E402
from training.policy_rows import policy_rows  # noqa: E402
from training.rollouts import Trajectory, Turn  # noqa: E402

SMALL = dict(model="tiny-base", max_steps=2, prompts_per_step=2, group_size=4, max_new_tokens=10,
             eval_episodes=0, eval_every=0, save_every=0, learning_rate=1e-3, seed=3, kl_coef=0.0)


@pytest.mark.parametrize("rewards, return_type, gamma, expected", [
    ([1.0, 2.0, 4.0], "sum", 1.0, [7.0, 6.0, 4.0]),
    ([1.0, 2.0, 4.0], "final", 1.0, [4.0, 4.0, 4.0]),
    ([1.0, 2.0, 4.0], "discounted", 0.5, [1 + 1 + 1.0, 2 + 2.0, 4.0]),
    ([-5.0], "sum", 1.0, [-5.0]),
    ([3.0, -1.0], "discounted", 0.0, [3.0, -1.0]),
])
def test_returns_to_go(rewards, return_type, gamma, expected):
    assert returns_to_go(rewards, return_type, gamma) == pytest.approx(expected)


@pytest.mark.parametrize("bad", [dict(rewards=[]), dict(rewards=[math.nan]), dict(return_type="total"),
                                 dict(gamma=1.5)])
def test_returns_reject_bad_input(bad):
    kwargs = {"rewards": [1.0], "return_type": "sum", "gamma": 1.0, **bad}
    with pytest.raises(ValueError):
        returns_to_go(**kwargs)


def test_trajectory_advantages_are_the_group_normalised_returns():
    groups = [[[1.0, 2.0], [3.0], [0.0, 0.0, 0.0]], [[5.0], [5.0], [5.0]]]
    adv = trajectory_advantages(groups, "sum")
    returns = [3.0, 3.0, 0.0]
    mean = sum(returns) / 3
    std = (sum((r - mean) ** 2 for r in returns) / 2) ** 0.5
    assert adv[0] == pytest.approx([(r - mean) / (std + 1e-4) for r in returns], rel=1e-6)
    assert adv[1] == [0.0, 0.0, 0.0]  # a degenerate group
    final = [2.0, 3.0, 0.0]
    m, s = sum(final) / 3, (sum((r - 5 / 3) ** 2 for r in final) / 2) ** 0.5
    assert trajectory_advantages(groups, "final")[0] == pytest.approx([(r - m) / (s + 1e-4) for r in final], rel=1e-6)


def test_turn_advantages_normalise_each_turn_over_the_trajectories_that_reached_it():
    groups = [[[1.0, 2.0, 4.0], [0.0, 6.0], [3.0]]]
    adv = turn_advantages(groups, "sum")[0]
    turn1 = [7.0, 6.0, 3.0]  # returns-to-go at turn 1
    m1, s1 = sum(turn1) / 3, (sum((r - 16 / 3) ** 2 for r in turn1) / 2) ** 0.5
    assert [a[0] for a in adv] == pytest.approx([(r - m1) / (s1 + 1e-4) for r in turn1], rel=1e-6)
    assert adv[0][1] == adv[1][1] == 0.0  # both returns-to-go at turn 2 are 6: zero advantage
    assert adv[0][2] == 0.0  # only one trajectory made a third turn


def test_gspo_pools_a_trajectorys_turns_into_one_ratio():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]], requires_grad=True)
    old = torch.tensor([[-1.5, -2.0], [-1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, 1.0])
    loss, stats = policy_loss(logp, old, adv, mask, level="sequence", sequence_ids=torch.tensor([7, 7]),
                              clip_eps_low=0.9, clip_eps_high=0.9)
    ratio = math.exp((0.5 + 0.0 + 0.5) / 3)  # one sequence: 3 tokens, log-ratios 0.5, 0, 0.5
    assert stats["ratio_max"] == pytest.approx(ratio) and stats["ratio_mean"] == pytest.approx(ratio)
    loss.backward()
    # loss = mean over the 2 rows of -ratio = -ratio; d/d logp_t = -ratio / 3 for each of the 3 pooled tokens
    assert logp.grad[0, 0] == pytest.approx(-ratio / 3) == logp.grad[1, 0] and logp.grad[1, 1] == 0.0
    separate, stats2 = policy_loss(logp.detach(), old, adv, mask, level="sequence")
    assert stats2["ratio_max"] != pytest.approx(ratio)


def _trajectory(group, rewards, token_ids, obs):
    traj = Trajectory("TopBlockXOnly-Retry-v0", 0, group)
    for k, (r, ids) in enumerate(zip(rewards, token_ids)):
        traj.turns.append(Turn(obs if k == 0 else {"turn": k}, Completion("x", ids, [-0.1] * len(ids), "stop"),
                               r, "stable"))
    return traj


def test_rows_are_the_generated_tokens_of_every_turn_and_nothing_else():
    obs = {"image": None, "prompt": "p", "history": ()}
    groups = [[_trajectory(0, [1.0, 20.0], [[5, 6, 2], [7, 2]], obs),
               _trajectory(0, [-2.0], [[8, 9, 9, 2]], obs)]]
    rows = policy_rows(groups, "trajectory", "final")
    assert rows.token_ids == [[5, 6, 2], [7, 2], [8, 9, 9, 2]]
    assert rows.trajectories == [0, 0, 1] and rows.turns == [0, 1, 0] and rows.groups == [0, 0, 0]
    assert rows.advantages[0] == rows.advantages[1] > 0 > rows.advantages[2]  # one advantage per trajectory
    assert [list(c) for c in rows.chunks(1)] == [[0, 2, 1]]  # first turns first: the group's prompt is shared
    assert [list(c) for c in rows.chunks(2)] == [[0, 1], [2]]  # a trajectory never splits
    turn_rows = policy_rows(groups, "turn", "sum")
    assert turn_rows.advantages[1] == 0.0  # only one trajectory made a second turn


def test_rollouts_keep_the_sampled_token_ids(tmp_path):
    """The loss's ids are the sampled ones, stop token included: re-tokenising the text would drop it."""
    from agents.vlm import VLMAgent
    from training.rollouts import EnvPool, collect_trajectories

    agent = VLMAgent.from_pretrained("tiny-base")
    config = TrainConfig(**SMALL, env_id="TopBlockXOnly-Retry-v0", output_dir=str(tmp_path))
    groups = collect_trajectories(agent, EnvPool(), ["TopBlockXOnly-Retry-v0"] * 2, [0, 1],
                                  config.sampling_params(seed=0))
    turns = [t for g in groups for traj in g for t in traj.turns]
    assert len(groups) == 2 and all(len(g) == 4 for g in groups) and len(turns) > 8  # several turns
    assert all(g[0].turns[0].observation is traj.turns[0].observation for g in groups for traj in g)
    later = [t for t in turns if t.observation["history"]]
    assert later and all(len(t.observation["history"]) >= 1 for t in later)
    rows = policy_rows(groups, "trajectory", "final", skip_degenerate=False)
    tokenizer = agent.processor.tokenizer
    stopped = [(ids, t) for ids, t in zip(rows.token_ids, turns) if t.completion.finish_reason == "stop"]
    assert stopped
    for ids, turn in stopped:
        assert ids == turn.completion.token_ids
        assert tokenizer.encode(turn.completion.text, add_special_tokens=False) != ids


def _adapter(out):
    return load_file(str(out / "checkpoints" / "step-000002" / "adapter_model.safetensors"))


def test_the_one_turn_case_trains_exactly_as_single_step(tmp_path):
    from training.trainer import Trainer

    single = TrainConfig(**SMALL, env_id="TopBlockXOnly-v0", output_dir=str(tmp_path / "single"))
    one_turn = TrainConfig(**SMALL, env_id="TopBlockXOnly-v0", env_kwargs={"interaction": "retry", "max_attempts": 1},
                           output_dir=str(tmp_path / "retry1"))
    Trainer(single).train(progress=False)
    Trainer(one_turn).train(progress=False)
    a, b = _adapter(tmp_path / "single"), _adapter(tmp_path / "retry1")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    import json

    def losses(run):
        return [json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    assert losses("single") == losses("retry1")


@pytest.mark.parametrize("objective, advantage", [("grpo", "trajectory"), ("gspo", "trajectory"), ("grpo", "turn")])
def test_multi_turn_runs_log_turns_and_move_the_adapter(tmp_path, objective, advantage):
    import json

    from training.trainer import Trainer

    config = TrainConfig(**SMALL, env_id="TopBlockXOnly-Retry-v0", objective=objective, advantage=advantage,
                         return_type="sum",
                         skip_degenerate_groups=False, grad_accum_steps=2, output_dir=str(tmp_path))
    Trainer(config).train(progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["turns_per_trajectory"] >= 1 and "success_rate" in r and "reward_turn_1" in r for r in rows)
    assert any(v.abs().sum() > 0 for k, v in _adapter(tmp_path).items() if "lora_B" in k)


def test_one_multi_turn_update_moves_every_turn_with_its_advantage(tmp_path, monkeypatch):
    """The sign over trajectories: after one GRPO update the rows' advantage-weighted log-probability rises."""
    import training.trainer as trainer_module
    from training.trainer import Trainer

    captured = []
    original = trainer_module.collect_trajectories
    monkeypatch.setattr(trainer_module, "collect_trajectories",
                        lambda *a, **k: captured.append(original(*a, **k)) or captured[-1])
    config = TrainConfig(**{**SMALL, "max_steps": 1, "group_size": 8, "prompts_per_step": 4},
                         env_id="TopBlockXOnly-Retry-v0", output_dir=str(tmp_path))
    trainer = Trainer(config)
    trainer.train(progress=False)
    rows = policy_rows(captured[0], "trajectory", config.return_type_for, 1.0, skip_degenerate=False)
    with torch.no_grad():
        after = [float(r.sum()) for r in trainer.agent.completion_logprobs(rows.observations, rows.token_ids)]
    before = [float(lp.sum()) for lp in rows.engine_logprobs]
    a = torch.tensor(rows.advantages)
    delta = torch.tensor(after) - torch.tensor(before)
    assert (a != 0).sum() >= 4 and max(rows.turns) >= 1, "too few informative multi-turn rows to test the sign"
    assert float((a * delta).sum()) > 0


def test_evaluations_log_sample_trajectories_to_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from training.trainer import Trainer

    config = TrainConfig(**{**SMALL, "max_steps": 1, "eval_episodes": 4}, env_id="TopBlockXOnly-Retry-v0",
                         output_dir=str(tmp_path))
    Trainer(config).train(progress=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    images = events.Images("trajectories/TopBlockXOnly-Retry-v0")
    assert [im.step for im in images] == [0, 1] and images[0].height > 256 and images[0].width > 256


def test_oracle_and_corrective_demonstrations():
    import gymnasium as gym

    import envs  # noqa: F401
    from training.demonstrations import oracle_demonstration

    env = gym.make("TowerBuild-v0")
    obs, info = env.reset(seed=0)
    demo = oracle_demonstration(env, obs, info)
    assert len(demo) == info["n_blocks"] and [len(o["history"]) for o, _ in demo] == list(range(len(demo)))
    retry = gym.make("TopBlockXOnly-Retry-v0")
    obs, info = retry.reset(seed=0)
    assert oracle_demonstration(retry, obs, info) == [(obs, info["optimal_action"])]
    obs, info = retry.reset(seed=0)
    (target_obs, target), = oracle_demonstration(retry, obs, info, first_attempt="<answer>300</answer>")
    assert target == info["optimal_action"] and target_obs["history"][0]["answer"] == "<answer>300</answer>"
    assert target_obs["prompt"].startswith("The tower")  # the feedback the correction answers
    obs, info = retry.reset(seed=0)  # a first attempt that succeeds leaves nothing to correct
    assert oracle_demonstration(retry, obs, info, first_attempt=info["optimal_action"]) == [
        (obs, info["optimal_action"])]


def test_corrective_sft_trains_on_the_correction_turns(tmp_path):
    from training.trainer import Trainer

    config = TrainConfig(**{**SMALL, "max_steps": 1}, objective="sft", env_id="TopBlockXOnly-Retry-v0",
                         sft_demonstrations="corrective", output_dir=str(tmp_path))
    trainer = Trainer(config)
    trainer.train(progress=False)
    assert any(v.abs().sum() > 0 for k, v in _adapter_at(tmp_path, 1).items() if "lora_B" in k)


def _adapter_at(out, step):
    return load_file(str(out / "checkpoints" / f"step-{step:06d}" / "adapter_model.safetensors"))


def test_a_tower_build_run_evaluates_without_a_constant_baseline(tmp_path):
    import json

    from training.trainer import Trainer

    config = TrainConfig(**{**SMALL, "max_steps": 1, "eval_episodes": 2, "group_size": 2}, objective="sft",
                         env_id="TowerBuild-v0", env_kwargs={"n_blocks": [2, 2]}, max_history_turns=1,
                         output_dir=str(tmp_path))
    result = Trainer(config).train(progress=False)
    assert result.after is not None and result.after.success_at_k is not None  # a multi-step evaluation
    row = json.loads((tmp_path / "result.json").read_text())["envs"]["TowerBuild-v0"]
    assert row["constant_answer"] is None and row["constant_baseline"] is None  # no constant COLOUR, X
    assert row["random_baseline"]["n_episodes"] == 2
