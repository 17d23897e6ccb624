"""The `medscale` command: thin subcommands over the library API.

Each command parses its arguments, calls one library function, prints, and returns an exit
code: 0 success, 1 a medscale error (bad input, failed recordings), 2 a usage error, 141 the
reader of our output closed the pipe (``medscale store info | head``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medscale import __version__
from medscale.errors import MedscaleError


def _cmd_datasets_list(args: argparse.Namespace) -> int:
    from medscale.datasets.spec import list_datasets, load_dataset_spec

    for name in list_datasets():
        spec = load_dataset_spec(name)
        tag = " [synthetic]" if spec.synthetic else ""
        print(f"{name:<14} v{spec.version}  {spec.description}{tag}")
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from medscale.ingest.run import IngestConfig, ingest

    runner = None
    if args.launcher != "local":
        from medscale.launch.units import ingest_runner

        runner = ingest_runner(
            args.launcher,
            args.spec,
            args.store,
            work_dir=args.work_dir,
            max_tasks=args.tasks,
            partition=args.partition,
            time_limit=args.time,
            ray_address=args.ray_address,
        )
    report = ingest(
        args.spec,
        args.source,
        args.store,
        workers=args.workers,
        overwrite=args.overwrite,
        config=IngestConfig(sfreq_hz=args.sfreq_hz),
        progress=not args.quiet,
        runner=runner,
        lock_timeout_s=args.wait_lock,
    )
    print(report.summary_line())
    for unit in report.units:
        for line in unit.attention():
            print(f"  {line}")
    for warning in report.run_warnings:
        print(f"  warning: {warning}")
    if report.stopped:
        print(f"the run stopped early: {report.stopped}", file=sys.stderr)
    print("report: " + ", ".join(report.report_paths))
    return 0 if report.ok else 1  # partial success is 1: the failed recordings are listed


def _cmd_store_info(args: argparse.Namespace) -> int:
    from medscale.store.store import Store
    from medscale.store.summary import summarize_store

    store = Store(args.store, read_only=True)
    print(summarize_store(store).to_text())
    damaged = [(i.key, store.verify_recording(i)) for i in store.recordings()]
    damaged = [(key, problem) for key, problem in damaged if problem]
    for key, problem in damaged:
        print(f"damaged: {key}: {problem} (rerun its ingest to repair it)")
    return 1 if damaged else 0


def _cmd_store_migrate(args: argparse.Namespace) -> int:
    from medscale.store.migrate import migrate_store

    print(migrate_store(args.store).to_text())
    return 0


def _cmd_privacy_audit(args: argparse.Namespace) -> int:
    from medscale.privacy.audit import audit_store, identifiers_from_sources
    from medscale.store.store import Store

    identifiers: list[str] = []
    if args.source:
        if not args.spec:
            print("error: --source needs --spec (to find the files and read their headers)")
            return 2
        identifiers = identifiers_from_sources(args.spec, args.source)
    findings = audit_store(Store(args.store, read_only=True), identifiers)
    for finding in findings:
        print(f"{finding.kind:<18} {finding.location}  {finding.excerpt}")
    checked = (
        f" against {len(identifiers)} identifiers from the source headers" if args.source else ""
    )
    print(f"{len(findings)} finding(s) in {args.store}{checked}")
    return 1 if findings else 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from medscale.synth import synthesize_nights

    nights = synthesize_nights(
        Path(args.out),
        args.nights,
        seed=args.seed,
        duration_h=args.hours,
        quirks=args.quirk or (),
        progress=not args.quiet,
    )
    print(f"wrote {len(nights)} SYNTHETIC nights to {args.out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from medscale.demo import run_demo

    result = run_demo(
        Path(args.out),
        nights=args.nights,
        hours=args.hours,
        max_steps=args.steps,
        progress=not args.quiet,
    )
    print(result.summary_text)
    print(f"\nstore: {result.store}\ningest reports: {', '.join(result.reports)}")
    if result.evaluation is not None:
        print(f"training run: {result.run_dir} (report: {result.run_dir / 'report.html'})")
        print(result.evaluation.trimming_statement())
        for row in result.evaluation.per_dataset:
            print(
                f"  test {row['model']:<14} {row['dataset']:<14} kappa {row['kappa']:.3f} "
                f"[{row['kappa_low']:.3f}, {row['kappa_high']:.3f}]  accuracy "
                f"{row['accuracy']:.3f}  ({row['n_recordings']} nights)"
            )
        print(_night_roles_text(result.night_roles))
        print(f"evaluation report: {result.evaluation_files['report.html']}")
        print(f"prediction: {result.prediction_files.png} (and .csv, .edf, hypnodensity)")
    for note in result.notes:
        print(f"note: {note}")
    return 0 if result.ok else 1


def _night_roles_text(roles: dict[str, str]) -> str:
    """How many nights of each dataset went where; every night not evaluated by name."""
    from collections import Counter

    counts = Counter((key.split("/", 1)[0], role.split(":")[0]) for key, role in roles.items())
    lines = [f"every stored night ({len(roles)}):"]
    for dataset in sorted({d for d, _ in counts}):
        parts = [f"{n} {role}" for (d, role), n in sorted(counts.items()) if d == dataset]
        lines.append(f"  {dataset}: {', '.join(parts)}")
    lines += [f"  {key}: {role}" for key, role in roles.items() if "not evaluated" in role]
    return "\n".join(lines)


def _cmd_train(args: argparse.Namespace) -> int:
    from medscale.launch.train import launch_training

    outcome = launch_training(
        args.config,
        args.store,
        Path(args.out),
        launcher=args.launcher,
        nproc=args.nproc,
        nnodes=args.nnodes,
        rdzv_endpoint=args.rdzv_endpoint,
        max_restarts=args.max_restarts,
        resume=args.resume,
        max_steps=args.max_steps,
        dry_run=args.dry_run,
        ray_address=args.ray_address,
        progress=not args.quiet,
    )
    if outcome.script is not None and outcome.job_id is None:  # dry run
        print(outcome.script, end="")
        return 0
    if outcome.job_id is not None:
        print(f"submitted SLURM job {outcome.job_id} ({outcome.script_path})")
        print(f"log: {Path(args.out).resolve() / f'slurm-{outcome.job_id}.out'}")
        return 0
    result = outcome.result
    if result is not None:
        metric = result.get("early_stopping_metric")
        best = (
            f"; best {metric} {result['best_metric']:.4f} at step {result['best_step']}"
            if result.get("best_metric") is not None
            else ""
        )
        print(f"{result['stopped']} at step {result['step']}{best}")
    print(f"run: {Path(args.out).resolve()}")
    if outcome.exit_code == 3:
        reason = result["stopped"] if result else "a signal"
        print(f"stopped by {reason}; checkpoint saved: continue with --resume")
    return outcome.exit_code


def _cmd_rerun(args: argparse.Namespace) -> int:
    from medscale.train import rerun

    result = rerun(
        Path(args.run_dir),
        out_dir=Path(args.out) if args.out else None,
        store=args.store,
        progress=not args.quiet,
    )
    print(result.summary())
    return 0 if result.matched else 1


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from medscale.evaluate.run import evaluate_run

    result, paths = evaluate_run(
        Path(args.run_dir),
        args.store,
        subset=args.split,
        out_dir=Path(args.out) if args.out else None,
        baselines=tuple(args.baseline),
        wake_margin_min=args.wake_margin_min,
        progress=not args.quiet,
    )
    print(result.trimming_statement())
    for key, reason in result.not_evaluated.items():
        print(f"  not evaluated: {key}: {reason}")
    for model, pooled in result.pooled.items():
        low, high = pooled["ci"]["kappa"]
        print(
            f"{model:<20} kappa {pooled['kappa']:.3f} [{low:.3f}, {high:.3f}]  "
            f"accuracy {pooled['accuracy']:.3f}  macro-F1 {pooled['macro_f1']:.3f}  "
            f"({pooled['n_recordings']} recordings, {pooled['n_epochs']} epochs)"
        )
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from medscale.predict import expand_sources, predict_many
    from medscale.predict.channels import parse_channel_overrides

    recordings = expand_sources(args.recordings)

    def report_night(outcome) -> None:  # details for a single night; the table for many
        if len(recordings) > 1 or outcome.status != "predicted":
            return
        print(f"{outcome.n_epochs} epochs staged from {outcome.channels}")
        print("  ".join(f"{stage} {n}" for stage, n in outcome.stage_counts.items()))
        for warning in outcome.warnings:
            print(f"  warning: {warning}")

    report = predict_many(
        recordings,
        args.model,
        args.out,
        channels=parse_channel_overrides(args.channels),
        threads=args.threads,
        resume=not args.no_resume,
        progress=not args.quiet,
        on_night=report_night,
    )
    for outcome in report.outcomes:
        if outcome.status == "failed":
            print(f"  failed: {outcome.source}: {outcome.error}", file=sys.stderr)
    print(
        f"{report.count('predicted')} predicted, {report.count('skipped')} already predicted "
        f"with this model, {report.count('failed')} failed; summary: {report.summary}"
    )
    return 0 if report.ok else 1


def _cmd_export(args: argparse.Namespace) -> int:
    from medscale.export import export_onnx

    path = export_onnx(args.run, args.out)
    print(f"wrote {path} and {path.name}.json (the run's processing)")
    return 0


def _campaign(args: argparse.Namespace) -> Any:
    from medscale.campaign import Campaign
    from medscale.campaign.executors import default_folder, load_spec

    spec = load_spec(args.spec, args.store)
    return Campaign(spec, args.dir or default_folder(spec), ledger=args.ledger)


def _cmd_campaign_run(args: argparse.Namespace) -> int:
    from medscale.campaign.executors import run_campaign

    campaign, _ = run_campaign(
        args.spec,
        args.dir,
        executor=args.executor,
        ledger=args.ledger,
        slots=args.slots,
        store=args.store,
        progress=not args.quiet,
    )
    _print_status(campaign.status())
    print(f"campaign folder: {campaign.folder}")
    return 0 if campaign.status()["pending"] == 0 else 2


def _print_status(status: dict[str, Any]) -> None:
    print(
        f"{status['campaign']}: {status['done']}/{status['trials']} done, "
        f"{status['running']} running, {status['failed']} failed, {status['pruned']} pruned, "
        f"{status['pending']} pending; {status['retried']} retried "
        f"({status['attempts']} attempts)"
    )
    eta = "" if status["eta_s"] is None else f", ETA {status['eta_s'] / 60:.1f} min"
    print(
        f"spent {status['device_hours']:.4f} device-hours, {status['cost']:.2f} "
        f"{status['cost_unit']}{eta}"
    )
    for message in status["budget_stops"]:
        print(f"budget: {message}")


def _cmd_campaign_status(args: argparse.Namespace) -> int:
    campaign = _campaign(args)
    status = campaign.status()
    if args.json:
        print(json.dumps(status, indent=1))
    else:
        _print_status(status)
    return 0


def _cmd_campaign_estimate(args: argparse.Namespace) -> int:
    from medscale.campaign.estimate import estimate

    result = estimate(_campaign(args), slots=args.slots, calibration_steps=args.steps)
    per = result["per_trial"]
    print(
        f"{result['campaign']}: {result['trials']} trials, calibrated on "
        f"{result['calibration']['key']} ({result['calibration']['wall_s']:.1f} s)"
    )
    print(f"per trial: {per['wall_s']:.1f} s wall, {per['device_s'] / 3600:.4f} device-hours")
    print(
        f"total: {result['device_hours']:.3f} {result['device_kind']}-hours, "
        f"{result['wall_hours']:.3f} h wall on {result['slots']} slot(s), "
        f"{result['cost']:.2f} {result['cost_unit']} at {result['instance']}"
    )
    if result["over_budget"]:
        print("warning: this is over the spec's budget; the campaign will stop launching there")
    return 0


def _cmd_campaign_report(args: argparse.Namespace) -> int:
    from medscale.campaign.report import write_report

    campaign = _campaign(args)
    spec = campaign.spec
    paths = write_report(
        campaign.rows(),
        args.out or campaign.folder / "report",
        title=f"Campaign {spec.name}",
        forms=spec.forms,
        metric=spec.model.metric,
        direction=spec.model.direction,
        study=campaign.study if spec.is_bayesian else None,
        cost_unit=spec.model.cost.unit,
    )
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def _cmd_campaign_worker(args: argparse.Namespace) -> int:
    from medscale.campaign.executors import run_worker

    ran = run_worker(args.spec, args.dir, ledger=args.ledger, slots=args.slots, store=args.store)
    print(f"worker ran {ran} trial(s)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show full tracebacks")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser = argparse.ArgumentParser(prog="medscale", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"medscale {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(group: argparse._SubParsersAction, name: str, **kwargs) -> argparse.ArgumentParser:
        return group.add_parser(name, parents=[common], **kwargs)  # all take --debug, --quiet

    demo = command(sub, "demo", help="the whole path: synth, ingest, train, evaluate, predict")
    demo.add_argument("--out", default="demo-out", help="output folder (default: demo-out)")
    demo.add_argument("--nights", type=int, default=10, help="synthetic nights (default: 10)")
    demo.add_argument("--hours", type=float, default=3.0, help="hours a night (default: 3)")
    demo.add_argument("--steps", type=int, help="training steps (default: the bundled config's)")
    demo.set_defaults(func=_cmd_demo)

    datasets = command(sub, "datasets", help="shipped dataset specs")
    datasets_sub = datasets.add_subparsers(dest="action", required=True)
    command(datasets_sub, "list", help="list the shipped dataset specs").set_defaults(
        func=_cmd_datasets_list
    )

    ingest = command(sub, "ingest", help="ingest a dataset into a store")
    ingest.add_argument("spec", help="a shipped dataset name (see `datasets list`) or a .yaml spec")
    ingest.add_argument("--source", required=True, help="folder holding the dataset's files")
    ingest.add_argument("--store", required=True, help="store folder or fsspec URL")
    ingest.add_argument("--workers", type=int, default=1, help="parallel processes (default: 1)")
    ingest.add_argument("--overwrite", action="store_true", help="re-ingest up-to-date recordings")
    ingest.add_argument("--sfreq-hz", type=float, default=128.0, help="store rate (default: 128)")
    ingest.add_argument(
        "--launcher",
        choices=["local", "slurm", "ray"],
        default="local",
        help="where recordings are converted: here (--workers), a SLURM job array, Ray tasks",
    )
    ingest.add_argument("--tasks", type=int, default=64, help="slurm: most array tasks")
    ingest.add_argument("--partition", help="slurm: partition")
    ingest.add_argument("--time", default="01:00:00", help="slurm: time limit a task")
    ingest.add_argument("--work-dir", help="slurm: job files and logs (default: STORE-jobs)")
    ingest.add_argument("--ray-address", help="ray: cluster address (default: a local Ray)")
    ingest.add_argument(
        "--wait-lock",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for another ingest into the store to finish (default: refuse)",
    )
    ingest.set_defaults(func=_cmd_ingest)

    store = command(sub, "store", help="inspect or migrate a store")
    store_sub = store.add_subparsers(dest="action", required=True)
    info = command(store_sub, "info", help="datasets, recordings, hours, classes, size")
    info.add_argument("store")
    info.set_defaults(func=_cmd_store_info)
    migrate = command(store_sub, "migrate", help="bring an older store to the current layout")
    migrate.add_argument("store")
    migrate.set_defaults(func=_cmd_store_migrate)

    privacy = command(sub, "privacy", help="privacy checks")
    privacy_sub = privacy.add_subparsers(dest="action", required=True)
    audit = command(privacy_sub, "audit", help="scan a store for identifiers, dates, free text")
    audit.add_argument("store")
    audit.add_argument("--spec", help="the dataset spec, to read identifiers from --source")
    audit.add_argument("--source", help="the source folder whose header identifiers to look for")
    audit.set_defaults(func=_cmd_privacy_audit)

    synth = command(sub, "synth", help="write SYNTHETIC full-night PSG EDF files")
    synth.add_argument("out", help="output folder")
    synth.add_argument("--nights", type=int, default=1)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--hours", type=float, default=8.0, help="night length (default: 8)")
    synth.add_argument(
        "--quirk", action="append", help="inject a real-world file quirk (repeatable)"
    )
    synth.set_defaults(func=_cmd_synth)

    train = command(sub, "train", help="train a model on a store (exit 3: stopped by SIGTERM)")
    train.add_argument("config", help="a training config .yaml, or a bundled config name")
    train.add_argument("--store", required=True, help="store folder or fsspec URL")
    train.add_argument("--out", required=True, help="run folder (manifest, metrics, checkpoints)")
    train.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    train.add_argument("--max-steps", type=int, help="override the config's max_steps")
    train.add_argument(
        "--launcher",
        choices=["local", "torchrun", "slurm", "ray"],
        default="local",
        help="where the ranks run (default: local, one process unless --nproc)",
    )
    train.add_argument("--nproc", type=int, default=1, help="ranks per node (default: 1)")
    train.add_argument("--nnodes", type=int, default=1, help="nodes (torchrun, slurm)")
    train.add_argument("--rdzv-endpoint", help="torchrun on several nodes: FIRST_NODE:PORT")
    train.add_argument(
        "--max-restarts", type=int, default=0, help="torchrun: restarts after a rank dies"
    )
    train.add_argument("--dry-run", action="store_true", help="slurm: print the batch script")
    train.add_argument("--ray-address", help="ray: cluster address (default: the config's)")
    train.set_defaults(func=_cmd_train)

    rerun = command(sub, "rerun", help="repeat a finished run and compare weights and metrics")
    rerun.add_argument("run_dir", help="the run folder to repeat")
    rerun.add_argument("--out", help="folder for the repeat (default: RUN_DIR-rerun)")
    rerun.add_argument("--store", help="the store, if it moved (its content must be the same)")
    rerun.set_defaults(func=_cmd_rerun)

    evaluate = command(sub, "evaluate", help="score a run's model on a subset of its split")
    evaluate.add_argument("run_dir", help="the training run folder")
    evaluate.add_argument("--store", required=True, help="the store the run trained on")
    evaluate.add_argument("--split", default="test", help="subset to score (default: test)")
    evaluate.add_argument("--out", help="output folder (default: RUN_DIR/eval-SPLIT)")
    evaluate.add_argument(
        "--baseline", action="append", default=[], choices=["yasa"], help="also score YASA"
    )
    evaluate.add_argument(
        "--wake-margin-min",
        type=float,
        help="score only this many minutes of wake around sleep (default: every epoch)",
    )
    evaluate.set_defaults(func=_cmd_evaluate)

    predict = command(sub, "predict", help="hypnogram and hypnodensity for recordings")
    predict.add_argument(
        "recordings",
        nargs="+",
        help="signal files (EDF/BDF, WFDB .hea, anything MNE reads), folders or glob patterns",
    )
    predict.add_argument(
        "--model", required=True, help="the training run folder, or a MODEL.onnx export"
    )
    predict.add_argument("--out", required=True, help="output folder")
    predict.add_argument(
        "--channels",
        action="append",
        default=[],
        metavar="GROUP=LABEL",
        help="use this signal for a channel group, e.g. --channels eeg=C3-A2 (repeatable)",
    )
    predict.add_argument("--threads", type=int, help="CPU threads for the model (default: all)")
    predict.add_argument(
        "--no-resume",
        action="store_true",
        help="predict again nights already predicted with this model",
    )
    predict.set_defaults(func=_cmd_predict)
    export = command(sub, "export", help="a training run's model for deployment (ONNX)")
    export.add_argument("run", help="the training run folder")
    export.add_argument("--format", choices=["onnx"], default="onnx")
    export.add_argument("--out", help="the .onnx file to write (default: RUN/model.onnx)")
    export.set_defaults(func=_cmd_export)
    campaign = command(sub, "campaign", help="many trials: sweeps, leave-one-out, k-fold, ...")
    campaign_sub = campaign.add_subparsers(dest="action", required=True)

    def campaign_command(name: str, help: str, func: Any) -> argparse.ArgumentParser:
        p = command(campaign_sub, name, help=help)
        p.add_argument("spec", help="the campaign spec (.yaml)")
        p.add_argument("--dir", help="campaign folder (default: campaigns/NAME beside the spec)")
        p.add_argument("--ledger", help="ledger URL (default: the spec's, else a journal file)")
        p.add_argument("--store", help="the store to use instead of the spec's")
        p.set_defaults(func=func)
        return p

    run = campaign_command("run", "run or resume the campaign", _cmd_campaign_run)
    run.add_argument("--executor", choices=["local", "slurm", "ray"], default="local")
    run.add_argument("--slots", type=int, help="trials at once here (default: the spec's)")
    est = campaign_command(
        "estimate", "time one trial, project hours and cost", _cmd_campaign_estimate
    )
    est.add_argument("--slots", type=int, help="parallel slots to project for")
    est.add_argument("--steps", type=int, default=10, help="calibration steps (default: 10)")
    st = campaign_command(
        "status", "done, running, failed, pending; hours, cost, ETA", _cmd_campaign_status
    )
    st.add_argument("--json", action="store_true", help="print JSON")
    rep = campaign_command("report", "results table and HTML report", _cmd_campaign_report)
    rep.add_argument("--out", help="report folder (default: CAMPAIGN/report)")
    wk = campaign_command("worker", "one worker (what SLURM array tasks run)", _cmd_campaign_worker)
    wk.add_argument("--slots", type=int, help="trials at once (default: the spec's)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, so that a closed pipe is met inside this try
        return code
    except BrokenPipeError:  # `medscale store info | head`: the reader left, nothing to say
        # Before OSError, of which it is one: a closed pipe is no error of the user's.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the exit flush does not raise again
        return 141  # 128 + SIGPIPE, as a shell tool killed by the closed pipe would
    except (MedscaleError, OSError) as exc:
        # OSError: a path the user gave cannot be read or written (missing, no permission, disk
        # full); its message names the path. Other exceptions are bugs and keep their traceback.
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
