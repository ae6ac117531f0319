"""Cubeworld environments: block-tower intuitive-physics tasks for vision-language models.

``import envs`` registers every id below with Gymnasium; ``gym.make("envs:ID")``
works without the import. Variants are registration kwargs of one class,
:class:`envs.tower_env.TowerEnv`; the multi-step ids are its episode protocols
(:mod:`envs.protocols`, DESIGN.md section 7) and ``TowerBuild-v0``; :data:`WORLD_ENV_IDS` are
the further worlds of DESIGN.md section 8 (``TowerStability-v0``: the ICML 2025 towers, Yes =
falls). :func:`reward_function` and :func:`export_dataset` (:mod:`envs.trl_interop`) connect
the paper's ids to TRL's trainers. This package imports neither torch nor transformers.
"""

from gymnasium.envs.registration import register

from .answers import parse_answer
from .scenes import Cube, Scene
from .tower_env import TASKS, TowerEnv
from .trl_interop import export_dataset, reward_function

__all__ = ["ENV_IDS", "MULTI_STEP_ENV_IDS", "REAL_ENV_IDS", "WORLD_ENV_IDS", "TowerEnv", "TASKS", "Scene", "Cube",
           "parse_answer", "reward_function", "export_dataset"]

_ENTRY = "envs.tower_env:TowerEnv"

# The registration table: one row per id.
register(id="TopBlockStability-v0", entry_point=_ENTRY, kwargs={"task": "top_block_stability"})
register(id="TopBlockXOnly-v0", entry_point=_ENTRY, kwargs={"task": "top_block_x_only"})
register(id="SideBlockXOnly-v0", entry_point=_ENTRY, kwargs={"task": "side_block_x_only"})
register(id="SideBlockXY-v0", entry_point=_ENTRY, kwargs={"task": "side_block_xy"})
register(id="RealTowerStability-v0", entry_point="envs.real:RealTowerEnv")  # needs data_dir=...
# Multi-step (DESIGN.md section 7): the same tasks under an episode protocol, and the build world.
register(id="TopBlockXOnly-Retry-v0", entry_point=_ENTRY, kwargs={"task": "top_block_x_only", "interaction": "retry"})
register(id="SideBlockXOnly-Retry-v0", entry_point=_ENTRY, kwargs={"task": "side_block_x_only", "interaction": "retry"})
register(id="SideBlockXY-Retry-v0", entry_point=_ENTRY, kwargs={"task": "side_block_xy", "interaction": "retry"})
register(id="SideBlockXOnly-Sequential-v0", entry_point=_ENTRY,
         kwargs={"task": "side_block_x_only", "interaction": "sequential"})
register(id="SideBlockXY-Sequential-v0", entry_point=_ENTRY, kwargs={"task": "side_block_xy", "interaction": "sequential"})
register(id="TowerBuild-v0", entry_point=_ENTRY, kwargs={"task": "tower_build"})
# More worlds (DESIGN.md section 8). n_blocks=(2, 4) / (5, 7) give the ICML 2025 study's splits.
register(id="TowerStability-v0", entry_point=_ENTRY, kwargs={"task": "tower_stability"})
register(id="PyramidCounterfactual-v0", entry_point=_ENTRY, kwargs={"task": "pyramid_counterfactual"})
register(id="ShapeStacksStability-v0", entry_point=_ENTRY, kwargs={"task": "shapestacks_stability"})

ENV_IDS = ("TopBlockStability-v0", "TopBlockXOnly-v0", "SideBlockXOnly-v0", "SideBlockXY-v0")
# Not in ENV_IDS either: code that loops over ENV_IDS (training, the matrix) is single-step.
MULTI_STEP_ENV_IDS = ("TopBlockXOnly-Retry-v0", "SideBlockXOnly-Retry-v0", "SideBlockXY-Retry-v0",
                      "SideBlockXOnly-Sequential-v0", "SideBlockXY-Sequential-v0", "TowerBuild-v0")
# Real photos (kwarg data_dir): not in ENV_IDS, the synthetic suite that other code loops over.
REAL_ENV_IDS = ("RealTowerStability-v0",)
# Worlds of DESIGN.md section 8: not in ENV_IDS either (the paper's four tasks, which training,
# the matrix and the tiny base's format training loop over).
WORLD_ENV_IDS = ("TowerStability-v0", "PyramidCounterfactual-v0", "ShapeStacksStability-v0")
