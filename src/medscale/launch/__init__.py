"""Launchers: where the ranks of a training run (or the units of an ingest) run.

The training code path is one (`medscale.train.train`); a launcher only decides where its
processes start: here (`torchrun`), on SLURM (`slurm`) or on Ray (`ray`).
"""
