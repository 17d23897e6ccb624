"""`CampaignSpec`: a campaign read from YAML, and its expansion into trials.

A spec names a base training config and a ``design``: one or more forms, composed as a
product in the order written::

    name: loco-3fold
    store: store/                 # relative to the spec file
    base: usleep-small            # bundled config name, a path, or an inline mapping
    seed: 7
    design:
      leave_one_out: {over: channel_groups, items: [eeg, eog]}
      kfold: {k: 3}

Every trial's key is ``forms:{assignment as sorted JSON}`` and its seed a pure function of
(campaign seed, key) (`trial_seed`), so the same spec gives the same trials with any number
of workers, in any order, after any number of restarts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from medscale.errors import SpecError, describe_validation_error

__all__ = ["FORMS", "CampaignSpec", "PlannedTrial", "trial_seed"]

FORMS = ("grid", "leave_one_out", "kfold", "data_fraction", "bayesian")
#: assignment dimensions left out of the seed: an arm and its reference share their seed per
#: fold (the paired difference then measures the left-out item, not the seed)
COMPARED_DIMENSIONS = ("leave_out", "fraction")
#: the built-in objective: train the base config with the trial's changes, then test it
TRAIN_OBJECTIVE = "train"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LeaveOneOut(_Strict):
    """One arm per item left out, plus the all-included reference arm (``leave_out: all``)."""

    over: Literal["channels", "channel_groups", "subjects", "datasets"]
    items: tuple[str, ...] = Field(..., min_length=1)


class KFold(_Strict):
    """Subject-level folds; ``seed`` defaults to the campaign seed."""

    k: int = Field(..., ge=2)
    seed: int | None = Field(None, ge=0)


class DataFraction(_Strict):
    """Nested subsets of the training subjects (fraction f keeps the first ⌈f·n⌉)."""

    fractions: tuple[float, ...] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _in_range(self) -> DataFraction:
        bad = [f for f in self.fractions if not 0 < f <= 1]
        if bad:
            raise ValueError(f"fractions must lie in (0, 1], got {bad}")
        return self


class SearchParam(_Strict):
    """One dimension of a Bayesian search space."""

    type: Literal["float", "int", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] | None = None

    @model_validator(mode="after")
    def _complete(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"a {self.type} parameter needs low < high")
        return self

    def distribution(self) -> Any:
        import optuna.distributions as d

        if self.type == "categorical":
            return d.CategoricalDistribution(list(self.choices or ()))
        if self.type == "int":
            return d.IntDistribution(int(self.low or 0), int(self.high or 0), log=self.log)
        return d.FloatDistribution(float(self.low or 0), float(self.high or 0), log=self.log)


class Bayesian(_Strict):
    """Optuna TPE or GP over ``params`` for ``n_trials``; pruning on intermediate scores."""

    n_trials: int = Field(..., ge=1)
    sampler: Literal["tpe", "gp"] = "tpe"
    pruner: Literal["none", "median", "successive_halving"] = "none"
    params: dict[str, SearchParam] = Field(..., min_length=1)


class Execution(_Strict):
    """How trials run: ``slots`` at once, each in its own process; GPU ids to share out
    (``devices``, ``gpus_per_trial`` each) or CPU shares; heartbeats and retries."""

    slots: int = Field(1, ge=1)
    devices: tuple[int, ...] = ()
    gpus_per_trial: int = Field(0, ge=0)
    cpus_per_trial: float = Field(1.0, gt=0)
    #: DDP ranks of one trial (torchrun); ``auto`` applies docs/scaling.md's rule to the
    #: calibration's step time, the model's gradient size and ``link_gb_s`` over ``devices``
    ranks_per_trial: int | Literal["auto"] = 1
    link_gb_s: float = Field(25.0, gt=0)
    max_attempts: int = Field(3, ge=1)
    retry_errors: bool = False
    heartbeat_s: float = Field(10.0, gt=0)
    trial_process: Literal["forkserver", "subprocess"] = "forkserver"

    @model_validator(mode="after")
    def _enough_devices(self) -> Execution:
        if self.ranks_per_trial == "auto" and not self.devices:
            raise ValueError("ranks_per_trial: auto shares out GPUs: list their ids in 'devices'")
        if isinstance(self.ranks_per_trial, int) and self.ranks_per_trial < 1:
            raise ValueError("ranks_per_trial must be at least 1 (or auto)")
        if self.gpus_per_trial and len(self.devices) < self.slots * self.gpus_per_trial:
            raise ValueError(
                f"{self.slots} slot(s) × {self.gpus_per_trial} GPU(s) need that many ids in "
                f"'devices', got {list(self.devices)}"
            )
        return self


class Cost(_Strict):
    """A price table per device-hour (cloud instance types, or an HPC billing unit such as
    LUMI GPU-hours) and the entry this campaign is billed at."""

    prices: dict[str, float] = Field(default_factory=lambda: {"local": 0.0})
    instance: str = "local"
    unit: str = "USD"

    @model_validator(mode="after")
    def _known_instance(self) -> Cost:
        if self.instance not in self.prices:
            raise ValueError(f"instance {self.instance!r} is not in prices {list(self.prices)}")
        return self

    @property
    def per_device_hour(self) -> float:
        return self.prices[self.instance]


class Budget(_Strict):
    """Stop launching trials when the next one would take the campaign past a cap."""

    max_cost: float | None = Field(None, gt=0)
    max_device_hours: float | None = Field(None, gt=0)


class SlurmWorkers(_Strict):
    """``--executor slurm``: an array of ``tasks`` workers, each running ``slots`` trials and
    popping trials until none is left (several short trials share one allocation)."""

    tasks: int = Field(2, ge=1)
    partition: str | None = None
    account: str | None = None
    time: str = "01:00:00"
    cpus_per_task: int = Field(1, ge=1)
    gpus_per_task: int = Field(0, ge=0)
    mem: str | None = None
    setup: tuple[str, ...] = ()
    extra_sbatch: tuple[str, ...] = ()


class RayWorkers(_Strict):
    """``--executor ray``: ``workers`` Ray tasks, each running the worker loop."""

    address: str | None = None
    workers: int = Field(2, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)


class Design(_Strict):
    grid: dict[str, tuple[Any, ...]] | None = None
    leave_one_out: LeaveOneOut | None = None
    kfold: KFold | None = None
    data_fraction: DataFraction | None = None
    bayesian: Bayesian | None = None


class _SpecModel(_Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    store: str | None = None
    base: str | dict[str, Any] | None = None
    objective: str = TRAIN_OBJECTIVE
    metric: str = "kappa"
    direction: Literal["maximize", "minimize"] = "maximize"
    seed: int = Field(0, ge=0)
    design: Design
    ledger: str | None = None
    execution: Execution = Execution()
    cost: Cost = Cost()
    budget: Budget = Budget()
    slurm: SlurmWorkers = SlurmWorkers()
    ray: RayWorkers = RayWorkers()


@dataclass(frozen=True)
class PlannedTrial:
    """One fixed-design trial: its key, assignment (dimension → value) and seed."""

    key: str
    assignment: dict[str, Any]
    seed: int


def canonical_key(prefix: str, assignment: dict[str, Any]) -> str:
    return prefix + ":" + json.dumps(assignment, sort_keys=True, separators=(",", ":"))


def trial_seed(campaign_seed: int, key: str) -> int:
    """A uint32 seed from (campaign seed, key) alone: the same for every retry and rerun."""
    words = struct.unpack("<4I", hashlib.sha256(key.encode()).digest()[:16])
    return int(np.random.SeedSequence([campaign_seed, *words]).generate_state(1)[0])


def key_slug(key: str) -> str:
    """A folder name for a key (``fold=0,leave_out=eog-1a2b3c4d``): readable, and unique
    through a short hash."""
    try:
        assignment = json.loads(key.split(":", 1)[1])
        readable = ",".join(f"{k}={v}" for k, v in assignment.items())
    except (IndexError, ValueError, AttributeError):
        readable = key
    readable = re.sub(r"[^A-Za-z0-9.=,+-]+", "_", readable).strip("_")[:80]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


class CampaignSpec:
    """A validated campaign spec (see the module doc); ``folder`` is where the spec lives,
    against which relative paths are read."""

    def __init__(
        self, model: _SpecModel, folder: Path, text: str, source: str = "campaign spec"
    ) -> None:
        self.model = model
        self.folder = folder
        self.text = text
        self.source = source
        self.forms = [f for f in FORMS if getattr(model.design, f) is not None]
        # YAML order decides the order of composition (and of the keys)
        written = list(yaml.safe_load(text).get("design") or {})
        self.forms.sort(key=written.index)
        if not self.forms:
            raise SpecError(f"{self.source}: 'design' names no form; use one of {list(FORMS)}")
        if "bayesian" in self.forms and not set(self.forms) <= {"bayesian", "kfold"}:
            raise SpecError(
                f"{self.source}: 'bayesian' composes with 'kfold' only (each trial then trains "
                f"every fold), not with {[f for f in self.forms if f not in ('bayesian', 'kfold')]}"
            )
        for name, values in (model.design.grid or {}).items():
            if not values:
                raise SpecError(f"{self.source}: design.grid.{name} is an empty list")
        if model.design.grid is not None and not model.design.grid:
            raise SpecError(f"{self.source}: design.grid has no parameters (empty search space)")

    # -- reading ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path) -> CampaignSpec:
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"{path}: no such campaign spec file")
        text = path.read_text()
        return cls.from_text(text, path.parent.resolve(), str(path))

    @classmethod
    def from_text(cls, text: str, folder: Path, source: str = "campaign spec") -> CampaignSpec:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{source}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise SpecError(f"{source}: expected a mapping at the top level")
        try:
            model = _SpecModel.model_validate(data)
        except ValidationError as exc:
            raise SpecError(f"{source}: {describe_validation_error(exc)}") from None
        return cls(model, folder, text, source)

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def seed(self) -> int:
        return self.model.seed

    @property
    def prefix(self) -> str:
        return "+".join(self.forms)

    @property
    def hash(self) -> str:
        """sha256 of what decides the trials (not execution, ledger, cost or budget)."""
        data = self.model.model_dump(mode="json")
        # where the store lives is not what it holds: split files check its content hash
        for name in ("store", "execution", "ledger", "cost", "budget", "slurm", "ray"):
            data.pop(name)
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()

    def with_store(self, store: str | Path) -> CampaignSpec:
        """The same spec on another store (``--store``)."""
        model = self.model.model_copy(update={"store": str(Path(store).resolve())})
        return CampaignSpec(model, self.folder, self.text, self.source)

    def resolve(self, relative: str) -> Path:
        path = Path(relative)
        return path if path.is_absolute() else (self.folder / path).resolve()

    @property
    def store_path(self) -> Path | None:
        return None if self.model.store is None else self.resolve(self.model.store)

    @property
    def is_bayesian(self) -> bool:
        """A Bayesian search (alone, or with every fold of a k-fold inside each trial)."""
        return "bayesian" in self.forms

    # -- expansion ------------------------------------------------------------------------

    def dimensions(self) -> list[tuple[str, list[Any]]]:
        """The fixed forms' dimensions, in composition order: (name, values)."""
        design = self.model.design
        dims: list[tuple[str, list[Any]]] = []
        for form in self.forms:
            if form == "grid":
                dims += [(name, list(values)) for name, values in (design.grid or {}).items()]
            elif form == "leave_one_out" and design.leave_one_out is not None:
                dims.append(("leave_out", ["all", *design.leave_one_out.items]))
            elif form == "kfold" and design.kfold is not None:
                dims.append(("fold", list(range(design.kfold.k))))
            elif form == "data_fraction" and design.data_fraction is not None:
                dims.append(("fraction", sorted(design.data_fraction.fractions)))
        return dims

    def trials(self) -> list[PlannedTrial]:
        """Every fixed-design trial in launch order (empty for a Bayesian campaign)."""
        if self.is_bayesian:
            return []
        dims = self.dimensions()
        out = []
        for values in itertools.product(*(v for _, v in dims)):
            assignment = {name: value for (name, _), value in zip(dims, values, strict=True)}
            key = canonical_key(self.prefix, assignment)
            paired = {k: v for k, v in assignment.items() if k not in COMPARED_DIMENSIONS}
            seed = trial_seed(self.seed, canonical_key(self.prefix, paired))
            out.append(PlannedTrial(key, assignment, seed))
        return out

    def n_trials(self) -> int:
        if self.is_bayesian:
            assert self.model.design.bayesian is not None
            return self.model.design.bayesian.n_trials
        return len(self.trials())

    def search_space(self) -> dict[str, Any]:
        bayes = self.model.design.bayesian
        return {} if bayes is None else {n: p.distribution() for n, p in bayes.params.items()}
