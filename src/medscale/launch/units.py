"""Ingest units on a SLURM job array: the runner (`slurm_runner`) and the array task
(``python -m medscale.launch.units JOB_FILE --task I``).

The runner writes a job file (the spec, source, store, settings and each task's recording
ids), submits the array and waits. Each task plans the ingest again (planning is
deterministic), runs its recordings with the same `UnitJob.run` as a local ingest, and writes
each unit's report as a JSON file, atomically. The runner hands those reports to `ingest`,
which writes the same QC report as a local run; a recording whose task died is listed as
not attempted, with the task's log.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from medscale.errors import SpecError
from medscale.ingest.plan import IngestUnit, plan_ingest
from medscale.ingest.report import UnitReport
from medscale.ingest.run import IngestConfig, StoreWriteFailed, UnitJob, UnitRunner
from medscale.train.config import SlurmConfig
from medscale.train.manifest import write_json

JOB_FORMAT = "medscale-ingest-array"


def _safe_name(recording_id: str) -> str:
    return recording_id.replace("/", "__")


def job_document(
    spec_ref: str, job: UnitJob, tasks: list[list[str]], results_dir: Path
) -> dict[str, Any]:
    return {
        "format": JOB_FORMAT,
        "spec": spec_ref,
        "source": str(Path(job.source_root).resolve()),
        "store": job.store_location,
        "sfreq_hz": job.config.sfreq_hz,
        "segment_s": job.config.segment_s,
        "overwrite": job.overwrite,
        "key_id": job.key_id,
        "tasks": tasks,
        "results": str(results_dir.resolve()),
    }


def run_task(job_file: str | Path, task: int) -> int:
    """Ingest task ``task``'s recordings of ``job_file``; the number that failed."""
    from medscale.datasets.spec import load_dataset_spec

    doc = json.loads(Path(job_file).read_text())
    if doc.get("format") != JOB_FORMAT:
        raise SpecError(f"{job_file}: not a medscale ingest job file")
    spec = load_dataset_spec(doc["spec"])
    plan = plan_ingest(spec, Path(doc["source"]))
    key_id = plan.key.key_id if plan.key is not None else None
    if key_id != doc["key_id"]:
        raise SpecError(
            f"task {task}: the pseudonym key here ({key_id}) is not the driver's "
            f"({doc['key_id']}); export the same MEDSCALE_PSEUDONYM_KEY to the job"
        )
    job = UnitJob(
        spec,
        doc["store"],
        Path(doc["source"]),
        IngestConfig(doc["sfreq_hz"], doc["segment_s"]),
        doc["overwrite"],
        key_id,
    )
    by_id = {u.recording_id: u for u in plan.units}
    wanted = doc["tasks"][task]
    missing = [r for r in wanted if r not in by_id]
    if missing:
        raise SpecError(f"task {task}: recordings {missing[:3]} are no longer in the source")
    results = Path(doc["results"])
    failed = 0
    for recording_id in wanted:
        report = job.run(by_id[recording_id])
        failed += report.status == "failed"
        write_json(asdict(report), results / f"{_safe_name(recording_id)}.json")
    return failed


def _spread(units: list[IngestUnit], n_tasks: int) -> list[list[str]]:
    tasks: list[list[str]] = [[] for _ in range(n_tasks)]
    for i, unit in enumerate(units):
        tasks[i % n_tasks].append(unit.recording_id)
    return tasks


def slurm_runner(
    spec_ref: str,
    work_dir: str | Path,
    slurm: SlurmConfig | None = None,
    *,
    max_tasks: int = 64,
    max_parallel: int | None = None,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
) -> UnitRunner:
    """A `UnitRunner` that runs units as a SLURM job array of at most ``max_tasks`` tasks.

    ``spec_ref`` is what the tasks load the spec from (a shipped name or a .yaml path);
    ``work_dir`` (on a filesystem the nodes share) receives the job file, the batch script,
    the logs and the per-unit reports.
    """
    from medscale.launch.slurm import ingest_array_script, submit, wait_for_job

    slurm = slurm or SlurmConfig()

    def run(units: list[IngestUnit], job: UnitJob, on_done: Callable[[UnitReport], None]):
        if not units:
            return
        root = Path(work_dir).resolve() / time.strftime("ingest-%Y%m%d-%H%M%S")
        results = root / "units"
        results.mkdir(parents=True, exist_ok=True)
        tasks = _spread(units, min(max_tasks, len(units)))
        job_file = root / "job.json"
        write_json(job_document(spec_ref, job, tasks, results), job_file)
        script = ingest_array_script(slurm, job_file, len(tasks), root, max_parallel=max_parallel)
        job_id = submit(script, root / "ingest.sbatch")
        seen: set[str] = set()

        def collect() -> None:
            for path in sorted(results.glob("*.json")):
                if path.name not in seen:
                    seen.add(path.name)
                    on_done(UnitReport(**json.loads(path.read_text())))

        state = wait_for_job(job_id, timeout_s=timeout_s, poll_s=poll_s, on_poll=collect)
        collect()
        bad = {k: v for k, v in state.states.items() if v != "COMPLETED"}
        if bad:
            raise StoreWriteFailed(
                f"SLURM array {job_id}: tasks {sorted(bad)} ended {sorted(set(bad.values()))} "
                f"(logs: {root}/ingest-{job_id}_<task>.out); finished recordings are kept, "
                "rerun to continue"
            )

    return run


def ingest_runner(
    launcher: str,
    spec_ref: str,
    store: str,
    *,
    work_dir: str | None = None,
    max_tasks: int = 64,
    partition: str | None = None,
    time_limit: str = "01:00:00",
    ray_address: str | None = None,
) -> UnitRunner:
    """The `UnitRunner` for ``launcher`` (``slurm`` or ``ray``)."""
    if launcher == "slurm":
        slurm = SlurmConfig(partition=partition, time=time_limit, cpus_per_task=1)
        folder = work_dir or f"{str(store).rstrip('/')}-jobs"
        return slurm_runner(spec_ref, folder, slurm, max_tasks=max_tasks)
    if launcher == "ray":
        from medscale.launch.ray import ray_runner
        from medscale.train.config import RayConfig

        return ray_runner(RayConfig(address=ray_address))
    raise SpecError(f"ingest launcher {launcher!r}: expected local, slurm or ray")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medscale.launch.units")
    parser.add_argument("job_file")
    parser.add_argument("--task", type=int, required=True)
    args = parser.parse_args(argv)
    failed = run_task(args.job_file, args.task)
    print(f"task {args.task}: done ({failed} recordings failed, see the QC report)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
