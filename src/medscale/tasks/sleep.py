"""Sleep staging: one AASM stage (W, N1, N2, N3, REM) per 30-s segment of a PSG recording.

Stored truth is the hypnogram as ``segment_labels`` (codes of `medscale.io.stages`, UNKNOWN =
-1); the metrics are those `medscale.evaluate.metrics.score` reports.
"""

from __future__ import annotations

from medscale.io.stages import SCORED_STAGES, STAGE_NAMES
from medscale.tasks.base import Metric, Task, register_task

SLEEP_STAGING = register_task(
    Task(
        name="sleep_staging",
        input_kind="signals",
        label_kind="segment_classes",
        class_names=tuple(STAGE_NAMES[s] for s in SCORED_STAGES),
        metrics=(
            Metric("kappa"),
            Metric("macro_f1"),
            Metric("accuracy"),
            Metric("mcc"),
        ),
        monitor="kappa",
        segment_s=30.0,
        description="AASM sleep stages per 30-s epoch",
    )
)
