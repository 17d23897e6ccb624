"""Experiment campaigns: grid, leave-one-out, k-fold, data-fraction and Bayesian studies of
many trials, on a durable ledger, run by local, SLURM or Ray workers, with cost accounting.

See ``docs/campaigns.md``; the design and its measurements are in
``docs/design/campaigns.md``.
"""

from medscale.campaign.engine import Campaign, Worker
from medscale.campaign.spec import CampaignSpec, trial_seed

__all__ = ["Campaign", "CampaignSpec", "Worker", "trial_seed"]
