"""The QC report of an ingest run: every source file, what became of it and why."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Status = Literal["ingested", "skipped", "failed", "not_attempted"]


@dataclass
class UnitReport:
    """What happened to one recording (a signal file and its annotation file)."""

    recording_id: str
    files: list[str]
    status: Status
    reason: str = ""
    channels_found: list[str] = field(default_factory=list)
    channels_kept: list[str] = field(default_factory=list)
    channels_missing: list[str] = field(default_factory=list)
    source_duration_s: float | None = None
    stored_duration_s: float | None = None
    stage_counts: dict[str, int] = field(default_factory=dict)
    trim: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    repaired: str = ""  # what was wrong with the stored copy this run replaced
    elapsed_s: float = 0.0

    @property
    def trimmed(self) -> bool:
        """Whether alignment dropped scored epochs or signal (the spec opted in to trimming)."""
        return self.status == "ingested" and bool(self.trim.get("reasons"))

    def attention(self) -> list[str]:
        """Lines a person must read: why it failed, what was trimmed or repaired."""
        if self.status in ("failed", "not_attempted"):
            return [f"{self.status}: {self.recording_id}: {self.reason}"]
        lines = []
        if self.trimmed:
            lines.append(
                f"trimmed: {self.recording_id}: {'; '.join(self.trim['reasons'])} "
                f"({self.trim['epochs_dropped_start']} epochs dropped at the start, "
                f"{self.trim['epochs_dropped_end']} at the end)"
            )
        if self.repaired:
            lines.append(f"repaired: {self.recording_id}: the stored copy was {self.repaired}")
        return lines


@dataclass
class IngestReport:
    """The whole run. ``stopped`` says why a run ended early (store full, interrupted)."""

    dataset: str
    spec: str
    source_root: str
    store: str
    started_at: str
    finished_at: str = ""
    workers: int = 1
    config_hash: str = ""
    ids: str = "source"  # "pseudonymize": ids and file names below are keyed hashes
    units: list[UnitReport] = field(default_factory=list)
    unmatched_files: list[dict[str, str]] = field(default_factory=list)
    run_warnings: list[str] = field(default_factory=list)
    stopped: str = ""
    store_content_hash: str = ""
    report_paths: list[str] = field(default_factory=list)

    def count(self, status: Status) -> int:
        return sum(u.status == status for u in self.units)

    @property
    def ok(self) -> bool:
        """True when every planned recording is stored: none failed or was left out."""
        return not self.stopped and self.count("failed") + self.count("not_attempted") == 0

    def summary_line(self) -> str:
        trimmed = sum(u.trimmed for u in self.units)
        return (
            f"{self.dataset}: {self.count('ingested')} ingested ({trimmed} trimmed), "
            f"{self.count('skipped')} up to date, {self.count('failed')} failed, "
            f"{self.count('not_attempted')} not attempted; {len(self.unmatched_files)} other "
            "files not ingested"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    def to_markdown(self) -> str:
        lines = [
            f"# Ingest report: {self.dataset}",
            "",
            f"- spec: `{self.spec}` (config hash `{self.config_hash[:12]}`)",
            f"- source: `{self.source_root}`",
            f"- store: `{self.store}` (content hash `{self.store_content_hash[:12]}`)",
            f"- run: {self.started_at} to {self.finished_at}, {self.workers} worker(s)",
            f"- recordings: {self.summary_line().split(': ', 1)[1]}",
            f"- outcome: {'complete' if self.ok else 'INCOMPLETE (exit status 1)'}",
            f"- other files not ingested: {len(self.unmatched_files)}",
        ]
        if self.stopped:
            lines += ["", f"**The run stopped early:** {self.stopped}"]
        if self.run_warnings:
            lines += ["", "## Run warnings", ""] + [f"- {w}" for w in self.run_warnings]
        lines += [
            "",
            "## Recordings",
            "",
            "| recording | status | stored h | W | N1 | N2 | N3 | REM | ? | channels missing | "
            "trim (epochs start/end) | reason or warnings |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for u in self.units:
            stages = [str(u.stage_counts.get(s, "")) for s in ("W", "N1", "N2", "N3", "REM")]
            stages.append(str(u.stage_counts.get("UNKNOWN", "")))
            hours = f"{u.stored_duration_s / 3600:.2f}" if u.stored_duration_s else ""
            trim = (
                f"{u.trim.get('epochs_dropped_start', 0)}/{u.trim.get('epochs_dropped_end', 0)}"
                if u.trim
                else ""
            )
            note = u.reason or "; ".join(u.warnings[:3]) + (" ..." if len(u.warnings) > 3 else "")
            if u.repaired:
                note = f"repaired: the stored copy was {u.repaired}; {note}"
            note = note.replace("|", "/").replace("\n", " ")
            lines.append(
                f"| {u.recording_id} | {u.status} | {hours} | {' | '.join(stages)} | "
                f"{', '.join(u.channels_missing)} | {trim} | {note} |"
            )
        if self.unmatched_files:
            lines += ["", "## Files not ingested", "", "| file | reason |", "|---|---|"]
            lines += [f"| {f['path']} | {f['reason']} |" for f in self.unmatched_files]
        return "\n".join(lines) + "\n"
