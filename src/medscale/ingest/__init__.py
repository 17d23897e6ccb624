"""The funnel: plan units, convert each one atomically, resume, report bad files."""

from medscale.ingest.plan import IngestPlan, IngestUnit, plan_ingest
from medscale.ingest.report import IngestReport, UnitReport
from medscale.ingest.run import IngestConfig, ingest, ingest_unit

__all__ = [
    "IngestConfig",
    "IngestPlan",
    "IngestReport",
    "IngestUnit",
    "UnitReport",
    "ingest",
    "ingest_unit",
    "plan_ingest",
]
