"""Run an ingest: plan the units, convert each one atomically, write the QC report.

`ingest_unit` is the whole job for one recording (`UnitJob.run` with the run's settings
bound). A `UnitRunner` decides where units run: here, one by one or in a process pool
(`local_runner`), or as a SLURM job array or Ray tasks (`medscale.launch`); the store and
the QC report come out the same.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from tqdm import tqdm

from medscale import __version__
from medscale.datasets.spec import DatasetSpec, load_dataset_spec
from medscale.errors import MedscaleError, SpecError
from medscale.ingest.convert import convert_unit, source_hash, stage_counts
from medscale.ingest.plan import IngestUnit, plan_ingest
from medscale.ingest.report import IngestReport, UnitReport
from medscale.privacy.pseudonyms import KEY_ENV, KEY_FILE_ENV, PseudonymKey, scrub
from medscale.privacy.secrets import mask_credentials
from medscale.store.layout import DEFAULT_SFREQ_HZ, SLEEP_SEGMENT_S
from medscale.store.store import Store
from medscale.tasks import SLEEP_STAGING

# Bump when the conversion changes what is stored, so reruns re-ingest.
CONVERTER_VERSION = 1
_LIBRARIES = ("numpy", "scipy", "zarr", "edfio", "wfdb", "mne")
# OS errors that mean the *store* cannot take more writes: the run must stop, not skip.
_STORE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}


@dataclass(frozen=True)
class IngestConfig:
    """Processing parameters that decide what is stored; their hash is in every recording."""

    sfreq_hz: float = DEFAULT_SFREQ_HZ
    segment_s: float = SLEEP_SEGMENT_S

    def config_hash(self, spec: DatasetSpec) -> str:
        text = f"{spec.config_hash()}|{self.sfreq_hz}|{self.segment_s}|{CONVERTER_VERSION}"
        return hashlib.sha256(text.encode()).hexdigest()


class StoreWriteFailed(MedscaleError):
    """The run cannot go on: the store refuses writes (disk full, permission denied) or a
    worker process died. Finished recordings stay committed; a rerun continues."""


def _library_versions() -> dict[str, str]:
    out = {"medscale": __version__}
    for name in _LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def ingest_unit(
    unit: IngestUnit,
    spec: DatasetSpec,
    store_location: str,
    source_root: Path,
    config: IngestConfig = IngestConfig(),
    overwrite: bool = False,
    key_id: str | None = None,
) -> UnitReport:
    """Convert and commit one recording. Bad input becomes a ``failed`` report; a store
    fault raises `StoreWriteFailed` so the caller can stop the run. ``key_id`` is the
    pseudonym key's public id, recorded with the recording."""
    started = time.perf_counter()
    report = UnitReport(
        recording_id=unit.recording_id, files=list(unit.display_files), status="failed"
    )
    try:
        return _ingest_unit(unit, spec, store_location, config, overwrite, report, key_id)
    finally:
        report.elapsed_s = time.perf_counter() - started
        if unit.redact:  # reader messages name files and ids: keep them out of the report
            report.reason = scrub(report.reason, _redactions(unit, source_root))
            report.warnings = [scrub(w, _redactions(unit, source_root)) for w in report.warnings]


@dataclass(frozen=True)
class UnitJob:
    """Everything a process needs to ingest units of one run (picklable)."""

    spec: DatasetSpec
    store_location: str
    source_root: Path
    config: IngestConfig
    overwrite: bool
    key_id: str | None

    def run(self, unit: IngestUnit) -> UnitReport:
        return ingest_unit(
            unit,
            self.spec,
            self.store_location,
            self.source_root,
            self.config,
            self.overwrite,
            self.key_id,
        )


#: Runs ``units`` of ``job`` somewhere and calls ``on_done`` with each unit's report as it
#: ends. Raises `StoreWriteFailed` when the run must stop (the units it did not report are
#: then listed as not attempted, with the reason).
UnitRunner = Callable[[list[IngestUnit], UnitJob, Callable[[UnitReport], None]], None]


def local_runner(workers: int = 1) -> UnitRunner:
    """Units one after the other here, or in a pool of ``workers`` processes."""

    def run(units: list[IngestUnit], job: UnitJob, on_done: Callable[[UnitReport], None]):
        if workers <= 1:
            for unit in units:
                on_done(job.run(unit))
        else:
            _run_pool(units, job, workers, on_done)

    return run


def _redactions(unit: IngestUnit, source_root: Path) -> list[tuple[str, str]]:
    pairs = []
    for path, shown in zip(unit.files, unit.display_files, strict=True):
        rel = path.relative_to(source_root).as_posix()
        pairs += [(str(path), shown), (rel, shown), (path.name, shown)]
    pairs += [(value, "<id>") for _, value in unit.groups if len(value) >= 3]
    return pairs


def _ingest_unit(
    unit: IngestUnit,
    spec: DatasetSpec,
    store_location: str,
    config: IngestConfig,
    overwrite: bool,
    report: UnitReport,
    key_id: str | None,
) -> UnitReport:
    try:
        store = Store(store_location)
        digest, files = source_hash(unit)
        config_hash = config.config_hash(spec)
        existing = store.recording(unit.dataset, unit.recording_id)
        if (
            not overwrite
            and existing is not None
            and existing.source_hash == digest
            and existing.config_hash == config_hash
        ):
            report.status, report.reason = "skipped", "already in the store, same source and config"
            report.stage_counts = existing.class_counts
            report.stored_duration_s = existing.n_segments * config.segment_s
            return report
        provenance: dict[str, Any] = {
            "source_files": files,
            "adapter": spec.name,
            "adapter_version": spec.version,
            "config_hash": config_hash,
            "converter_version": CONVERTER_VERSION,
            "libraries": _library_versions(),
            "ingested_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        converted = convert_unit(
            unit,
            spec,
            sfreq_hz=config.sfreq_hz,
            segment_s=config.segment_s,
            source_digest=digest,
            config_hash=config_hash,
            provenance=provenance,
            key_id=key_id,
        )
    except (MedscaleError, OSError, ValueError) as exc:
        report.reason = f"{type(exc).__name__}: {exc}"
        return report
    report.channels_found = converted.channels_found
    report.channels_kept = [c.name for c in converted.record.channels]
    report.channels_missing = converted.channels_missing
    report.source_duration_s = converted.source_duration_s
    stages = converted.record.arrays["segment_labels"]
    report.stored_duration_s = len(stages) * config.segment_s
    report.stage_counts = stage_counts(stages)
    report.trim = converted.trim.__dict__
    report.warnings = converted.warnings
    try:
        Store(store_location).write_record(converted.record)
    except OSError as exc:
        if exc.errno in _STORE_ERRNOS:
            raise StoreWriteFailed(
                f"writing {unit.recording_id} to {store_location}: {exc}"
            ) from exc
        raise
    report.status = "ingested"
    return report


def ingest(
    spec: DatasetSpec | str | Path,
    source: str | Path,
    store: str | Path,
    *,
    workers: int = 1,
    overwrite: bool = False,
    config: IngestConfig = IngestConfig(),
    progress: bool = True,
    runner: UnitRunner | None = None,
) -> IngestReport:
    """Ingest every recording of ``spec`` under ``source`` into ``store``.

    Units run here (``workers`` processes) unless a ``runner`` says otherwise (see
    `medscale.launch`).

    Recordings already stored with the same source and config hashes are skipped, so a rerun
    after a crash does only the rest. Files that fail are reported and the run goes on; a
    store fault (disk full, permission denied) stops the run cleanly. The report is written
    to ``STORE/reports/`` as JSON and Markdown, and returned.
    """
    spec_obj = spec if isinstance(spec, DatasetSpec) else load_dataset_spec(spec)
    source_root = Path(source)
    plan = plan_ingest(spec_obj, source_root)
    store_obj = Store.create(store, task=SLEEP_STAGING)
    _check_same_key(store_obj, spec_obj, plan.key)
    key_id = plan.key.key_id if plan.key is not None else None
    report = IngestReport(
        dataset=spec_obj.name,
        spec=mask_credentials(str(spec) if not isinstance(spec, DatasetSpec) else spec_obj.name),
        source_root=mask_credentials(str(source_root)),
        store=mask_credentials(str(store)),
        started_at=_now(),
        workers=workers,
        config_hash=config.config_hash(spec_obj),
        ids=spec_obj.privacy.ids,
        unmatched_files=[{"path": f.path, "reason": f.reason} for f in plan.unmatched],
    )
    results: dict[str, UnitReport] = {}
    bar = tqdm(
        total=len(plan.units), desc=f"ingest {spec_obj.name}", unit="rec", disable=not progress
    )
    job = UnitJob(spec_obj, store_obj.location, source_root, config, overwrite, key_id)

    def on_done(unit_report: UnitReport) -> None:
        results[unit_report.recording_id] = unit_report
        bar.update()

    try:
        (runner or local_runner(workers))(plan.units, job, on_done)
    except StoreWriteFailed as exc:
        report.stopped = str(exc)
    except KeyboardInterrupt:
        report.stopped = "interrupted by the user"
        raise
    finally:
        bar.close()
        for unit in plan.units:
            report.units.append(
                results.get(unit.recording_id)
                or UnitReport(
                    recording_id=unit.recording_id,
                    files=list(unit.display_files),
                    status="not_attempted",
                    reason=f"the run stopped before this recording: {report.stopped}",
                )
            )
        report.run_warnings = _privacy_notes(spec_obj, plan.key) + _unused_aliases(spec_obj, report)
        report.finished_at = _now()
        report.store_content_hash = store_obj.content_hash()
        try:
            report.report_paths = _write_report(store_obj, report)
        except OSError as exc:  # a full disk must not hide the report: the caller still gets it
            report.stopped = report.stopped or f"could not write the report into the store: {exc}"
    return report


def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver where there is one: fork is unsafe once zarr's IO thread runs in this
    process, and spawn re-imports scipy, zarr and edfio in every worker (~1.5 s each)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["medscale.ingest.run"])
    return context


def _init_worker(driver_pid: int) -> None:
    """Each pool worker owns one core: codec threads would only fight the other workers.
    A worker whose driver was killed exits instead of living on as an orphan; a recording
    it leaves half-written has no commit record, so the next run redoes it."""
    import numcodecs.blosc

    numcodecs.blosc.use_threads = False

    def exit_when_orphaned() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(driver_pid, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=exit_when_orphaned, daemon=True, name="orphan-watch").start()


def _run_pool(
    units: list[IngestUnit],
    job: UnitJob,
    workers: int,
    on_done: Callable[[UnitReport], None],
) -> None:
    """Run units in a process pool. On a store fault, start nothing new, let running units
    finish (their outcome is recorded), then raise the fault."""
    context = _pool_context()
    stop: StoreWriteFailed | None = None
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=context,
        initializer=_init_worker,
        initargs=(os.getpid(),),
    ) as pool:
        pending: dict[Future[UnitReport], IngestUnit] = {pool.submit(job.run, u): u for u in units}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    unit = pending.pop(future)
                    if future.cancelled():
                        continue
                    try:
                        on_done(future.result())
                    except StoreWriteFailed as exc:
                        stop = stop or exc
                        for other in pending:
                            other.cancel()
                    except BrokenProcessPool as exc:  # a worker was killed (out of memory?)
                        raise StoreWriteFailed(
                            f"a worker process died while converting {unit.recording_id} "
                            f"({exc}); finished recordings are kept, rerun to continue"
                        ) from exc
        finally:
            for future in pending:
                future.cancel()
    if stop is not None:
        raise stop


def _check_same_key(store: Store, spec: DatasetSpec, key: PseudonymKey | None) -> None:
    """Pseudonyms from two keys in one dataset would split subjects: refuse before any work."""
    key_id = key.key_id if key is not None else None
    for info in store.recordings(spec.name):
        stored = info.metadata.get("privacy", {}).get("key_id")
        if stored != key_id:
            raise SpecError(
                f"dataset {spec.name!r} in {mask_credentials(store.location)} was ingested with "
                f"pseudonym key id {stored!r}, this run has {key_id!r}; use the same key "
                f"(${KEY_ENV} or ${KEY_FILE_ENV}) or another dataset name"
            )


def _privacy_notes(spec: DatasetSpec, key: PseudonymKey | None) -> list[str]:
    if key is None:
        return [
            f"spec {spec.name}: recording and subject ids are stored as the source names them "
            "(privacy.ids: source); make sure they identify no one"
        ]
    if key.created:
        return [
            f"created a new pseudonym key at {key.source}: keep it (and back it up) to get the "
            "same pseudonyms in later ingests; it is never written to the store"
        ]
    return []


def _unused_aliases(spec: DatasetSpec, report: IngestReport) -> list[str]:
    """A declared channel that no converted recording had is probably a wrong alias."""
    converted = [u for u in report.units if u.status == "ingested"]
    if not converted:
        return []
    warnings = []
    for name in spec.kept_channels:
        if all(name in u.channels_missing for u in converted):
            looked = spec.channels.get(name) or [spec.derivations.get(name, "")]
            warnings.append(
                f"spec {report.spec}: channels.{name} matched no recording "
                f"(looked for {looked}); check the alias table"
            )
    return warnings


def _write_report(store: Store, report: IngestReport) -> list[str]:
    """Write the report into the store; return its paths as people see them (masked)."""
    stamp = report.started_at.replace(":", "").replace("-", "").replace("+0000", "Z")
    names = [f"ingest-{report.dataset}-{stamp}.{ext}" for ext in ("json", "md")]
    shown = [mask_credentials(f"{store.location.rstrip('/')}/reports/{n}") for n in names]
    report.report_paths = shown
    store.fs.makedirs(store.reports_path(), exist_ok=True)
    store.fs.pipe_file(f"{store.reports_path()}/{names[0]}", report.to_json().encode())
    store.fs.pipe_file(f"{store.reports_path()}/{names[1]}", report.to_markdown().encode())
    return shown


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
