"""`TrainConfig`: one frozen, validated description of a training run, read from YAML.

Unknown or mistyped keys are refused with a `SpecError` that names the key path
(``optimizer.lrr: Extra inputs are not permitted``). One ``seed`` drives everything: model
initialisation (torch), numpy, python's ``random`` and the data sampler (``data.seed`` is set
from it; a different explicit ``data.seed`` is refused).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medscale.data.config import DataConfig
from medscale.errors import SpecError, describe_validation_error

#: Fields that do not change what a run computes: left out of `TrainConfig.config_hash`.
NON_TRAJECTORY_FIELDS = ("num_workers", "log", "device", "slurm", "ray")
#: The same inside ``distributed``: where and how ranks talk, not what they compute.
NON_TRAJECTORY_DISTRIBUTED = ("timeout_s", "rendezvous_timeout_s", "backend")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptimizerConfig(_Frozen):
    """Adam (``weight_decay`` is L2 added to the gradient, as in ``torch.optim.Adam``)."""

    name: Literal["adam"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)

    @model_validator(mode="after")
    def _betas(self) -> OptimizerConfig:
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        return self


class ScheduleConfig(_Frozen):
    """Learning-rate multiplier per step: linear warmup, then constant, cosine or step decay.

    ``cosine`` decays from 1 to ``min_factor`` over the steps after warmup up to
    ``TrainConfig.max_steps``; ``step`` multiplies by ``gamma`` every ``step_size`` steps.
    """

    kind: Literal["constant", "cosine", "step"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    min_factor: float = Field(0.0, ge=0.0, le=1.0)
    step_size: int = Field(1000, ge=1)
    gamma: float = Field(0.1, gt=0.0, le=1.0)


class EarlyStoppingConfig(_Frozen):
    """Stop after ``patience`` validations without an improvement above ``min_delta``.

    ``metric``: any metric the task reports (``null``: the task's own choice, ``kappa`` for
    sleep staging); ``mode``: ``max`` (higher is better) or ``min`` (``null``: the direction
    the task declares for that metric). ``patience: null`` never stops early (the best
    checkpoint is still kept).
    """

    metric: str | None = None
    mode: Literal["max", "min"] | None = None
    patience: int | None = Field(10, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


class DistributedConfig(_Frozen):
    """Data parallelism over ranks (see ``docs/scaling.md``).

    By default ``batch_size`` is the global batch: each of W ranks takes ``batch_size / W``
    samples per step, so which samples a step sees does not depend on W and a run can resume
    at another world size. ``per_rank_batch: true`` makes ``batch_size`` per rank instead
    (global batch = ``batch_size`` × W); ``lr_scaling`` then scales the learning rate by W
    (``linear``, Goyal et al. 2017) or √W (``sqrt``), reached by a linear ramp over
    ``lr_warmup_steps``. ``timeout_s`` bounds every collective: a rank that waits longer on a
    dead or hung peer dumps its stack and fails instead of hanging for torch's 30 minutes.
    ``rendezvous_timeout_s`` bounds the wait for rank 0 at start (ranks launched without
    torchrun).
    """

    per_rank_batch: bool = False
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"
    lr_warmup_steps: int = Field(0, ge=0)
    timeout_s: float = Field(300.0, gt=0.0)
    rendezvous_timeout_s: float = Field(30.0, gt=0.0)
    backend: Literal["auto", "gloo", "nccl"] = "auto"

    @model_validator(mode="after")
    def _scaling_needs_per_rank(self) -> DistributedConfig:
        if self.lr_scaling != "none" and not self.per_rank_batch:
            raise ValueError(
                "lr_scaling needs per_rank_batch: true (with a global batch_size the batch "
                "does not grow with the world size, so the learning rate should not either)"
            )
        return self


class SlurmConfig(_Frozen):
    """Resources for ``--launcher slurm``: one ``torchrun`` per node, ``procs_per_node`` ranks
    each (default: ``gpus_per_node``, or 1 on CPU nodes). ``setup`` lines run before it
    (``module load``, activating an environment). The job asks for SIGTERM
    ``signal_before_s`` seconds before its time limit; the trainer then checkpoints and the
    job requeues itself (``requeue``) and resumes."""

    partition: str | None = None
    account: str | None = None
    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    procs_per_node: int | None = Field(None, ge=1)
    cpus_per_task: int = Field(2, ge=1)
    mem: str | None = None
    time: str = "01:00:00"
    signal_before_s: int = Field(120, ge=1)
    requeue: bool = True
    rdzv_port: int = Field(29500, ge=1, le=65535)
    setup: tuple[str, ...] = ()
    extra_sbatch: tuple[str, ...] = ()


class RayConfig(_Frozen):
    """``--launcher ray``: ``num_workers`` ranks under Ray Train's TorchTrainer, on the cluster
    at ``address`` (``null``: a private local Ray on 127.0.0.1)."""

    address: str | None = None
    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = Field(1.0, gt=0.0)
    connect_timeout_s: float = Field(30.0, gt=0.0)


class SplitConfig(_Frozen):
    """Where the train/val recordings come from: a split ``file`` (see `medscale.data.splits`)
    or, without one, a subject-level split made here from ``val_fraction``/``test_fraction``
    and the run's seed. ``val_subset: null`` trains without validation."""

    file: str | None = None
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    test_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    train_subset: str = "train"
    val_subset: str | None = "val"

    @model_validator(mode="before")
    @classmethod
    def _path_shorthand(cls, data: Any) -> Any:
        return {"file": data} if isinstance(data, str) else data


class TrainConfig(_Frozen):
    """A training run (see ``docs/training.md`` for every field)."""

    model: str
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    data: DataConfig = DataConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    grad_clip_norm: float | None = Field(None, gt=0.0)
    batch_size: int = Field(64, ge=1)
    max_steps: int = Field(..., ge=1)
    val_every: int = Field(500, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    log_every: int = Field(10, ge=1)
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    seed: int = Field(0, ge=0)
    deterministic: bool = True
    amp: bool = False
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = Field(0, ge=0)
    split: SplitConfig = SplitConfig()
    data_fraction: float = Field(1.0, gt=0.0, le=1.0)
    log: tuple[Literal["csv", "jsonl", "mlflow", "tensorboard"], ...] = ("csv", "jsonl")
    distributed: DistributedConfig = DistributedConfig()
    slurm: SlurmConfig = SlurmConfig()
    ray: RayConfig = RayConfig()

    @model_validator(mode="before")
    @classmethod
    def _one_seed(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        seed = data.get("seed", 0)
        sub = data.get("data")
        if isinstance(sub, DataConfig):
            sub = sub.to_dict()
        if sub is None:
            sub = {}
        if not isinstance(sub, dict):
            return data
        if "seed" in sub and sub["seed"] != seed:
            raise ValueError(
                f"data.seed ({sub['seed']}) differs from seed ({seed}): one seed drives the "
                "whole run; set only 'seed'"
            )
        return {**data, "data": {**sub, "seed": seed}}

    # -- reading and writing --------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "train config") -> TrainConfig:
        """Parse a config dict; a bad key or value raises `SpecError` naming its path."""
        if not isinstance(data, dict):
            raise SpecError(f"{source}: expected a mapping, found {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise SpecError(f"{source}: {describe_validation_error(exc)}") from None

    @classmethod
    def load(cls, path_or_name: str | Path) -> TrainConfig:
        """Read a YAML file, or a bundled config by name (see `bundled_configs`).

        A relative ``split.file`` is taken relative to the YAML file's folder.
        """
        path = Path(path_or_name)
        if not path.is_file():
            name = str(path_or_name)
            if name in bundled_configs():
                text = resources.files("medscale.train.configs").joinpath(f"{name}.yaml")
                return cls.from_dict(yaml.safe_load(text.read_text()), f"bundled config {name}")
            raise SpecError(
                f"{path_or_name}: no such config file, nor a bundled config "
                f"(bundled: {', '.join(bundled_configs()) or 'none'})"
            )
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SpecError(f"{path}: not valid YAML ({exc})") from None
        config = cls.from_dict(data, str(path))
        split_file = config.split.file
        if split_file is not None and not Path(split_file).is_absolute():
            resolved = str((path.parent / split_file).resolve())
            config = config.model_copy(
                update={"split": config.split.model_copy(update={"file": resolved})}
            )
        return config

    def to_dict(self) -> dict[str, Any]:
        """The resolved config, JSON-ready (every default filled in)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def config_hash(self, extra: dict[str, Any] | None = None) -> str:
        """sha256 over everything that decides the computation (not ``num_workers``, ``log``,
        ``device``, nor the split file's path: its content hash comes in via ``extra``)."""
        data = self.to_dict()
        for name in NON_TRAJECTORY_FIELDS:
            data.pop(name, None)
        data["split"] = {k: v for k, v in data["split"].items() if k != "file"}
        for name in NON_TRAJECTORY_DISTRIBUTED:
            data["distributed"].pop(name, None)
        payload = json.dumps({"config": data, "extra": extra or {}}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


def bundled_configs() -> list[str]:
    """Names of the configs shipped in ``medscale/train/configs``."""
    folder = resources.files("medscale.train.configs")
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))
