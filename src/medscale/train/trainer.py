"""`train`: the one training loop, from a laptop CPU to one rank of many GPUs.

The loop: Adam with a warmup/decay schedule, gradient clipping, mixed precision on CUDA,
validation on whole nights (soft vote over channel combinations) every ``val_every`` steps,
early stopping, metrics to ``metrics.csv``/``metrics.jsonl``, checkpoints every
``checkpoint_every`` steps and on SIGTERM (checkpoint, then stop) or SIGUSR1 (checkpoint,
then go on). A checkpoint holds the whole state, so ``resume=True`` continues exactly: on CPU
a run killed at any step and resumed ends with the same weights, bit for bit, as one that was
never interrupted.

Several ranks (`medscale.launch` starts them, or start them and
``torch.distributed.init_process_group`` yourself, then call ``train(..., rank=r,
world_size=w)`` in each): rank 0's initial weights reach every rank through
``DistributedDataParallel``; each rank reads its own strided share of every global batch;
validation nights are split over the ranks and their predictions gathered, so every rank
computes the metrics of all nights; rank 0 logs and writes checkpoints, which carry every
rank's RNG state. A checkpoint resumes at any world size (samples are indexed globally).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medscale.data.splits import Split, load_split, make_split, write_split
from medscale.errors import SpecError
from medscale.evaluate.inference import task_loss
from medscale.store.store import Store
from medscale.tasks import SLEEP_STAGING, Metric, Task
from medscale.train.checkpoint import (
    CHECKPOINT_FORMAT,
    check_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from medscale.train.config import TrainConfig
from medscale.train.manifest import (
    build_manifest,
    file_sha256,
    weights_sha256,
    write_json,
)
from medscale.train.metrics_log import MetricsLogger, clean_json
from medscale.train.runtime import (
    Signals,
    StackWatchdog,
    agree,
    determinism,
    rank_seed,
    rng_state,
    seed_everything,
    set_rng_state,
)

if TYPE_CHECKING:
    from medscale.models.spec import DataSpec

log = logging.getLogger(__name__)

STOP_REASONS = ("max_steps", "early_stopping", "SIGTERM")


@dataclass(frozen=True)
class TrainResult:
    """How a call to `train` ended.

    ``stopped`` is ``"max_steps"``, ``"early_stopping"`` (both: the run is finished) or
    ``"SIGTERM"`` (a checkpoint was written; call again with ``resume=True``).
    """

    run_dir: Path
    step: int
    epoch: int
    stopped: str
    finished: bool
    resumed_from_step: int | None
    best_step: int | None
    best_metric: float | None
    last_validation: dict[str, Any] | None
    last_checkpoint: Path
    best_checkpoint: Path | None
    weights_sha256: str
    train_seconds: float
    steps_per_second: float
    extra: dict[str, Any] = field(default_factory=dict)


# -- helpers ------------------------------------------------------------------------------


def lr_factor(config: TrainConfig, step: int) -> float:
    """The schedule's learning-rate multiplier for the update that follows ``step`` updates."""
    sched = config.schedule
    if sched.warmup_steps and step < sched.warmup_steps:
        return (step + 1) / sched.warmup_steps
    after = step - sched.warmup_steps
    if sched.kind == "constant":
        return 1.0
    if sched.kind == "step":
        return sched.gamma ** (after // sched.step_size)
    span = max(1, config.max_steps - sched.warmup_steps)
    progress = min(1.0, after / span)
    return sched.min_factor + (1 - sched.min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def _device(config: TrainConfig) -> Any:
    import torch

    if config.device == "cpu" or (config.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SpecError("device: 'cuda' was asked for but torch sees no CUDA device")
    return torch.device("cuda", torch.cuda.current_device())


def resolve_split(config: TrainConfig, store: Store) -> tuple[Split, str | None]:
    """The run's split (from ``split.file``, checked against the store, or made here) and the
    path it came from."""
    if config.split.file is not None:
        return load_split(config.split.file, store), config.split.file
    fractions = sorted({config.data_fraction, 1.0})
    split = make_split(
        store,
        val_fraction=config.split.val_fraction,
        test_fraction=config.split.test_fraction,
        seed=config.seed,
        fractions=fractions,
    )
    return split, None


def _recordings(config: TrainConfig, split: Split) -> tuple[list[str], list[str]]:
    name = config.split.train_subset
    if name not in split.subsets:
        raise SpecError(f"split.train_subset {name!r} is not in the split ({list(split.subsets)})")
    if config.data_fraction < 1.0:
        if name != "train":
            raise SpecError("data_fraction < 1 takes a fraction of the split's 'train' subset")
        train = split.fraction(config.data_fraction)
    else:
        train = split.subsets[name]
    val: list[str] = []
    if config.split.val_subset is not None:
        if config.split.val_subset not in split.subsets:
            raise SpecError(
                f"split.val_subset {config.split.val_subset!r} is not in the split "
                f"({list(split.subsets)}); set it to null to train without validation"
            )
        val = split.subsets[config.split.val_subset]
    if not train:
        raise SpecError("the split leaves no training recordings")
    return train, val


def build_run_model(
    config: TrainConfig, in_channels: int | None = None
) -> tuple[Any, dict[str, Any]]:
    """The run's model and the keyword arguments it was built with: ``config.model_kwargs``,
    plus ``in_channels`` where the model takes it and the config does not set it (by
    default the number of channel groups, what a signals task serves)."""
    from medscale.models import build_model
    from medscale.models.registry import model_arguments

    kwargs = dict(config.model_kwargs)
    if in_channels is None:
        in_channels = len(config.data.sampling.channel_groups)
    if "in_channels" in model_arguments(config.model) and "in_channels" not in kwargs:
        kwargs["in_channels"] = in_channels
    return build_model(config.model, **kwargs), kwargs


def input_channels(config: TrainConfig, store: Store) -> int:
    """The channels the data serves: one per channel group for signals, the stored channels
    of the (first) image or volume otherwise."""
    task = store.task
    if task.segmented:
        return len(config.data.sampling.channel_groups)
    first = next(iter(store.recordings()), None)
    if first is None:
        raise SpecError(f"{store.location} holds no records to train on")
    return int(first.arrays[task.input_kind].shape[0])


# -- validation ---------------------------------------------------------------------------


def validate(
    model: Any,
    nights: Any,
    device: Any,
    autocast: Any,
    *,
    distributed: bool = False,
    task: Task = SLEEP_STAGING,
) -> dict[str, Any]:
    """Score ``model`` on whole records: for a segment task each channel combination of a
    recording is predicted and the probabilities soft-voted per segment; for an image task
    each image is predicted once. All records are pooled into the ``task``'s metrics
    (`medscale.evaluate.task_scores.score_task`) plus ``val_loss`` (and ``loss``, the same,
    where the task declares it).

    ``distributed``: ``nights`` is this rank's share; the ranks' predictions are gathered so
    that every rank returns the metrics of all nights, as one process would."""
    from medscale.evaluate.inference import predict_images, predict_nights
    from medscale.evaluate.task_scores import LOSS_METRIC, score_task

    predict = predict_nights if task.segmented else predict_images
    predicted = predict(model, nights, device, autocast)
    if distributed:
        import torch.distributed as dist

        shares: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(shares, predicted)
        predicted = {key: share[key] for share in shares for key in share}
        predicted = {key: predicted[key] for key in sorted(predicted)}
    if not predicted:
        raise SpecError("validation found no nights to score (empty val subset?)")
    y_true = np.concatenate([night.y_true for night in predicted.values()])
    probabilities = np.concatenate([night.probabilities for night in predicted.values()])
    metrics = score_task(task, y_true, probabilities)
    # The loss of each combination's chunks, as before the vote.
    loss_sum = sum(night.loss_sum for night in predicted.values())
    loss_count = sum(night.loss_count for night in predicted.values())
    metrics["val_loss"] = loss_sum / max(1, loss_count)
    if any(m.name == LOSS_METRIC for m in task.metrics):
        metrics[LOSS_METRIC] = metrics["val_loss"]
    metrics["n_nights"] = len(predicted)
    return metrics


# -- the run directory ----------------------------------------------------------------------


def check_run_dir(out_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: start fresh). Refuses to overwrite a run."""
    last = out_dir / "checkpoints" / "last.pt"
    if resume:
        if last.is_file():
            if not (out_dir / "manifest.json").is_file():
                raise SpecError(f"{out_dir}: a checkpoint but no manifest.json: not a run folder")
            return last
        if (out_dir / "manifest.json").is_file():
            log.warning("%s has no checkpoint yet: resuming starts from step 0", out_dir)
        return None
    if (out_dir / "manifest.json").exists() or last.exists():
        raise SpecError(
            f"{out_dir} already holds a run; pass resume=True (--resume) to continue it, "
            "or choose another output folder"
        )
    return None


def train(
    config: TrainConfig,
    store: Store | str,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    rank: int = 0,
    world_size: int = 1,
) -> TrainResult:
    """Train ``config.model`` on ``store`` into the run directory ``out_dir``.

    ``out_dir`` receives ``manifest.json``, ``config.yaml``, ``split.json``,
    ``metrics.csv``, ``metrics.jsonl``, ``checkpoints/last.pt``, ``checkpoints/best.pt``
    and, when the call returns, ``result.json``. ``resume=True`` continues from
    ``checkpoints/last.pt`` (or starts afresh when there is none yet); a checkpoint of another
    model or config is refused before anything is loaded.
    """

    trainer = Trainer(
        config,
        store,
        out_dir,
        resume=resume,
        progress=progress,
        rank=rank,
        world_size=world_size,
    )
    with determinism(config.deterministic, trainer.device.type):
        trainer.setup()
        return trainer.run()


@dataclass(frozen=True)
class StepOutcome:
    """What one `Trainer.step` did: the batch's loss, the learning rate it used, the gradient
    norm before clipping (None without clipping), and whether it ended a pass."""

    loss: float
    lr: float
    grad_norm: float | None
    epoch_done: bool


@dataclass
class Position:
    """Where a run is: optimiser steps taken, passes over the sampled data (``epoch``) and
    steps into the current pass."""

    step: int = 0
    epoch: int = 0
    epoch_step: int = 0


class Trainer:
    """One rank of a training run, in parts: `setup` builds the model, optimiser, data and run
    folder (or restores them from ``checkpoints/last.pt``); `step` trains on one batch;
    `validate` scores the validation nights and keeps the best checkpoint; `checkpoint`
    saves the whole state. `run` drives them until ``max_steps``, early stopping or SIGTERM.

    Constructing one resolves the run's identity (split, store and config hashes, the
    checkpoint to resume from) and touches no model.
    """

    def __init__(
        self,
        config: TrainConfig,
        store: Store | str,
        out_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise SpecError(f"rank {rank} is outside 0..{world_size - 1} (world_size)")
        self.distributed = world_size > 1
        if self.distributed:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()):
                raise SpecError(
                    "world_size > 1 needs torch.distributed initialised (init_process_group) "
                    "before train(); medscale does not start the processes itself yet"
                )
            if dist.get_world_size() != world_size or dist.get_rank() != rank:
                raise SpecError(
                    f"rank/world_size ({rank}/{world_size}) differ from torch.distributed's "
                    f"({dist.get_rank()}/{dist.get_world_size()})"
                )
        self.config, self.rank, self.world_size = config, rank, world_size
        self.main_rank = rank == 0
        self.progress = progress and self.main_rank
        self.out_dir = Path(out_dir)
        self.store = store if isinstance(store, Store) else Store(store, read_only=True)
        self.task: Task = self.store.task
        self.loss = task_loss(self.task)
        self.monitor = monitored_metric(config, self.task)
        self.device = _device(config)
        self.resume_from = check_run_dir(self.out_dir, resume)
        if self.distributed:
            dist.barrier()
        self._resolve_split()
        self.last_path = self.out_dir / "checkpoints" / "last.pt"
        self.best_path = self.out_dir / "checkpoints" / "best.pt"

    def _resolve_split(self) -> None:
        """The split, its copy in the run folder, and the hashes that identify the run."""
        config, out_dir = self.config, self.out_dir
        split, split_source = resolve_split(config, self.store)
        self.train_recordings, self.val_recordings = _recordings(config, split)
        split_path = out_dir / "split.json"
        if self.main_rank:
            out_dir.mkdir(parents=True, exist_ok=True)
            if split_source is None or self.resume_from is None:
                if split_source is None:
                    write_split(split, split_path)
                elif Path(split_source).resolve() != split_path.resolve():
                    shutil.copyfile(split_source, split_path)
        if split_source is not None:
            split_hash = file_sha256(split_source)
        else:  # the bytes write_split writes, hashed in memory (other ranks may not see it)
            text = json.dumps(split.to_json(), indent=1, sort_keys=True) + "\n"
            split_hash = hashlib.sha256(text.encode()).hexdigest()
        store_hash = split.store_content_hash
        self.config_hash = config.config_hash(
            {"split_sha256": split_hash, "store_content_hash": store_hash}
        )
        self.manifest_parts = {
            "store": {
                "location": self.store.location,
                "content_hash": store_hash,
                "layout_version": self.store.layout_version,
            },
            "split": {
                "source": split_source,
                "copy": "split.json",
                "sha256": split_hash,
                "kind": split.kind,
                "seed": split.seed,
                "train_recordings": len(self.train_recordings),
                "val_recordings": len(self.val_recordings),
            },
        }

    # -- setup ----------------------------------------------------------------------------

    def setup(self) -> None:
        """Build (or restore) everything a run needs, in an order that fixes every random
        draw: the seed, the model, the per-rank dropout seed, then optimiser, data and logs."""
        import torch

        config, device = self.config, self.device
        seed_everything(config.seed)
        self.model, self.model_kwargs = build_run_model(config, input_channels(config, self.store))
        self.model.to(device)
        if self.distributed:  # same initial weights everywhere, then each rank its own dropout
            seed_everything(rank_seed(config.seed, self.rank))

        # Mixed precision: CUDA only; bfloat16 where supported (no loss scaling), else float16.
        self.amp_dtype = None
        if config.amp:
            if device.type == "cuda":
                bf16 = torch.cuda.is_bf16_supported()
                self.amp_dtype = torch.bfloat16 if bf16 else torch.float16
            else:
                log.warning("amp: mixed precision is CUDA-only; training on %s in float32", device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

        opt_cfg = config.optimizer
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=opt_cfg.lr,
            betas=opt_cfg.betas,
            eps=opt_cfg.eps,
            weight_decay=opt_cfg.weight_decay,
        )
        world_size = self.world_size

        def factor(step: int) -> float:
            return lr_multiplier(config, step, world_size)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

        self.rank_batch = rank_batch_size(config, world_size)
        per_rank = config.data.sampling.samples_per_epoch // world_size
        self.steps_per_epoch = per_rank // self.rank_batch
        if self.steps_per_epoch == 0:
            raise SpecError(
                f"data.sampling.samples_per_epoch ({config.data.sampling.samples_per_epoch}) "
                f"gives each of {world_size} ranks {per_rank} samples, fewer than its batch "
                f"({self.rank_batch})"
            )

        # State that a checkpoint carries besides the modules.
        self.position = Position()
        self.early: dict[str, Any] = {"best": None, "best_step": None, "bad": 0}
        self.accum: dict[str, Any] = {"loss_sum": 0.0, "n": 0}
        self.resumed_step: int | None = None
        self.resumed_world_size: int | None = None
        if self.resume_from is not None:
            self._restore(self.resume_from)

        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp_model = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None
            )
        else:
            self.ddp_model = self.model
        self._setup_data()
        from medscale.models.spec import check_data_spec

        check_data_spec(
            self.model.data_spec,
            data_spec(config, self.loader.dataset.index, self.task),
            model_name=config.model,
            data_name=f"the data of task {self.task.name!r} in {self.store.location}",
        )
        self._write_run_files()
        self.logger = MetricsLogger(
            self.out_dir,
            config.log,
            keep_until_step=self.resumed_step if self.resume_from else None,
            enabled=self.main_rank,
            config=config.to_dict(),
        )
        self.last_validation: dict[str, Any] | None = None
        self.train_seconds, self.timed_steps = 0.0, 0

    def _restore(self, path: Path) -> None:
        """Load ``path`` (checked first) into the model, optimiser and run state."""
        state = load_checkpoint(path)
        check_checkpoint(
            state,
            model_name=self.config.model,
            config_hash=self.config_hash,
            model_state=self.model.state_dict(),
            path=path,
        )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.position = Position(state["step"], state["epoch"], state["epoch_step"])
        self.early = dict(state["early_stopping"])
        per_rank_states = state.get("per_rank") or [
            {"rng": state["rng"], "log_accumulator": state["log_accumulator"]}
        ]
        self.resumed_world_size = len(per_rank_states)
        if self.resumed_world_size == self.world_size:
            self.accum = dict(per_rank_states[self.rank]["log_accumulator"])
            set_rng_state(per_rank_states[self.rank]["rng"])
        else:  # another world size: the same samples, but fresh dropout streams per rank
            log.warning(
                "resuming a %d-rank checkpoint on %d ranks: samples continue exactly, "
                "dropout draws do not (bitwise equality needs the same world size)",
                self.resumed_world_size,
                self.world_size,
            )
            seed_everything(rank_seed(self.config.seed + self.position.step, self.rank))
        self.resumed_step = self.position.step

    def _setup_data(self) -> None:
        import torch

        from medscale.data.evaluation import EvalImages
        from medscale.data.torch_data import EvalNights, can_serve_codes, create_train_loader

        config = self.config
        self.loader = create_train_loader(
            self.store,
            config.data,
            batch_size=self.rank_batch,
            num_workers=config.num_workers,
            rank=self.rank,
            world_size=self.world_size,
            epoch=self.position.epoch,
            start=self.position.epoch_step * self.rank_batch,
            recordings=self.train_recordings,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            # int16 codes to the GPU, scaled there: half the bytes through the workers
            serve_codes=self.device.type == "cuda"
            and can_serve_codes(config.data, self.task.input_kind),
            # Worker seeds come from this generator, not from torch's global stream, so that
            # creating an iterator (at a resume point or an epoch start) never shifts dropout.
            generator=torch.Generator().manual_seed(config.seed),
        )
        self.nights = None
        if self.val_recordings:
            evaluation = EvalNights if self.task.segmented else EvalImages
            self.nights = evaluation(
                self.store,
                config.data,
                recordings=self.val_recordings,
                rank=self.rank,
                world_size=self.world_size,
            )

    def _write_run_files(self) -> None:
        """``manifest.json`` (new, or with this resume appended) and ``config.yaml``."""
        import torch
        import torch.distributed as dist

        if not self.main_rank:
            return
        config, out_dir = self.config, self.out_dir
        manifest_path = out_dir / "manifest.json"
        if self.resume_from is None:
            manifest = build_manifest(
                config=config.to_dict(),
                config_hash=self.config_hash,
                seed=config.seed,
                device=self.device.type,
                run={
                    "model_kwargs": self.model_kwargs,
                    "world_size": self.world_size,
                    "rank_batch_size": self.rank_batch,
                    "global_batch_size": self.rank_batch * self.world_size,
                    "lr_world_scale": world_lr_scale(config, self.world_size),
                    "backend": dist.get_backend() if self.distributed else None,
                    "deterministic": config.deterministic,
                    "amp_dtype": str(self.amp_dtype) if self.amp_dtype else None,
                    "steps_per_epoch": self.steps_per_epoch,
                    "parameters": sum(p.numel() for p in self.model.parameters()),
                    "resumes": [],
                },
                **self.manifest_parts,
            )
        else:
            manifest = json.loads(manifest_path.read_text())
            manifest["run"]["resumes"].append(
                {
                    "step": self.position.step,
                    "world_size": self.world_size,
                    "from_world_size": self.resumed_world_size,
                    "torch_threads": torch.get_num_threads(),
                    "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
        write_json(manifest, manifest_path)
        (out_dir / "config.yaml").write_text(config.to_yaml())
        (out_dir / "result.json").unlink(missing_ok=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The mixed-precision context of forward passes (a no-op without AMP)."""
        import torch

        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

    # -- step, validate, checkpoint -------------------------------------------------------

    def step(self, batch: dict[str, Any]) -> StepOutcome:
        """One optimiser update on ``batch``; advances `position`."""
        import torch

        from medscale.data.torch_data import scale_on_device

        config, device = self.config, self.device
        if "codes" in batch:  # bit-identical to the float32 windows
            x = scale_on_device(batch, device, config.data.processing.clip)
        else:
            x = batch["x"].to(device, non_blocking=True)
        y = batch["y"].to(device, non_blocking=True)
        with self.autocast():
            logits = self.ddp_model(x)
            loss = self.loss(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        grad_norm = None
        if config.grad_clip_norm is not None:
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip_norm)
            )
        lr = self.optimizer.param_groups[0]["lr"]
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        pos = self.position
        pos.step += 1
        pos.epoch_step += 1
        epoch_done = pos.epoch_step == self.steps_per_epoch
        if epoch_done:
            pos.epoch, pos.epoch_step = pos.epoch + 1, 0
        loss_value = float(loss.detach())
        self.accum["loss_sum"] += loss_value
        self.accum["n"] += 1
        return StepOutcome(loss_value, lr, grad_norm, epoch_done)

    def validate(self) -> dict[str, Any]:
        """Score the validation nights, log the metrics, keep the best checkpoint and count
        validations without improvement; return the metrics."""
        import torch.distributed as dist

        config, early = self.config, self.early
        if self.distributed:  # validate rank 0's model everywhere (BN running stats)
            for buffer in self.model.buffers():
                dist.broadcast(buffer, 0)
        metrics = validate(
            self.model,
            self.nights,
            self.device,
            self.autocast,
            distributed=self.distributed,
            task=self.task,
        )
        self.last_validation = metrics
        monitor, delta = self.monitor, config.early_stopping.min_delta
        value = float(metrics[monitor.name])
        if not math.isfinite(value):  # the worst value in the metric's direction
            value = -math.inf if monitor.mode == "max" else math.inf
        improved = early["best"] is None or monitor.better(
            value, early["best"] + (delta if monitor.mode == "max" else -delta)
        )
        if improved:
            early.update(best=value, best_step=self.position.step, bad=0)
            self.checkpoint(self.best_path)
        else:
            early["bad"] += 1
        self.logger.write(
            {
                "kind": "val",
                "step": self.position.step,
                "epoch": self.position.epoch,
                **{k: v for k, v in metrics.items() if k != "n_nights"},
                "best": early["best"],
            }
        )
        return metrics

    def patience_exhausted(self) -> bool:
        """Whether early stopping's patience has run out."""
        patience = self.config.early_stopping.patience
        return patience is not None and self.early["bad"] >= patience

    def checkpoint_state(self) -> dict[str, Any]:
        """The state to save; a collective when distributed (every rank's RNG is gathered),
        so every rank calls it at the same steps."""
        import torch.distributed as dist

        own = {"rng": rng_state(), "log_accumulator": dict(self.accum)}
        per_rank_states = [own]
        if self.distributed:
            per_rank_states = [None] * self.world_size
            dist.all_gather_object(per_rank_states, own)
        pos = self.position
        return {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "model_name": self.config.model,
            "model_kwargs": self.model_kwargs,
            "config_hash": self.config_hash,
            "step": pos.step,
            "epoch": pos.epoch,
            "epoch_step": pos.epoch_step,
            "sampler": {
                "epoch": pos.epoch,
                "global_start": pos.epoch_step * self.rank_batch * self.world_size,
                "world_size": self.world_size,
            },
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": per_rank_states[0]["rng"],
            "early_stopping": dict(self.early),
            "log_accumulator": per_rank_states[0]["log_accumulator"],
            "per_rank": per_rank_states,
        }

    def checkpoint(self, path: Path) -> None:
        """Save the state to ``path`` (rank 0 writes; every rank must call it)."""
        state = self.checkpoint_state()
        if self.main_rank:
            save_checkpoint(state, path)

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> TrainResult:
        """Train from `position` until the run stops; write ``result.json`` and the report."""
        from tqdm.auto import tqdm

        config = self.config
        self.signals = Signals()
        self.signals.install()
        self.watchdog = StackWatchdog(
            self.out_dir / "stacks" / f"rank{self.rank}.txt" if self.distributed else None,
            config.distributed.timeout_s,
        )
        self.bar = tqdm(
            total=config.max_steps,
            initial=self.position.step,
            disable=not self.progress,
            unit="step",
            dynamic_ncols=True,
            desc=f"train {config.model}",
        )
        stopped = "max_steps" if self.position.step >= config.max_steps else None
        try:
            while stopped is None:
                stopped = self._train_epoch()
        finally:
            self.watchdog.close()
            self.signals.restore()
            self.bar.close()
            self.logger.close()
        return self._finish(stopped)

    def _train_epoch(self) -> str | None:
        """Steps until this pass over the data ends (None) or the run stops (why)."""
        config, pos = self.config, self.position
        sampler = self.loader.sampler
        sampler.set_epoch(pos.epoch)
        sampler.set_start(pos.epoch_step * self.rank_batch)
        t0 = time.perf_counter()
        for batch in self.loader:
            self.watchdog.arm()
            outcome = self.step(batch)
            self.train_seconds += time.perf_counter() - t0
            self.timed_steps += 1
            self.bar.update(1)
            if pos.step % config.log_every == 0 or pos.step == config.max_steps:
                self._log_train(outcome)
            want_stop = None
            if self.nights is not None and (
                pos.step % config.val_every == 0 or pos.step == config.max_steps
            ):
                metric = self.monitor.name
                shown = {"loss": f"{outcome.loss:.3f}"}
                shown[f"val_{metric}" if metric in shown else metric] = (
                    f"{self.validate()[metric]:.3f}"
                )
                self.bar.set_postfix(shown, refresh=False)
                if self.patience_exhausted():
                    want_stop = "early_stopping"
            if pos.step >= config.max_steps:
                want_stop = want_stop or "max_steps"
            want_stop = self._checkpoint_if_due(want_stop)
            t0 = time.perf_counter()
            if want_stop is not None:
                return want_stop
            if outcome.epoch_done:  # a rank with one sample more than the others must not go on
                return None
        return None

    def _log_train(self, outcome: StepOutcome) -> None:
        import torch
        import torch.distributed as dist

        loss_sum, loss_n = self.accum["loss_sum"], self.accum["n"]
        if self.distributed:  # the mean over all ranks' batches
            totals = torch.tensor([loss_sum, loss_n], dtype=torch.float64)
            dist.all_reduce(totals)
            loss_sum, loss_n = float(totals[0]), float(totals[1])
        record = {
            "kind": "train",
            "step": self.position.step,
            "epoch": self.position.epoch,
            "lr": outcome.lr,
            "loss": loss_sum / max(1, loss_n),
            "grad_norm": outcome.grad_norm,
            "elapsed_s": round(self.train_seconds, 3),
            "steps_per_s": round(self.timed_steps / max(self.train_seconds, 1e-9), 3),
        }
        self.logger.write(record)
        self.bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
        self.accum = {"loss_sum": 0.0, "n": 0}

    def _checkpoint_if_due(self, want_stop: str | None) -> str | None:
        """Checkpoint on schedule, on a signal or before stopping; return why to stop."""
        config, signals = self.config, self.signals
        # A signal reaches one rank (or one node): all stop and checkpoint alike.
        flags = [signals.stop is not None, signals.checkpoint]
        if self.distributed:
            flags = agree(flags, self.device)
        if flags[0] and want_stop is None:
            want_stop = signals.stop or "SIGTERM"
        if self.position.step % config.checkpoint_every == 0 or flags[1] or want_stop is not None:
            self.checkpoint(self.last_path)
            if flags[1] and signals.stop is None:
                log.warning("signal: checkpoint written at step %d", self.position.step)
        signals.checkpoint = False
        return want_stop

    def _finish(self, stopped: str) -> TrainResult:
        config, out_dir = self.config, self.out_dir
        if self.nights is None and self.main_rank:
            shutil.copyfile(self.last_path, self.best_path)  # without validation, best = last
        result = TrainResult(
            run_dir=out_dir,
            step=self.position.step,
            epoch=self.position.epoch,
            stopped=stopped,
            finished=stopped != "SIGTERM",
            resumed_from_step=self.resumed_step,
            best_step=self.early["best_step"],
            best_metric=self.early["best"],
            last_validation=self.last_validation,
            last_checkpoint=self.last_path,
            best_checkpoint=self.best_path if self.best_path.exists() else None,
            weights_sha256=weights_sha256(self.model.state_dict()),
            train_seconds=self.train_seconds,
            steps_per_second=(
                self.timed_steps / self.train_seconds if self.train_seconds > 0 else 0.0
            ),
        )
        if self.main_rank:
            write_json(
                {
                    "step": result.step,
                    "epoch": result.epoch,
                    "stopped": result.stopped,
                    "finished": result.finished,
                    "resumed_from_step": result.resumed_from_step,
                    "best_step": result.best_step,
                    "best_metric": result.best_metric,
                    "early_stopping_metric": self.monitor.name,
                    "last_validation": clean_json(result.last_validation),
                    "weights_sha256": result.weights_sha256,
                    "train_seconds_this_call": round(result.train_seconds, 3),
                    "steps_per_second_this_call": round(result.steps_per_second, 3),
                },
                out_dir / "result.json",
            )
            from medscale.train.report import write_training_report

            write_training_report(out_dir, f"medscale training run {out_dir.name} ({config.model})")
        return result


def monitored_metric(config: TrainConfig, task: Task) -> Metric:
    """The metric early stopping and the best checkpoint follow, with its direction: the
    config's ``early_stopping.metric``/``mode`` where set, else the task's choice."""
    stopping = config.early_stopping
    name = stopping.metric or task.monitor
    try:
        declared = task.metric(name)
    except SpecError as exc:
        raise SpecError(f"early_stopping.metric: {exc}") from None
    return Metric(name, stopping.mode or declared.mode)


def data_spec(config: TrainConfig, index: Any, task: Task) -> DataSpec:
    """What the data layer serves a model for ``task`` (``index``: the training sampler's), to
    check against the model's `DataSpec` before training."""
    from medscale.models.spec import DataSpec

    if not task.segmented:
        return DataSpec(task.input_kind, channels=int(index.shapes[0, 0]), n_classes=task.n_outputs)
    groups = len(config.data.sampling.channel_groups)
    spectrogram = config.data.processing.spectrogram
    per_segment = index.samples_per_segment
    if spectrogram is None:
        return DataSpec(
            "signals",
            channels=groups,
            n_classes=task.n_outputs,
            sfreq_hz=index.sfreq_hz,
            segment_samples=per_segment,
        )
    win = round(spectrogram.window_s * index.sfreq_hz)
    hop = round(spectrogram.hop_s * index.sfreq_hz)
    frames = len(range(0, per_segment - win + 1, hop))
    return DataSpec(
        "spectrogram",
        channels=groups,
        n_classes=task.n_outputs,
        sfreq_hz=index.sfreq_hz,
        segment_shape=(win // 2 + 1, frames),
    )


def rank_batch_size(config: TrainConfig, world_size: int) -> int:
    """Samples per rank per step (see `DistributedConfig`)."""
    if config.distributed.per_rank_batch:
        return config.batch_size
    if config.batch_size % world_size:
        raise SpecError(
            f"batch_size ({config.batch_size}) is the global batch and must divide evenly over "
            f"{world_size} ranks; choose a multiple of {world_size}, or set "
            "distributed.per_rank_batch: true"
        )
    return config.batch_size // world_size


def world_lr_scale(config: TrainConfig, world_size: int) -> float:
    """The learning-rate multiplier for ``world_size`` ranks (1 unless ``lr_scaling``)."""
    kind = config.distributed.lr_scaling
    if kind == "linear":
        return float(world_size)
    if kind == "sqrt":
        return math.sqrt(world_size)
    return 1.0


def lr_multiplier(config: TrainConfig, step: int, world_size: int) -> float:
    """The schedule's factor times the world-size scaling, the latter reached by a linear
    ramp over ``distributed.lr_warmup_steps`` (from the base rate to the scaled one)."""
    scale = world_lr_scale(config, world_size)
    warmup = config.distributed.lr_warmup_steps
    ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return lr_factor(config, step) * (1.0 + (scale - 1.0) * ramp)
