"""SYNTHETIC toy tasks that exercise the engine beyond sleep in tests (see `medscale.synth.toy`).

``toy_events``: binary events (bursts) on synthetic signals, scored per 2-s segment.
``toy_images``: multi-label detection of shapes in small synthetic images.
``toy_volumes``: per-voxel segmentation of balls in small synthetic volumes.
"""

from __future__ import annotations

from medscale.tasks.base import Metric, Task, register_task

TOY_EVENTS = register_task(
    Task(
        name="toy_events",
        input_kind="signals",
        label_kind="time_events",
        class_names=("background", "burst"),
        metrics=(Metric("f1_event"), Metric("accuracy"), Metric("loss", "min")),
        monitor="f1_event",
        segment_s=2.0,
        description="SYNTHETIC: sine bursts on noise, one label per 2-s segment",
        synthetic=True,
    )
)

TOY_IMAGES = register_task(
    Task(
        name="toy_images",
        input_kind="image",
        label_kind="image_multilabel",
        class_names=("square", "disc", "bar"),
        metrics=(Metric("macro_auroc"), Metric("loss", "min")),
        monitor="macro_auroc",
        description="SYNTHETIC: which of three shapes appear in a 32x32 image",
        synthetic=True,
    )
)

TOY_VOLUMES = register_task(
    Task(
        name="toy_volumes",
        input_kind="volume",
        label_kind="voxel_mask",
        class_names=("background", "ball"),
        metrics=(Metric("dice_ball"), Metric("loss", "min")),
        monitor="dice_ball",
        description="SYNTHETIC: segment bright balls in a noisy 3-D volume",
        synthetic=True,
    )
)
