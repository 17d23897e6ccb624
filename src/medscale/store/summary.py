"""`summarize_store`: what a store holds, as numbers and as a table for people."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from medscale.store.store import Store


@dataclass
class DatasetSummary:
    name: str
    recordings: int = 0
    subjects: int = 0
    hours: float = 0.0
    class_counts: dict[str, int] = field(default_factory=dict)
    size_bytes: int = 0
    synthetic: bool = False
    channels: dict[str, int] = field(default_factory=dict)


@dataclass
class StoreSummary:
    location: str
    layout_version: int
    content_hash: str
    task: str
    classes: tuple[str, ...]  # the columns of class counts (segments, images or voxels)
    datasets: list[DatasetSummary]

    @property
    def recordings(self) -> int:
        return sum(d.recordings for d in self.datasets)

    @property
    def hours(self) -> float:
        return sum(d.hours for d in self.datasets)

    def to_text(self) -> str:
        lines = [
            f"store {self.location} (layout v{self.layout_version}, "
            f"content hash {self.content_hash[:16]}, task {self.task})",
            "",
            f"{'dataset':<22}{'recs':>6}{'subj':>6}{'hours':>9}"
            + "".join(f"{s:>9}" for s in self.classes)
            + f"{'MB':>9}",
        ]
        for d in self.datasets:
            name = d.name + (" [synthetic]" if d.synthetic else "")
            lines.append(
                f"{name:<22}{d.recordings:>6}{d.subjects:>6}{d.hours:>9.2f}"
                + "".join(f"{d.class_counts.get(s, 0):>9}" for s in self.classes)
                + f"{d.size_bytes / 1e6:>9.1f}"
            )
        total = sum(d.size_bytes for d in self.datasets) / 1e6
        lines.append(
            f"{'total':<22}{self.recordings:>6}{'':>6}{self.hours:>9.2f}"
            f"{'':>{9 * len(self.classes)}}{total:>9.1f}"
        )
        for d in self.datasets:
            chans = ", ".join(f"{c} ({n})" for c, n in sorted(d.channels.items()))
            lines.append(f"  {d.name} channels: {chans}")
        return "\n".join(lines)


def summarize_store(store: Store) -> StoreSummary:
    """Per-dataset records, subjects, hours, counts per class (sleep: 30-s epochs per stage,
    with UNKNOWN) and bytes on disk."""
    out = []
    for name in store.datasets():
        infos = store.recordings(name)
        stages: Counter[str] = Counter()
        channels: Counter[str] = Counter()
        for info in infos:
            stages.update(info.class_counts)
            channels.update(info.channel_names)
        out.append(
            DatasetSummary(
                name=name,
                recordings=len(infos),
                subjects=len({i.subject for i in infos}),
                hours=sum(i.duration_h for i in infos),
                class_counts=dict(stages),
                size_bytes=store.size_bytes(name),
                synthetic=any(i.synthetic for i in infos),
                channels=dict(channels),
            )
        )
    classes = store.task.class_names
    if store.task.label_kind == "segment_classes":
        classes += ("UNKNOWN",)
    return StoreSummary(
        store.location, store.layout_version, store.content_hash(), store.task.name, classes, out
    )
