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
import faulthandler
import hashlib
import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medscale.data.splits import Split, load_split, make_split, write_split
from medscale.errors import SpecError
from medscale.evaluate.inference import masked_cross_entropy
from medscale.store.store import Store
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


class _Signals:
    """SIGTERM: checkpoint at the next step boundary and stop. SIGUSR1: checkpoint, go on."""

    def __init__(self) -> None:
        self.stop: str | None = None
        self.checkpoint = False
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.checkpoint = True
        if signum == signal.SIGTERM:
            self.stop = "SIGTERM"

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.warning("train() runs outside the main thread: SIGTERM/SIGUSR1 not handled")
            return
        for name in ("SIGTERM", "SIGUSR1"):
            sig = getattr(signal, name, None)
            if sig is not None:
                self._old[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


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


def _rng_state() -> dict[str, Any]:
    import torch

    np_state = np.random.get_state()
    py_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "cuda": [],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            n["name"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rank_seed(seed: int, rank: int) -> int:
    """A per-rank seed for dropout and other draws after the (shared) initialisation."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0] >> 1)


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def _determinism(enabled: bool, device_type: str):
    """Deterministic kernels for the run; the process's previous settings come back after."""
    import torch

    old = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.deterministic,
        torch.backends.cudnn.benchmark,
    )
    if enabled:
        if device_type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old[1], old[2]


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


def build_run_model(config: TrainConfig) -> tuple[Any, dict[str, Any]]:
    from medscale.models import build_model
    from medscale.models.registry import model_arguments

    kwargs = dict(config.model_kwargs)
    n_groups = len(config.data.sampling.channel_groups)
    if "in_channels" in model_arguments(config.model) and "in_channels" not in kwargs:
        kwargs["in_channels"] = n_groups
    return build_model(config.model, **kwargs), kwargs


# -- validation ---------------------------------------------------------------------------


def validate(
    model: Any, nights: Any, device: Any, autocast: Any, *, distributed: bool = False
) -> dict[str, Any]:
    """Score ``model`` on whole nights: each channel combination is predicted, the
    probabilities soft-voted per epoch, and all nights' epochs pooled into one `score`.

    ``distributed``: ``nights`` is this rank's share; the ranks' predictions are gathered so
    that every rank returns the metrics of all nights, as one process would."""
    from medscale.evaluate.inference import predict_nights
    from medscale.evaluate.metrics import score

    predicted = predict_nights(model, nights, device, autocast)
    if distributed:
        import torch.distributed as dist

        shares: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(shares, predicted)
        predicted = {key: share[key] for share in shares for key in share}
        predicted = {key: predicted[key] for key in sorted(predicted)}
    if not predicted:
        raise SpecError("validation found no nights to score (empty val subset?)")
    y_true = np.concatenate([night.y_true for night in predicted.values()])
    y_pred = np.concatenate([night.probabilities.argmax(axis=1) for night in predicted.values()])
    metrics = score(y_true, y_pred)
    # The loss of each combination's chunks, as before the vote.
    loss_sum = sum(night.loss_sum for night in predicted.values())
    loss_count = sum(night.loss_count for night in predicted.values())
    metrics["val_loss"] = loss_sum / max(1, loss_count)
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

    if world_size < 1 or not 0 <= rank < world_size:
        raise SpecError(f"rank {rank} is outside 0..{world_size - 1} (world_size)")
    distributed = world_size > 1
    if distributed:
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
    main_rank = rank == 0
    out_dir = Path(out_dir)
    store = store if isinstance(store, Store) else Store(store, read_only=True)
    device = _device(config)
    resume_from = check_run_dir(out_dir, resume)
    if distributed:
        dist.barrier()

    split, split_source = resolve_split(config, store)
    train_recordings, val_recordings = _recordings(config, split)
    split_path = out_dir / "split.json"
    if main_rank:
        out_dir.mkdir(parents=True, exist_ok=True)
        if split_source is None or resume_from is None:
            if split_source is None:
                write_split(split, split_path)
            elif Path(split_source).resolve() != split_path.resolve():
                shutil.copyfile(split_source, split_path)
    if split_source is not None:
        split_hash = file_sha256(split_source)
    else:  # the bytes write_split writes, hashed in memory (other ranks may not see the file)
        text = json.dumps(split.to_json(), indent=1, sort_keys=True) + "\n"
        split_hash = hashlib.sha256(text.encode()).hexdigest()
    store_hash = split.store_content_hash
    config_hash = config.config_hash({"split_sha256": split_hash, "store_content_hash": store_hash})

    with _determinism(config.deterministic, device.type):
        return _run(
            config,
            store,
            out_dir,
            device=device,
            resume_from=resume_from,
            progress=progress and main_rank,
            rank=rank,
            world_size=world_size,
            train_recordings=train_recordings,
            val_recordings=val_recordings,
            manifest_parts={
                "store": {
                    "location": store.location,
                    "content_hash": store_hash,
                    "layout_version": store.layout_version,
                },
                "split": {
                    "source": split_source,
                    "copy": "split.json",
                    "sha256": split_hash,
                    "kind": split.kind,
                    "seed": split.seed,
                    "train_recordings": len(train_recordings),
                    "val_recordings": len(val_recordings),
                },
            },
            config_hash=config_hash,
        )


def _run(
    config: TrainConfig,
    store: Store,
    out_dir: Path,
    *,
    device: Any,
    resume_from: Path | None,
    progress: bool,
    rank: int,
    world_size: int,
    train_recordings: list[str],
    val_recordings: list[str],
    manifest_parts: dict[str, Any],
    config_hash: str,
) -> TrainResult:
    import torch
    import torch.distributed as dist
    from tqdm.auto import tqdm

    from medscale.data.torch_data import EvalNights, create_train_loader

    main_rank = rank == 0
    distributed = world_size > 1
    _seed_everything(config.seed)
    model, model_kwargs = build_run_model(config)
    model.to(device)
    if distributed:  # same initial weights everywhere, then each rank its own dropout stream
        _seed_everything(_rank_seed(config.seed, rank))

    # Mixed precision: CUDA only; bfloat16 where supported (no loss scaling), else float16.
    amp_dtype = None
    if config.amp:
        if device.type == "cuda":
            amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            log.warning("amp: mixed precision is CUDA-only; training on %s in float32", device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=amp_dtype)

    opt_cfg = config.optimizer
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=opt_cfg.lr,
        betas=opt_cfg.betas,
        eps=opt_cfg.eps,
        weight_decay=opt_cfg.weight_decay,
    )

    lr_world = world_lr_scale(config, world_size)

    def factor(step: int) -> float:
        return lr_multiplier(config, step, world_size)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    rank_batch = rank_batch_size(config, world_size)
    per_rank = config.data.sampling.samples_per_epoch // world_size
    steps_per_epoch = per_rank // rank_batch
    if steps_per_epoch == 0:
        raise SpecError(
            f"data.sampling.samples_per_epoch ({config.data.sampling.samples_per_epoch}) "
            f"gives each of {world_size} ranks {per_rank} samples, fewer than its batch "
            f"({rank_batch})"
        )

    # State that a checkpoint carries besides the modules.
    step, epoch, epoch_step = 0, 0, 0
    early = {"best": None, "best_step": None, "bad": 0}
    accum = {"loss_sum": 0.0, "n": 0}
    resumed_step = None
    resumed_world_size = None
    if resume_from is not None:
        state = load_checkpoint(resume_from)
        check_checkpoint(
            state,
            model_name=config.model,
            config_hash=config_hash,
            model_state=model.state_dict(),
            path=resume_from,
        )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        step, epoch, epoch_step = state["step"], state["epoch"], state["epoch_step"]
        early = dict(state["early_stopping"])
        per_rank_states = state.get("per_rank") or [
            {"rng": state["rng"], "log_accumulator": state["log_accumulator"]}
        ]
        resumed_world_size = len(per_rank_states)
        if resumed_world_size == world_size:
            accum = dict(per_rank_states[rank]["log_accumulator"])
            _set_rng_state(per_rank_states[rank]["rng"])
        else:  # another world size: the same samples, but fresh dropout streams per rank
            log.warning(
                "resuming a %d-rank checkpoint on %d ranks: samples continue exactly, "
                "dropout draws do not (bitwise equality needs the same world size)",
                resumed_world_size,
                world_size,
            )
            _seed_everything(_rank_seed(config.seed + step, rank))
        resumed_step = step
        del state

    if distributed:
        from torch.nn.parallel import DistributedDataParallel

        ddp_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    else:
        ddp_model = model

    loader = create_train_loader(
        store,
        config.data,
        batch_size=rank_batch,
        num_workers=config.num_workers,
        rank=rank,
        world_size=world_size,
        epoch=epoch,
        start=epoch_step * rank_batch,
        recordings=train_recordings,
        drop_last=True,
        pin_memory=device.type == "cuda",
        # Worker seeds come from this generator, not from torch's global stream, so that
        # creating an iterator (at a resume point or an epoch start) never shifts dropout.
        generator=torch.Generator().manual_seed(config.seed),
    )
    nights = None
    if val_recordings:
        nights = EvalNights(
            store, config.data, recordings=val_recordings, rank=rank, world_size=world_size
        )

    ckpt_dir = out_dir / "checkpoints"
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"

    def checkpoint_state() -> dict[str, Any]:
        """The state to save; a collective when distributed (every rank's RNG is gathered),
        so every rank calls it at the same steps."""
        own = {"rng": _rng_state(), "log_accumulator": dict(accum)}
        per_rank_states = [own]
        if distributed:
            per_rank_states = [None] * world_size
            dist.all_gather_object(per_rank_states, own)
        return {
            "format": CHECKPOINT_FORMAT,
            "version": 1,
            "model_name": config.model,
            "model_kwargs": model_kwargs,
            "config_hash": config_hash,
            "step": step,
            "epoch": epoch,
            "epoch_step": epoch_step,
            "sampler": {
                "epoch": epoch,
                "global_start": epoch_step * rank_batch * world_size,
                "world_size": world_size,
            },
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            "rng": per_rank_states[0]["rng"],
            "early_stopping": dict(early),
            "log_accumulator": per_rank_states[0]["log_accumulator"],
            "per_rank": per_rank_states,
        }

    if main_rank:
        manifest_path = out_dir / "manifest.json"
        if resume_from is None:
            manifest = build_manifest(
                config=config.to_dict(),
                config_hash=config_hash,
                seed=config.seed,
                device=device.type,
                run={
                    "model_kwargs": model_kwargs,
                    "world_size": world_size,
                    "rank_batch_size": rank_batch,
                    "global_batch_size": rank_batch * world_size,
                    "lr_world_scale": lr_world,
                    "backend": dist.get_backend() if distributed else None,
                    "deterministic": config.deterministic,
                    "amp_dtype": str(amp_dtype) if amp_dtype else None,
                    "steps_per_epoch": steps_per_epoch,
                    "parameters": sum(p.numel() for p in model.parameters()),
                    "resumes": [],
                },
                **manifest_parts,
            )
        else:
            manifest = json.loads(manifest_path.read_text())
            manifest["run"]["resumes"].append(
                {
                    "step": step,
                    "world_size": world_size,
                    "from_world_size": resumed_world_size,
                    "torch_threads": torch.get_num_threads(),
                    "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
        write_json(manifest, manifest_path)
        (out_dir / "config.yaml").write_text(config.to_yaml())
        (out_dir / "result.json").unlink(missing_ok=True)
    logger = MetricsLogger(
        out_dir,
        config.log,
        keep_until_step=resumed_step if resume_from else None,
        enabled=main_rank,
    )

    signals = _Signals()
    signals.install()
    watchdog = _StackWatchdog(
        out_dir / "stacks" / f"rank{rank}.txt" if distributed else None,
        config.distributed.timeout_s,
    )
    bar = tqdm(
        total=config.max_steps,
        initial=step,
        disable=not progress,
        unit="step",
        dynamic_ncols=True,
        desc=f"train {config.model}",
    )
    stopped = "max_steps" if step >= config.max_steps else None
    last_val: dict[str, Any] | None = None
    train_seconds, timed_steps = 0.0, 0
    sampler = loader.sampler
    try:
        while stopped is None:
            sampler.set_epoch(epoch)
            sampler.set_start(epoch_step * rank_batch)
            t0 = time.perf_counter()
            for batch in loader:
                watchdog.arm()
                x = batch["x"].to(device, non_blocking=True)
                y = batch["y"].to(device, non_blocking=True)
                with autocast():
                    logits = ddp_model(x)
                    loss = masked_cross_entropy(logits, y)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                grad_norm = None
                if config.grad_clip_norm is not None:
                    scaler.unscale_(optimizer)
                    grad_norm = float(
                        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip_norm)
                    )
                lr = optimizer.param_groups[0]["lr"]
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1
                epoch_step += 1
                epoch_done = epoch_step == steps_per_epoch
                if epoch_done:
                    epoch, epoch_step = epoch + 1, 0
                accum["loss_sum"] += float(loss.detach())
                accum["n"] += 1
                now = time.perf_counter()
                train_seconds += now - t0
                timed_steps += 1
                bar.update(1)

                if step % config.log_every == 0 or step == config.max_steps:
                    loss_sum, loss_n = accum["loss_sum"], accum["n"]
                    if distributed:  # the mean over all ranks' batches
                        totals = torch.tensor([loss_sum, loss_n], dtype=torch.float64)
                        dist.all_reduce(totals)
                        loss_sum, loss_n = float(totals[0]), float(totals[1])
                    record = {
                        "kind": "train",
                        "step": step,
                        "epoch": epoch,
                        "lr": lr,
                        "loss": loss_sum / max(1, loss_n),
                        "grad_norm": grad_norm,
                        "elapsed_s": round(train_seconds, 3),
                        "steps_per_s": round(timed_steps / max(train_seconds, 1e-9), 3),
                    }
                    logger.write(record)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", refresh=False)
                    accum = {"loss_sum": 0.0, "n": 0}

                want_stop = None
                if nights is not None and (
                    step % config.val_every == 0 or step == config.max_steps
                ):
                    if distributed:  # validate rank 0's model everywhere (BN running stats)
                        for buffer in model.buffers():
                            dist.broadcast(buffer, 0)
                    last_val = validate(model, nights, device, autocast, distributed=distributed)
                    value = float(last_val[config.early_stopping.metric])
                    value = value if math.isfinite(value) else -math.inf
                    improved = early["best"] is None or (
                        value > early["best"] + config.early_stopping.min_delta
                    )
                    if improved:
                        early.update(best=value, best_step=step, bad=0)
                        state = checkpoint_state()
                        if main_rank:
                            save_checkpoint(state, best_path)
                    else:
                        early["bad"] += 1
                    patience = config.early_stopping.patience
                    if patience is not None and early["bad"] >= patience:
                        want_stop = "early_stopping"
                    logger.write(
                        {
                            "kind": "val",
                            "step": step,
                            "epoch": epoch,
                            **{k: v for k, v in last_val.items() if k != "n_nights"},
                            "best": early["best"],
                        }
                    )
                    bar.set_postfix(
                        loss=f"{float(loss.detach()):.3f}",
                        **{config.early_stopping.metric: f"{value:.3f}"},
                        refresh=False,
                    )
                if step >= config.max_steps:
                    want_stop = want_stop or "max_steps"
                # A signal reaches one rank (or one node): all stop and checkpoint alike.
                flags = [signals.stop is not None, signals.checkpoint]
                if distributed:
                    flags = _agree(flags, device)
                if flags[0] and want_stop is None:
                    want_stop = signals.stop or "SIGTERM"
                if step % config.checkpoint_every == 0 or flags[1] or want_stop is not None:
                    state = checkpoint_state()
                    if main_rank:
                        save_checkpoint(state, last_path)
                    if flags[1] and signals.stop is None:
                        log.warning("signal: checkpoint written at step %d", step)
                    del state
                signals.checkpoint = False
                t0 = time.perf_counter()
                if want_stop is not None:
                    stopped = want_stop
                    break
                if epoch_done:  # a rank with one sample more than the others must not go on
                    break
    finally:
        watchdog.close()
        signals.restore()
        bar.close()
        logger.close()

    if nights is None and main_rank:
        shutil.copyfile(last_path, best_path)  # without validation, the best is the last
    result = TrainResult(
        run_dir=out_dir,
        step=step,
        epoch=epoch,
        stopped=stopped,
        finished=stopped != "SIGTERM",
        resumed_from_step=resumed_step,
        best_step=early["best_step"],
        best_metric=early["best"],
        last_validation=last_val,
        last_checkpoint=last_path,
        best_checkpoint=best_path if best_path.exists() else None,
        weights_sha256=weights_sha256(model.state_dict()),
        train_seconds=train_seconds,
        steps_per_second=timed_steps / train_seconds if train_seconds > 0 else 0.0,
    )
    if main_rank:
        write_json(
            {
                "step": result.step,
                "epoch": result.epoch,
                "stopped": result.stopped,
                "finished": result.finished,
                "resumed_from_step": result.resumed_from_step,
                "best_step": result.best_step,
                "best_metric": result.best_metric,
                "early_stopping_metric": config.early_stopping.metric,
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


class _StackWatchdog:
    """Under DDP, a step that takes longer than the collective timeout (a peer died or hangs)
    dumps every thread's stack to ``stacks/rank<r>.txt`` before the collective fails."""

    def __init__(self, path: Path | None, timeout_s: float) -> None:
        self.path, self.timeout_s, self.file = path, timeout_s, None

    def arm(self) -> None:
        if self.path is None:
            return
        if self.file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(self.path, "a")  # noqa: SIM115 (held open for faulthandler)
        faulthandler.dump_traceback_later(self.timeout_s, repeat=False, file=self.file)

    def close(self) -> None:
        if self.file is not None:
            faulthandler.cancel_dump_traceback_later()
            self.file.close()
            self.file = None


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


def _agree(flags: list[bool], device: Any) -> list[bool]:
    """Every rank's flags OR-ed together, so that all ranks stop and checkpoint alike."""
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(f) for f in flags], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]
