"""TrainConfig: defaults, validation messages, YAML + overrides, argparse, the shipped configs."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest

import configs
from training.config import ConfigError, TrainConfig

REPO = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))
TASKS = {"top_block_stability": "TopBlockStability-v0", "top_block_x_only": "TopBlockXOnly-v0",
         "side_block_x_only": "SideBlockXOnly-v0", "side_block_xy": "SideBlockXY-v0"}


def test_defaults_are_the_cpu_quickstart():
    cfg = TrainConfig()
    assert (cfg.model, cfg.env_id, cfg.objective, cfg.group_size, cfg.backend) == \
        ("tiny-base", "TopBlockXOnly-v0", "grpo", 16, "hf")
    assert cfg.batch_size == 64 and cfg.micro_batch_size == 64 and cfg.completions_per_scene == 16
    assert cfg.env_weights == {"TopBlockXOnly-v0": 1.0}
    assert cfg.eval_seeds == range(1_000_000, 1_000_256)
    assert cfg.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert TrainConfig().target_modules is not cfg.target_modules  # no shared mutable default


def test_quickstart_yaml_is_exactly_the_defaults():
    """`cubeworld train` (its default --config is the shipped quickstart) runs the built-in defaults."""
    assert configs.find(configs.DEFAULT) == REPO / "configs" / "quickstart.yaml"
    assert TrainConfig.from_yaml(configs.DEFAULT) == TrainConfig()


def test_shipped_configs_are_addressable_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # names work from any folder, not only the checkout's root
    path = REPO / "configs" / "paper" / "grpo_top_block_x_only.yaml"
    for name in ("paper/grpo_top_block_x_only", "paper/grpo_top_block_x_only.yaml",
                 "configs/paper/grpo_top_block_x_only.yaml", str(path)):
        assert configs.find(name).resolve() == path
    assert TrainConfig.from_yaml("paper/grpo_top_block_x_only") == TrainConfig.from_yaml(path)
    assert len(configs.names()) == len(CONFIGS) and "quickstart" in configs.names()
    (tmp_path / "quickstart").write_text("max_steps: 3\n")  # a file beats a shipped name
    assert TrainConfig.from_yaml("quickstart").max_steps == 3


@pytest.mark.parametrize("name,message", [
    ("paper/grpo_top_block_x_onyl", "did you mean paper/grpo_top_block_x_only"),
    ("grpo_top_block_x_only", "did you mean paper/grpo_top_block_x_only"),
    ("nope.yaml", "shipped: multiturn/grpo_build, multiturn/grpo_retry_top_block_x_only"),
    ("../configs/quickstart", "names no shipped config"),
    ("paper", "is a folder"),
])
def test_unknown_config_names_list_close_matches(name, message, monkeypatch):
    monkeypatch.chdir(REPO / "configs")
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_yaml(name)
    assert message in str(info.value) and repr(name) in str(info.value) and "\n" not in str(info.value)


def test_every_field_is_documented_and_becomes_a_flag():
    import argparse

    parser = TrainConfig.add_arguments(argparse.ArgumentParser())
    flags = {a.dest: a for a in parser._actions}
    for f in dataclasses.fields(TrainConfig):
        assert f.metadata["help"].strip(), f"{f.name} has no metadata help"
        assert f.metadata["help"] in flags["field_" + f.name].help


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(REPO)) for p in CONFIGS])
def test_every_shipped_config_loads_and_validates(path):
    cfg = TrainConfig.from_yaml(path)
    assert cfg.output_dir


def test_paper_configs_cover_tasks_objectives_and_ablations():
    paper = {p.stem: TrainConfig.from_yaml(p) for p in (REPO / "configs" / "paper").glob("*.yaml")}
    for slug, env_id in TASKS.items():
        for objective in ("grpo", "sft"):
            cfg = paper[f"{objective}_{slug}"]
            assert (cfg.env_id, cfg.objective) == (env_id, objective)
            assert cfg.model.startswith("Qwen/") and cfg.load_in_4bit and cfg.backend == "vllm"
            assert cfg.lora_r == cfg.lora_alpha == 16 and not cfg.train_vision and cfg.kl_coef == 0
            if objective == "grpo":
                assert cfg.group_size == 16
    assert sorted(c.lora_r for n, c in paper.items() if n.startswith("ablation_rank")) == [4, 64]
    vision = [c for n, c in paper.items() if c.train_vision]
    assert len(vision) == 1 and vision[0].lora_r == 16
    assert len({c.output_dir for c in paper.values()}) == len(paper)  # no two runs share a folder


# (kwargs, a fragment of the message): each message names the value and the rule.
INVALID = [
    (dict(group_size=1), "group_size must be >= 2 for grpo: advantages are relative to the group; got 1"),
    (dict(group_size=1, objective="gspo"), "group_size must be >= 2 for gspo"),
    (dict(objective="ppo"), "objective must be one of ['grpo', 'gspo', 'sft']; got 'ppo'"),
    (dict(objective="GRPO"), "did you mean 'grpo'"),
    (dict(lora_r=0), "lora_r must be >= 1 (the LoRA adapter's rank; the paper uses 16); got 0"),
    (dict(lora_alpha=0), "lora_alpha must be >= 1"),
    (dict(lora_r=4.5), "lora_r must be an integer; got 4.5"),
    (dict(grad_accum_steps=3), "(prompts_per_step * group_size = 64 completions) must be divisible by "
                               "grad_accum_steps=3; pick a divisor of 64"),
    (dict(objective="sft", group_size=1, prompts_per_step=6, grad_accum_steps=4),
     "(prompts_per_step * group_size = 6 completions) must be divisible by grad_accum_steps=4"),
    (dict(max_grad_norm=0), "max_grad_norm must be > 0 (clipping to 0 would zero every gradient); got 0.0"),
    (dict(env_id="TopBlockXonly-v0"), "unknown env id 'TopBlockXonly-v0' (did you mean 'TopBlockXOnly-v0'"),
    (dict(env_id="envs:NoSuchEnv-v0"), "unknown env id 'envs:NoSuchEnv-v0'"),
    (dict(env_id="no_such_module_xyz:Foo-v0"), "cannot import module 'no_such_module_xyz'"),
    (dict(env_mix={"TopBlockXOnly-v0": 1, "SideBlockXy-v0": 1}), "did you mean 'SideBlockXY-v0'"),
    (dict(env_mix={"TopBlockXOnly-v0": 0}), "env_mix weight of 'TopBlockXOnly-v0' must be a number > 0; got 0"),
    (dict(env_mix={"TopBlockXOnly-v0": -1.0}), "must be a number > 0; got -1.0"),
    (dict(env_mix={}), "env_mix must be None or a non-empty"),
    (dict(env_kwargs={"img_size": 112}), "env_kwargs key 'img_size' is not an argument of TopBlockXOnly-v0 "
                                         "(did you mean 'image_size'"),
    (dict(sft_demonstrations="expert"), "sft_demonstrations must be one of ['oracle', 'corrective']"),
    (dict(advantage="turns"), "advantage must be one of ['trajectory', 'turn']"),
    (dict(return_type="total"), "return_type must be null (per protocol) or one of ['sum', 'final', 'discounted']"),
    (dict(gamma=1.5), "gamma must be in [0, 1]"),
    (dict(max_history_turns=-1), "max_history_turns must be null (all turns) or >= 0"),
    (dict(mix_schedule="random"), "mix_schedule must be one of ['interleaved', 'blocked']"),
    (dict(clip_eps_low=0.0), "clip_eps_low must be in (0, 1)"),
    (dict(clip_eps_high=1.5), "clip_eps_high must be in (0, 1)"),
    (dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
    (dict(eval_every=-1), "eval_every must be >= 0 (0: evaluate only before and after training); got -1"),
    (dict(save_every=-5), "save_every must be >= 0"),
    (dict(log_every=0), "log_every must be >= 1"),
    (dict(learning_rate=0), "learning_rate must be > 0"),
    (dict(learning_rate="fast"), "learning_rate must be a number; got 'fast'"),
    (dict(learning_rate=float("nan")), "learning_rate must be a finite number"),
    (dict(group_size=True), "group_size must be a finite integer; got True"),
    (dict(warmup_steps=300), "warmup_steps (300) must be <= max_steps (200)"),
    (dict(temperature=0), "temperature must be > 0 for grpo"),
    (dict(top_p=0), "top_p must be in (0, 1]"),
    (dict(min_p=1.0), "min_p must be in [0, 1) (0 disables min-p sampling); got 1.0"),
    (dict(min_p=-0.1), "min_p must be in [0, 1)"),
    (dict(eval_min_p=1.0), "eval_min_p must be in [0, 1)"),
    (dict(eval_top_p=0), "eval_top_p must be in (0, 1]"),
    (dict(eval_temperature=-1), "eval_temperature must be >= 0; got -1.0"),
    (dict(eval_max_new_tokens=0), "eval_max_new_tokens must be >= 1 (an answer needs at least one token); got 0"),
    (dict(lora_dropout=1.0), "lora_dropout must be in [0, 1)"),
    (dict(eval_seed=100), "eval_seed (100) is too small: training draws scene seeds from [0, eval_seed)"),
    (dict(eval_episodes=0), "eval_every=50 asks for evaluation but eval_episodes is 0"),
    (dict(backend="vllm", device="mps"), "backend='vllm' runs on CUDA or CPU, not mps"),
    (dict(num_iterations=0), "num_iterations must be >= 1 (updates per rollout batch; 1 is on-policy"),
    (dict(objective="sft", num_iterations=2), "num_iterations=2 reuses a rollout batch, but sft has none"),
    (dict(tis_cap=0), "tis_cap must be > 0 (the TIS weight is min(ratio, tis_cap)); got 0.0"),
    (dict(tis_cap=-1), "tis_cap must be > 0"),
    (dict(tis_correction="yes"), "tis_correction must be true, false or null"),
    (dict(loss_normalisation="group"), "loss_normalisation must be one of ['tokens', 'sequence', 'group_tokens']"),
    (dict(backend="vllm", lora_r=1024), "lora_r=1024 is above the largest LoRA rank vLLM serves (512)"),
    (dict(vllm_gpu_memory_utilization=0), "vllm_gpu_memory_utilization must be in (0, 1]"),
    (dict(vllm_max_model_len=-1), "vllm_max_model_len must be >= 0 (0: the model's own)"),
    (dict(vllm_sleep_mode=True, backend="vllm", device="cpu"), "vllm_sleep_mode needs backend='vllm' on CUDA"),
    (dict(vllm_enforce_eager="no"), "vllm_enforce_eager must be true or false"),
    (dict(backend="tgi"), "backend must be one of ['hf', 'vllm', 'vllm-server']"),
    (dict(backend="vllm-server"), "backend=vllm-server needs vllm_server_urls"),
    (dict(vllm_server_urls=["http://127.0.0.1:8000"]), "vllm_server_urls is set but backend='hf'"),
    (dict(backend="vllm-server", vllm_server_urls=["127.0.0.1:8000"]), "URL '127.0.0.1:8000' is not http(s)://HOST[:PORT]"),
    (dict(backend="vllm-server", vllm_server_urls="http://a:1,http://a:1/"), "vllm_server_urls lists a server twice"),
    (dict(backend="vllm-server", vllm_server_urls=["http://a:1"], vllm_server_timeout_s=0), "vllm_server_timeout_s must be > 0"),
    (dict(device="gpu"), "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'; got 'gpu'"),
    (dict(dtype="bf16"), "dtype must be one of ['auto', 'bfloat16', 'float16', 'float32']"),
    (dict(target_modules=[]), "target_modules must be a non-empty list"),
    (dict(target_modules=["q_proj", ""]), "target_modules must be a non-empty list"),
    (dict(target_modules=["q_proj|v_proj"]), "target_modules must be a non-empty list of module names"),
    (dict(target_modules="all-linear"), "target_modules must be a list of module names, e.g. [q_proj, v_proj]"),
    (dict(train_vision="yes"), "train_vision must be true or false; got 'yes'"),
    (dict(model=""), "model and output_dir must be non-empty"),
    (dict(loss_normalisation="token"), "did you mean 'tokens'"),
]


@pytest.mark.parametrize("kwargs,message", INVALID, ids=[next(iter(k)) for k, _ in INVALID])
def test_invalid_values_fail_with_the_value_and_the_rule(kwargs, message):
    with pytest.raises(ConfigError) as info:
        TrainConfig(**kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_valid_edge_cases():
    sft = TrainConfig(objective="sft", group_size=16, prompts_per_step=8, grad_accum_steps=4)
    assert sft.completions_per_scene == 1 and sft.batch_size == 128 and sft.micro_batch_size == 32
    assert sft.scenes_per_step == 128 and TrainConfig().scenes_per_step == 4
    assert TrainConfig(objective="sft", group_size=1).group_size == 1
    assert TrainConfig(objective="sft", temperature=0).temperature == 0.0
    assert TrainConfig(eval_temperature=0).eval_temperature == 0.0  # greedy held-out evaluation
    assert (TrainConfig().min_p, TrainConfig().eval_min_p, TrainConfig().eval_max_new_tokens) == (0.0, 0.1, 64)
    assert TrainConfig(env_id="envs:SideBlockXY-v0").env_id == "envs:SideBlockXY-v0"
    assert TrainConfig(max_steps=0, eval_every=0, eval_episodes=0, save_every=0).max_steps == 0
    assert TrainConfig(target_modules=["model.layers.0.mlp.down_proj"]).target_modules[0].endswith("down_proj")
    assert TrainConfig(target_modules=("q_proj",)).target_modules == ["q_proj"]
    assert TrainConfig(env_kwargs={"image_size": 112}).env_kwargs == {"image_size": 112}
    assert TrainConfig(env_kwargs=None).env_kwargs == {}
    cfg = TrainConfig(learning_rate="1e-4", eval_seed="2e6", lora_alpha=32.0)  # YAML reads 1e-4 as text
    assert (cfg.learning_rate, cfg.eval_seed, cfg.lora_alpha) == (1e-4, 2_000_000, 32)
    assert type(cfg.eval_seed) is int and type(cfg.lora_alpha) is int
    mix = TrainConfig(env_mix={"TopBlockXOnly-v0": 3, "SideBlockXOnly-v0": 1}, mix_schedule="blocked")
    assert mix.env_weights == {"TopBlockXOnly-v0": 0.75, "SideBlockXOnly-v0": 0.25}
    assert TrainConfig(device="cuda:1").agent_kwargs() == \
        {"load_in_4bit": False, "backend": "hf", "device": "cuda:1", "dtype": None, "max_history_turns": None}
    assert TrainConfig(backend="vllm", device="cpu").tis_enabled and not TrainConfig().tis_enabled
    assert not TrainConfig(backend="vllm", tis_correction=False).tis_enabled
    server = TrainConfig(backend="vllm-server", vllm_server_urls="http://127.0.0.1:8000/, https://h:1")
    assert server.tis_enabled and server.agent_kwargs()["backend_options"] == \
        {"urls": ["http://127.0.0.1:8000", "https://h:1"], "api_key": None, "timeout_s": 600.0}
    assert TrainConfig(tis_correction=True).tis_enabled


@pytest.mark.parametrize("lora_r,engine_rank", [(1, 1), (4, 8), (16, 16), (17, 32), (64, 64), (300, 320), (512, 512)])
def test_the_engine_lora_rank_follows_lora_r(lora_r, engine_rank):
    options = TrainConfig(backend="vllm", device="cuda:1", lora_r=lora_r, lora_alpha=lora_r, vllm_max_model_len=4096,
                          vllm_enforce_eager=False).agent_kwargs()["backend_options"]
    assert options == {"max_lora_rank": engine_rank, "enforce_eager": False, "gpu_memory_utilization": 0.3,
                       "enable_sleep_mode": False, "max_model_len": 4096, "seed": 0,
                       "max_images_per_prompt": 1}
    vision = TrainConfig(backend="vllm", lora_r=lora_r, lora_alpha=lora_r, train_vision=True).agent_kwargs()
    assert vision["backend_options"]["enable_tower_connector_lora"] is True  # else vLLM ignores the vision adapter


def test_sampling_params_follow_the_config():
    params = TrainConfig(temperature=0.7, top_p=0.9, min_p=0.05, max_new_tokens=8, group_size=4).sampling_params(seed=3)
    assert (params.temperature, params.top_p, params.min_p, params.max_new_tokens, params.n, params.seed) == \
        (0.7, 0.9, 0.05, 8, 4, 3)
    assert TrainConfig(objective="sft").sampling_params().n == 1


def test_yaml_round_trip(tmp_path):
    cfg = TrainConfig(objective="gspo", clip_eps_low=3e-4, clip_eps_high=4e-4, target_modules=["q_proj"],
                      env_mix={"TopBlockXOnly-v0": 1, "SideBlockXY-v0": 2}, env_kwargs={"image_size": 112})
    path = cfg.to_yaml(tmp_path / "sub" / "run.yaml")
    assert TrainConfig.from_yaml(path) == cfg
    assert cfg.to_dict()["env_mix"] == {"TopBlockXOnly-v0": 1.0, "SideBlockXY-v0": 2.0}
    assert list(cfg.to_dict()) == [f.name for f in dataclasses.fields(TrainConfig)]


def test_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("objective: sft\nlearning_rate: 1.0e-5\nenv_kwargs: {image_size: 112}\n")
    cfg = TrainConfig.from_yaml(path, ["learning_rate=1e-4", "env_mix.TopBlockXOnly-v0=0.5",
                                       "env_mix.SideBlockXY-v0=1.5", "target_modules=[q_proj,v_proj]",
                                       "env_kwargs.n_blocks=[2, 3]", "max-steps=7", "train_vision=true"])
    assert cfg.objective == "sft" and cfg.learning_rate == 1e-4 and cfg.max_steps == 7 and cfg.train_vision
    assert cfg.env_mix == {"TopBlockXOnly-v0": 0.5, "SideBlockXY-v0": 1.5}
    assert cfg.target_modules == ["q_proj", "v_proj"]
    assert cfg.env_kwargs == {"image_size": 112, "n_blocks": [2, 3]}
    assert TrainConfig.from_yaml(None, ["env_mix.TopBlockXOnly-v0=1", "env_mix.TopBlockXOnly-v0=null"]).env_mix is None
    assert TrainConfig.from_yaml(None, ["env_mix.SideBlockXY-v0=1", "env_mix=null"]).env_mix is None
    assert TrainConfig.from_yaml(None, ["output_dir=runs/a=b"]).output_dir == "runs/a=b"
    assert TrainConfig.from_overrides(["max_steps=3"]) == TrainConfig(max_steps=3)


@pytest.mark.parametrize("override,message", [
    ("learning_rte=1e-4", "unknown config key 'learning_rte' (did you mean 'learning_rate'"),
    ("learning_rate", "is not KEY=VALUE"),
    ("=3", "is not KEY=VALUE"),
    ("group_size.x=3", "only env_mix and env_kwargs take FIELD.KEY=VALUE"),
    ("target_modules=[q_proj", "VALUE is not valid YAML"),
    ("group_size=1", "group_size must be >= 2 for grpo"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError, match=None) as info:
        TrainConfig.from_yaml(None, [override])
    assert message in str(info.value)


def test_bad_files(tmp_path):
    unknown = tmp_path / "u.yaml"
    unknown.write_text("group_sise: 8\n")
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_yaml(unknown)
    assert str(unknown) in str(info.value) and "did you mean 'group_size'" in str(info.value)
    listy = tmp_path / "l.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        TrainConfig.from_yaml(listy)
    broken = tmp_path / "b.yaml"
    broken.write_text("a: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        TrainConfig.from_yaml(broken)
    empty = tmp_path / "e.yaml"
    empty.write_text("# nothing\n")
    assert TrainConfig.from_yaml(empty) == TrainConfig()
    with pytest.raises(ConfigError, match="missing.yaml' is no such file and names no shipped config"):
        TrainConfig.from_yaml(tmp_path / "missing.yaml")


def test_from_args(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("objective: gspo\ngroup_size: 8\nmax_steps: 50\n")
    cfg = TrainConfig.from_args(["--config", str(path), "--set", "group_size=4", "--set", "max_steps=20",
                                 "--max-steps", "30", "--target-modules", "[q_proj]"])
    assert (cfg.objective, cfg.group_size, cfg.max_steps, cfg.target_modules) == ("gspo", 4, 30, ["q_proj"])
    assert TrainConfig.from_args([]) == TrainConfig()
    with pytest.raises(SystemExit):
        TrainConfig.from_args(["--group-size", "1"])
    assert "group_size must be >= 2 for grpo" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        TrainConfig.from_args(["--no-such-flag", "1"])
