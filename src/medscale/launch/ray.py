"""``--launcher ray``: training ranks under Ray Train, ingest units as Ray tasks.

`connect` opens a Ray session: a private Ray on 127.0.0.1 (``RayConfig.address`` null) or the
cluster at an address, refused with a `LaunchError` within ``connect_timeout_s`` when nothing
answers there. `train_on_ray` runs the one training path (`medscale.launch.worker.run_rank`)
in each worker of a Ray Train ``TorchTrainer``; `ray_runner` is the `UnitRunner` that ingests
each recording as a Ray task. Ray is optional and imported only here, when used.

Paths (config, store, run folder, source) must be readable under the same names on every Ray
node: a shared filesystem, or a private Ray on this machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medscale.errors import LaunchError, MedscaleError, RendezvousError
from medscale.ingest.plan import IngestUnit
from medscale.ingest.report import UnitReport
from medscale.ingest.run import StoreWriteFailed, UnitJob, UnitRunner
from medscale.launch.references import config_reference
from medscale.launch.rendezvous import is_loopback, wait_for_listener
from medscale.train.config import RayConfig

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

#: Set for every session: no usage report leaves the machine.
SESSION_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}

#: Set for a Ray on this machine. Ray reads it when it is imported: with "0" it takes
#: 127.0.0.1 as the node address and binds its listeners there instead of on the address of
#: the default route (an internal switch, checked for Ray 2.60; ``_node_ip_address`` alone is
#: turned back into the eth0 address). `connect` checks the node address after starting.
LOCAL_ONLY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}

#: Ray's variables for token authentication (on by default for a new local Ray in 2.60).
AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")

#: Where `train_on_ray` keeps Ray Train's own files, inside the run folder.
RAY_STORAGE_DIR = "ray"


@dataclass(frozen=True)
class RaySession:
    """An open Ray session: where, whether `connect` started it, and its CPUs then."""

    address: str
    started: bool
    cpus: float


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise LaunchError(
            "the Ray launcher needs Ray: pip install 'medscale[ray]' (ray[train,tune])"
        ) from exc
    return ray


@contextlib.contextmanager
def _patched_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set ``values`` in os.environ (Ray's processes inherit them), restore on exit."""
    old = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _local_only() -> Iterator[None]:
    """`LOCAL_ONLY_ENV` for Ray's processes, and for this one when Ray is already imported
    (it read the switch at import time)."""
    with _patched_env(LOCAL_ONLY_ENV):
        constants = sys.modules.get("ray._private.ray_constants")
        old = getattr(constants, "ENABLE_RAY_CLUSTER", None)
        if old:
            constants.ENABLE_RAY_CLUSTER = False  # type: ignore[union-attr]
        try:
            yield
        finally:
            if old:
                constants.ENABLE_RAY_CLUSTER = old  # type: ignore[union-attr]


def _private_auth_env() -> dict[str, str]:
    """Token authentication with a fresh token that lives only in this process tree: other
    users of the machine cannot submit work to the loopback ports, and nothing is written
    to ~/.ray (Ray's default). A token or mode the user set is kept."""
    if any(name in os.environ for name in AUTH_VARS):
        return {}
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def _reload_auth_settings() -> None:
    """Make this process see the authentication variables as they are now: Ray reads
    RAY_AUTH_MODE once into its C++ config and caches the first token it loads."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # an older Ray without token authentication
        pass


def _loopback_collectives_env() -> dict[str, str]:
    """Training workers of a private Ray meet over loopback too: gloo and NCCL otherwise
    listen on the interface the hostname resolves to. Settings the user made are kept."""
    names = [name for _, name in socket.if_nameindex() if name.startswith("lo")]
    if not names:
        return {}
    return {
        var: names[0]
        for var in ("GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME")
        if var not in os.environ
    }


def _cluster_cpus(ray: Any) -> float:
    return float(ray.cluster_resources().get("CPU", 0.0))


@contextlib.contextmanager
def connect(config: RayConfig | None = None) -> Iterator[RaySession]:
    """A Ray session for the ``with`` block, shut down (or disconnected) after it.

    ``config.address`` null: start a private Ray on 127.0.0.1 only, with as many CPUs as this
    machine has (at least ``num_workers × cpus_per_worker``, so a run always fits). Otherwise
    connect to the cluster there (``host:port`` of its head, or ``ray://host:port`` for Ray
    Client); a `LaunchError` names the address when it does not answer within
    ``connect_timeout_s``. When Ray is already connected in this process (an enclosing
    `connect`), that session is used as it is and left open.
    """
    config = config or RayConfig()
    ray = _import_ray()
    if ray.is_initialized():
        yield _reuse(ray, config)
        return
    opened = _private_session if config.address is None else _cluster_session
    with opened(ray, config) as session:
        _active.append((config.address, session))
        try:
            yield session
        finally:
            _active.pop()


#: The sessions `connect` opened and holds now, innermost last: (address asked, session).
_active: list[tuple[str | None, RaySession]] = []


def _reuse(ray: Any, config: RayConfig) -> RaySession:
    """The session this process is in, if ``config`` may use it: any one for a null address
    (Ray runs already), else only the one at the same address."""
    if _active:
        asked, session = _active[-1]
    else:  # connected by someone else (ray.init)
        try:
            address = str(ray.get_runtime_context().gcs_address)
        except Exception:  # Ray Client has no GCS address here
            address = "an existing Ray session"
        asked, session = address, RaySession(address, False, _cluster_cpus(ray))
    if config.address is not None and config.address not in (asked, session.address):
        raise LaunchError(
            f"this process is already connected to Ray at {session.address}; it cannot also "
            f"join {config.address} (one Ray session per process)"
        )
    return dataclasses.replace(session, started=False, cpus=_cluster_cpus(ray))


@contextlib.contextmanager
def _private_session(ray: Any, config: RayConfig) -> Iterator[RaySession]:
    wanted = math.ceil(config.num_workers * config.cpus_per_worker)
    cpus = max(os.cpu_count() or 1, wanted)
    env = {**SESSION_ENV, **_private_auth_env(), **_loopback_collectives_env()}
    try:
        with _patched_env(env), _local_only():
            _reload_auth_settings()
            started = time.perf_counter()
            # RAY_ADDRESS would make ray.init join that cluster; "local" starts a new one.
            context = ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                _node_ip_address=LOOPBACK,
            )
            try:
                node_ip = context.address_info["node_ip_address"]
                if not is_loopback(node_ip):  # fail closed if Ray ignores the switch one day
                    raise LaunchError(
                        f"the private Ray took {node_ip} as its address instead of "
                        f"{LOOPBACK}; refusing to run with listeners outside loopback"
                    )
                log.info("private Ray on %s up in %.1fs", node_ip, time.perf_counter() - started)
                yield RaySession(context.address_info["gcs_address"], True, _cluster_cpus(ray))
            finally:
                ray.shutdown()
    finally:
        _reload_auth_settings()  # as the environment is again, for a later session


def split_address(address: str) -> tuple[str, int, bool]:
    """``(host, port, is_ray_client)`` of ``host:port``, ``[v6]:port`` or ``ray://host:port``."""
    rest = address.strip()
    client = rest.startswith("ray://")
    if client:
        rest = rest[len("ray://") :]
    rest = rest.rstrip("/")
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LaunchError(
            f"Ray address {address!r}: give host:port of the head (e.g. 10.0.0.5:6379) or "
            "ray://host:port for Ray Client"
        )
    return host, int(port), client


def _init_before(ray: Any, deadline: float, shown: str, **kwargs: Any) -> Any:
    """ray.init(**kwargs), given up at ``deadline``: against a port that accepts TCP but is
    no Ray head, Ray retries for minutes. A late success is shut down again."""
    box: dict[str, Any] = {}
    gave_up = threading.Event()

    def attempt() -> None:
        try:
            box["context"] = ray.init(**kwargs)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
            return
        if gave_up.is_set():
            ray.shutdown()

    thread = threading.Thread(target=attempt, name="ray-connect", daemon=True)
    # Ray only warns that it cannot set its SIGTERM handler from this thread.
    worker_log = logging.getLogger("ray._private.worker")
    quiet = _DropMessage("SIGTERM handler is not set")
    worker_log.addFilter(quiet)
    try:
        thread.start()
        thread.join(max(0.0, deadline - time.monotonic()))
    finally:
        worker_log.removeFilter(quiet)
    if thread.is_alive():
        gave_up.set()
        raise LaunchError(
            f"Ray at {shown} accepts connections but did not let this driver join in "
            "time; is it a Ray head of the same Ray version (and token, if it uses one)?"
        )
    if "error" in box:
        raise LaunchError(f"could not join Ray at {shown}: {box['error']}") from box["error"]
    return box["context"]


class _DropMessage(logging.Filter):
    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def _cluster_session(ray: Any, config: RayConfig) -> Iterator[RaySession]:
    address = str(config.address)
    host, port, client = split_address(address)
    deadline = time.monotonic() + config.connect_timeout_s
    try:
        wait_for_listener(host, port, config.connect_timeout_s)
    except RendezvousError as exc:
        raise LaunchError(
            f"Ray at {address} does not answer ({exc}); is the head started "
            "(scripts/ray-up.sh, `ray start --head`) and the address right?"
        ) from None
    kwargs: dict[str, Any] = {"address": address}
    local = contextlib.nullcontext()
    if is_loopback(host) and not client:
        # A head on this machine's loopback (scripts/ray-up.sh): this driver must take the
        # same node address, or Ray looks for a raylet on eth0 and waits.
        kwargs["_node_ip_address"] = LOOPBACK
        local = _local_only()
    try:
        with _patched_env(SESSION_ENV), local:
            _reload_auth_settings()
            _init_before(ray, deadline, address, **kwargs)
            try:
                yield RaySession(address, started=False, cpus=_cluster_cpus(ray))
            finally:
                ray.shutdown()  # disconnects; the cluster is not ours to stop
    finally:
        _reload_auth_settings()


# --- training ------------------------------------------------------------------------


def _absolute(location: str | Path) -> str:
    """Absolute local paths (Ray workers may start elsewhere); URLs as they are."""
    text = str(location)
    return text if "://" in text else str(Path(text).resolve())


def _train_loop(loop_config: dict[str, Any]) -> None:
    """One TorchTrainer worker: Ray has joined the process group; train as its rank."""
    import torch

    from medscale.launch.worker import run_rank

    # One intra-op thread per reserved CPU: the bits depend on the thread count, and a
    # worker that used every core would fight its peers (the variable: for its subprocesses).
    threads = max(1, int(loop_config["cpus_per_worker"]))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if loop_config["use_gpu"]:
        import ray.train.torch

        torch.cuda.set_device(ray.train.torch.get_device())  # the GPU Ray gave this worker
    # A run stopped by SIGTERM has written a checkpoint and result.json; the driver reports
    # it as not finished, as torchrun's exit status 3 does.
    run_rank(
        loop_config["config_path"],
        loop_config["store"],
        loop_config["out_dir"],
        resume=loop_config["resume"],
        progress=loop_config["progress"],
        max_steps=loop_config["max_steps"],
    )


def train_on_ray(
    config_path: str | Path,
    store: str | Path,
    out_dir: str | Path,
    *,
    resume: bool = False,
    ray_config: RayConfig | None = None,
    max_failures: int = 0,
    max_steps: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``config_path`` on ``store`` into ``out_dir`` with ``ray_config.num_workers``
    ranks under Ray Train's TorchTrainer (default: the config's ``ray`` section).

    Every worker calls `medscale.launch.worker.run_rank` with ``resume=True``, so a restart
    after a worker died (``max_failures``) continues from the last checkpoint; whether
    ``out_dir`` may be started fresh is checked here, once, before. Ray Train's own files go
    to ``out_dir/ray``. ``max_steps`` overrides the config's. Returns ``result.json``'s step,
    finished flag (false: stopped by SIGTERM, checkpointed; resume to continue) and weights
    hash, with the world size and the run folder.
    """
    from medscale.train import TrainConfig
    from medscale.train.trainer import check_run_dir

    config_file = config_reference(config_path)  # a bundled name stays a name
    train_config = TrainConfig.load(config_file)
    ray_config = ray_config or train_config.ray
    run_dir = Path(out_dir).resolve()
    check_run_dir(run_dir, resume)
    run_dir.mkdir(parents=True, exist_ok=True)

    with connect(ray_config):
        from ray.train import FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
        from ray.train.torch import TorchConfig, TorchTrainer

        backend = train_config.distributed.backend
        trainer = TorchTrainer(
            _train_loop,
            train_loop_config={
                "config_path": config_file,
                "store": _absolute(store),
                "out_dir": str(run_dir),
                "resume": True,
                "progress": progress,
                "max_steps": max_steps,
                "cpus_per_worker": ray_config.cpus_per_worker,
                "use_gpu": ray_config.use_gpu,
            },
            torch_config=TorchConfig(
                backend=None if backend == "auto" else backend,
                timeout_s=math.ceil(train_config.distributed.timeout_s),
            ),
            scaling_config=ScalingConfig(
                num_workers=ray_config.num_workers,
                use_gpu=ray_config.use_gpu,
                resources_per_worker={"CPU": ray_config.cpus_per_worker},
            ),
            run_config=RunConfig(
                name=time.strftime("train-%Y%m%d-%H%M%S"),
                storage_path=str(run_dir / RAY_STORAGE_DIR),
                failure_config=FailureConfig(max_failures=max_failures),
            ),
        )
        try:
            trainer.fit()
        except TrainingFailedError as exc:
            failures = getattr(exc, "worker_failures", None) or {}
            first = failures[min(failures)] if failures else None
            if isinstance(first, MedscaleError):  # bad input: reported as a local run does
                raise first from exc
            raise LaunchError(
                f"Ray training into {run_dir} failed: {exc} (Ray Train's files: "
                f"{run_dir / RAY_STORAGE_DIR})"
            ) from exc
    return _summary(run_dir)


def _summary(run_dir: Path) -> dict[str, Any]:
    result_path = run_dir / "result.json"
    if not result_path.is_file():
        raise LaunchError(f"Ray training ended but wrote no {result_path}")
    result = json.loads(result_path.read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return {
        "run_dir": str(run_dir),
        "world_size": manifest["run"]["world_size"],
        "step": result["step"],
        "finished": result["finished"],
        "stopped": result["stopped"],
        "weights_sha256": result["weights_sha256"],
    }


# --- ingest --------------------------------------------------------------------------


def _ingest_one(job: UnitJob, unit: IngestUnit) -> UnitReport:
    """One unit in a Ray worker, like a local pool worker: the task holds one CPU, so the
    codec gets no threads of its own."""
    import numcodecs.blosc

    numcodecs.blosc.use_threads = False
    return job.run(unit)


def ray_runner(ray_config: RayConfig | None = None) -> UnitRunner:
    """A `UnitRunner` that ingests each unit as a Ray task (one CPU each), at most as many
    at once as the cluster has CPUs, reporting each as it ends.

    A store fault (`StoreWriteFailed`) or another error in a task starts nothing new, lets
    the running tasks end (their reports count), then is raised; a worker or node that died
    becomes `StoreWriteFailed`. Tasks are not retried: the units a stopped run did not finish
    are redone by the next run, as with a local ingest.
    """

    def run(units: list[IngestUnit], job: UnitJob, on_done: Callable[[UnitReport], None]):
        if not units:
            return
        with connect(ray_config) as session:
            _run_tasks(units, job, on_done, max(1, int(session.cpus)))

    return run


def _run_tasks(
    units: list[IngestUnit],
    job: UnitJob,
    on_done: Callable[[UnitReport], None],
    limit: int,
) -> None:
    import ray
    from ray.exceptions import RayError, RayTaskError

    # Relative paths would resolve against the workers' folder, not this one.
    local_source = "://" not in str(job.source_root)
    job = dataclasses.replace(
        job,
        store_location=_absolute(job.store_location),
        source_root=Path(os.path.abspath(job.source_root)) if local_source else job.source_root,
    )
    task = ray.remote(num_cpus=1, max_retries=0)(_ingest_one)
    job_ref = ray.put(job)
    queue = list(reversed(units))
    running: dict[Any, IngestUnit] = {}
    stop: BaseException | None = None
    try:
        while running or (queue and stop is None):
            while queue and stop is None and len(running) < limit:
                unit = _absolute_unit(queue.pop()) if local_source else queue.pop()
                running[task.remote(job_ref, unit)] = unit
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                unit = running.pop(ref)
                try:
                    report = ray.get(ref)
                except RayTaskError as exc:  # the task raised: hand on the original error
                    stop = stop or _cause(exc)
                    continue
                except RayError as exc:  # the worker process or its node died
                    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    stop = stop or StoreWriteFailed(
                        f"the Ray worker converting {unit.recording_id} died "
                        f"({type(exc).__name__}: {first_line}); finished recordings are kept, "
                        "rerun to continue"
                    )
                    continue
                on_done(report)
    finally:
        for ref in running:  # interrupted: tasks on a cluster would run on (commits are atomic)
            ray.cancel(ref)
    if stop is not None:
        raise stop


def _absolute_unit(unit: IngestUnit) -> IngestUnit:
    def absolute(path: Path) -> Path:
        return Path(os.path.abspath(path))

    return dataclasses.replace(
        unit,
        signal_path=absolute(unit.signal_path),
        annotation_path=absolute(unit.annotation_path),
        companions=tuple(absolute(p) for p in unit.companions),
    )


def _cause(exc: Any) -> BaseException:
    cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else None
    return cause if cause is not None else exc
