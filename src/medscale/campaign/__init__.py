"""Experiment campaigns: grid, leave-one-out, k-fold, data-fraction and Bayesian studies of
many trials, on a durable ledger, run by local, SLURM or Ray workers, with cost accounting.

See ``docs/campaigns.md``; the design and its measurements are in
``docs/design/campaigns.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medscale.campaign.engine import Campaign
    from medscale.campaign.spec import CampaignSpec, trial_seed
    from medscale.campaign.worker import Worker

__all__ = ["Campaign", "CampaignSpec", "Worker", "trial_seed"]

_WHERE = {
    "Campaign": "medscale.campaign.engine",
    "Worker": "medscale.campaign.worker",
    "CampaignSpec": "medscale.campaign.spec",
    "trial_seed": "medscale.campaign.spec",
}


def __getattr__(name: str) -> Any:
    # Lazy: a trial process imports medscale.campaign.trial, and must not pay for optuna
    # and SQLAlchemy (~0.5 s) that only the engine needs.
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'medscale.campaign' has no attribute {name!r}")
