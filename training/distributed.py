"""Data-parallel plumbing on ``torch.distributed``: who this process is, its share of a step, the reductions.

``torchrun --nproc_per_node N -m cubeworld train ...`` (or ``accelerate launch --multi_gpu
--num_processes N -m cubeworld train ...`` on GPUs; accelerate's CPU multi-process launch
needs MPI, so on CPU use torchrun) starts N processes (ranks) with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`from_env` joins them into one
process group (gloo on CPU, NCCL when CUDA is available). Without ``WORLD_SIZE`` it returns
the single-process context and every helper here is the identity, so a plain run behaves as
it always did.

How a step stays the same for every world size (the trainer's contract, tested by
``tests/training/test_distributed.py``):

* the step's global scene list (drawn from ``(seed, step)`` on every rank) is cut into
  contiguous shards (:func:`shard`), one per rank, in rank order;
* each prompt's completions are sampled from a seed of its own, derived from the step's
  seed and the prompt's *global* index (:func:`prompt_seed`), in a generate call of its
  own, so they depend neither on the rank nor on the other prompts of a batch;
* every loss denominator is a global count (:func:`all_reduce_sum`), so each rank's loss is
  its exact share of the one-process loss and the summed gradients
  (:func:`all_reduce_gradients`) are the one-process gradient up to the order of float sums
  (bitwise equal when each rank's micro-batch is one of the 1-process run's micro-batches;
  otherwise Adam turns last-bit differences into ~1e-5 of the adapter); every rank makes the
  same update from the same bits, so the ranks' adapters stay identical;
* rank 0 gathers what it logs in global order (:func:`gather_to_main`) and alone writes logs,
  checkpoints and results; the other ranks wait for it at the next collective.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from agents.backends.base import SamplingParams

from .rollouts import EnvPool, Trajectory, collect_trajectories

__all__ = ["DistContext", "from_env", "shard", "prompt_seed", "per_prompt", "sample", "collect_shard",
           "all_reduce_gradients", "all_reduce_sum", "gather_to_main", "gather_groups", "barrier", "close"]

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """This process's place in a data-parallel run (the defaults: a single process).

    Attributes:
        rank: 0 .. world_size - 1; rank 0 is the main process (logs, checkpoints, results).
        world_size: processes in the run.
        local_rank: the process's index on its machine (its GPU, ``cuda:local_rank``, under NCCL).
        backend: ``"gloo"``, ``"nccl"``, or None for a single process without a process group.
        owns_group: this context created the process group (so :func:`close` destroys it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None and self.world_size > 1

    @property
    def device(self) -> torch.device:
        """Where collective tensors live: the local GPU under NCCL, else the CPU."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def agent_device(self, device: str) -> dict[str, str]:
        """``{"device": "cuda:LOCAL_RANK"}`` under NCCL when the config's ``device`` is ``auto`` or ``cuda``
        (one GPU per rank), else ``{}`` (the config's own device)."""
        return {"device": str(self.device)} if self.backend == "nccl" and device in ("auto", "cuda") else {}


def _env_int(name: str) -> int:
    raw = os.environ.get(name)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"environment variable {name}={raw!r} is not an integer; launch with torchrun or "
                         f"accelerate launch, which set {', '.join(_ENV)}, or unset WORLD_SIZE for one process") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={value} must be >= 0")
    return value


def from_env(timeout_s: float = 1800.0) -> DistContext:
    """The context this process was launched into; joins (or reuses) the process group.

    ``WORLD_SIZE`` unset: a single process (no process group). Otherwise ``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK`` (default 0) are read and, unless a group exists already
    (e.g. made by ``accelerate``), ``init_process_group`` joins the ``env://`` rendezvous
    (``MASTER_ADDR`` / ``MASTER_PORT``) with backend ``nccl`` when CUDA is available, else
    ``gloo``; under NCCL the current CUDA device becomes ``cuda:LOCAL_RANK``.

    Args:
        timeout_s: how long a collective waits for the other ranks (seconds), e.g. while rank 0
            alone runs the held-out evaluation; a rank that died ends the run earlier (torchrun
            stops the others).

    Raises:
        ValueError: ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` not integers, or ``RANK >= WORLD_SIZE``.
    """
    if "WORLD_SIZE" not in os.environ:
        return DistContext()
    world, rank = _env_int("WORLD_SIZE"), _env_int("RANK")
    local = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0
    if world < 1 or rank >= world:
        raise ValueError(f"RANK={rank} must be in [0, WORLD_SIZE={world}); check the launcher's settings")
    if world == 1:
        return DistContext()
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    backend = dist.get_backend()
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local,
                       backend=str(backend), owns_group=owns)


def shard(n: int, ctx: DistContext) -> range:
    """The global indices of ``n`` items that rank ``ctx.rank`` takes: contiguous shards in rank
    order, sizes differing by at most one (the first ``n % world_size`` ranks take one more),
    as ``np.array_split``. Every index belongs to exactly one rank."""
    size, extra = divmod(n, ctx.world_size)
    start = ctx.rank * size + min(ctx.rank, extra)
    return range(start, start + size + (ctx.rank < extra))


def prompt_seed(step_seed: int, index: int) -> int:
    """Sampling seed of the prompt with global index ``index`` in a step seeded ``step_seed``:
    a number in ``[0, 2**31 - 1)`` from numpy's ``SeedSequence([step_seed, index])``, so it is
    the same on whichever rank the prompt lands."""
    return int(np.random.default_rng([int(step_seed), int(index)]).integers(2**31 - 1))


def per_prompt(rollout_seeding: str | None, ctx: DistContext) -> bool:
    """Whether rollouts are seeded per prompt: ``rollout_seeding == "prompt"``, or (null) when the run
    has several ranks (TrainConfig's ``rollout_seeding``)."""
    return rollout_seeding == "prompt" or (rollout_seeding is None and ctx.world_size > 1)


def sample(agent: Any, observations: Sequence[Any], indices: Sequence[int], params: SamplingParams,
           each_prompt: bool) -> list[list[Any]]:
    """``agent.sample(observations, params=params)``: one call seeded ``params.seed``, or with
    ``each_prompt`` one call per observation seeded :func:`prompt_seed` ``(params.seed, indices[i])``
    (``indices``: the observations' global indices in the step)."""
    if not each_prompt:
        return agent.sample(list(observations), params=params)
    return [agent.sample([o], params=dataclasses.replace(params, seed=prompt_seed(params.seed, i)))[0]
            for o, i in zip(observations, indices, strict=True)]


def collect_shard(agent: Any, pool: EnvPool, env_ids: list[str], seeds: list[int], params: SamplingParams,
                  ctx: DistContext, each_prompt: bool, collect=collect_trajectories) -> list[list[Trajectory]]:
    """This rank's groups of a step (its :func:`shard` of the ``env_ids`` / ``seeds`` scenes) by ``collect``
    (:func:`training.rollouts.collect_trajectories`): in one call seeded ``params.seed``, or with
    ``each_prompt`` one call per scene seeded from its global index (multi-step turns follow that seed).
    ``Trajectory.group`` is the scene's global index."""
    part = shard(len(env_ids), ctx)
    if not each_prompt:
        return collect(agent, pool, [env_ids[i] for i in part], [seeds[i] for i in part], params)
    groups = []
    for i in part:
        [group] = collect(agent, pool, [env_ids[i]], [seeds[i]],
                          dataclasses.replace(params, seed=prompt_seed(params.seed, i)))
        for trajectory in group:
            trajectory.group = i
        groups.append(group)
    return groups


def all_reduce_gradients(params: Sequence[torch.Tensor], ctx: DistContext) -> None:
    """Sum every parameter's ``.grad`` over the ranks, in place (a missing gradient counts as zeros
    and is set), flattened into one buffer per dtype and device (one collective each, as DDP's
    buckets). Every rank ends with the same bits. Identity for a single process."""
    if not ctx.distributed:
        return
    buckets: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        buckets.setdefault((p.grad.dtype, p.grad.device), []).append(p)
    for (_, device), members in buckets.items():
        flat = torch.cat([p.grad.reshape(-1) for p in members]).to(ctx.device)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat = flat.to(device)
        offset = 0
        for p in members:
            n = p.grad.numel()
            p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
            offset += n


def all_reduce_sum(values: Sequence[float], ctx: DistContext) -> list[float]:
    """Each of ``values`` summed over the ranks (float64; identity for a single process)."""
    if not ctx.distributed:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def gather_to_main(items: list[Any], ctx: DistContext) -> list[Any] | None:
    """Every rank's ``items`` (picklable) concatenated in rank order on rank 0 (None on the others).

    With :func:`shard`'s contiguous shards that is the global order of the step."""
    if not ctx.distributed:
        return list(items)
    out: list[list[Any]] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(list(items), out, dst=0)
    return [x for part in out for x in part] if ctx.is_main else None


def gather_groups(groups: list[list[Trajectory]], ctx: DistContext) -> list[list[Trajectory]] | None:
    """Every rank's groups on rank 0 in global scene order (None elsewhere), for the step's logged
    figures; the turns' observations (images) are left behind."""
    if not ctx.distributed:
        return groups
    light = [[dataclasses.replace(t, turns=[dataclasses.replace(u, observation=None) for u in t.turns])
              for t in g] for g in groups]
    return gather_to_main(light, ctx)


def barrier(ctx: DistContext) -> None:
    """Wait until every rank gets here (identity for a single process)."""
    if ctx.distributed:
        dist.barrier(device_ids=[ctx.local_rank] if ctx.backend == "nccl" else None)


def close(ctx: DistContext) -> None:
    """Leave the process group if :func:`from_env` made it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()
