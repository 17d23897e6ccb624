"""Tasks: what the engine predicts from stored records (see `medscale.tasks.base`).

Registered: ``sleep_staging`` and the SYNTHETIC test tasks ``toy_events``, ``toy_images`` and
``toy_volumes``.
Importing this package does not import torch.
"""

from medscale.tasks.base import (
    EVENT_FIELDS,
    IGNORE_INDEX,
    INPUT_KINDS,
    LABEL_ARRAY,
    LABEL_KINDS,
    InputKind,
    LabelKind,
    Metric,
    Task,
    event_segments,
    get_task,
    list_tasks,
    register_task,
)
from medscale.tasks.sleep import SLEEP_STAGING
from medscale.tasks.toy import TOY_EVENTS, TOY_IMAGES, TOY_VOLUMES

__all__ = [
    "EVENT_FIELDS",
    "IGNORE_INDEX",
    "INPUT_KINDS",
    "LABEL_ARRAY",
    "LABEL_KINDS",
    "SLEEP_STAGING",
    "TOY_EVENTS",
    "TOY_IMAGES",
    "TOY_VOLUMES",
    "InputKind",
    "LabelKind",
    "Metric",
    "Task",
    "event_segments",
    "get_task",
    "list_tasks",
    "register_task",
]
