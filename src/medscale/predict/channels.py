"""Which channels of a recording feed a model: the alias tables of the shipped dataset specs
map source labels to canonical names, and the model's channel groups pick among those."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from functools import cache

from medscale.data.config import ChannelGroup
from medscale.datasets.spec import list_datasets, load_dataset_spec
from medscale.errors import ChannelError
from medscale.ingest.convert import channel_type


@cache
def alias_table() -> dict[str, str]:
    """Lower-cased source label -> canonical channel name, over every shipped spec.

    Specs are read in name order and the first mapping of a label wins, so the table is the
    same on every machine.
    """
    table: dict[str, str] = {}
    for name in list_datasets():
        spec = load_dataset_spec(name)
        for canonical, aliases in spec.channels.items():
            for alias in (canonical, *aliases):
                table.setdefault(alias.strip().lower(), canonical)
        for overrides in spec.channels_by_group.values():
            for channels in overrides.values():
                for canonical, aliases in channels.items():
                    for alias in aliases:
                        table.setdefault(alias.strip().lower(), canonical)
    return table


def canonical_name(label: str) -> str | None:
    """The canonical name of a source label: from the alias tables, else the label itself when
    it starts with a channel type (``EEG C3``); None for a label of unknown type."""
    known = alias_table().get(label.strip().lower())
    if known is not None:
        return known
    return label.strip() if channel_type(label) != "MISC" else None


def _in_group(group: ChannelGroup, name: str) -> bool:
    return group.matches(name, channel_type(name))


def parse_channel_overrides(items: Sequence[str]) -> dict[str, list[str]]:
    """``["eeg=Fpz-Cz", "eog=horizontal"]`` -> ``{"eeg": ["Fpz-Cz"], "eog": ["horizontal"]}``."""
    out: dict[str, list[str]] = {}
    for item in items:
        group, sep, label = item.partition("=")
        if not sep or not group.strip() or not label.strip():
            raise ChannelError(f"--channels {item!r}: expected GROUP=LABEL, e.g. eeg='EEG Fpz-Cz'")
        out.setdefault(group.strip(), []).append(label.strip())
    return out


def select_channels(
    labels: Collection[str],
    groups: Sequence[ChannelGroup],
    overrides: Mapping[str, Sequence[str]] | None = None,
    *,
    source: str = "the recording",
) -> dict[str, list[tuple[str, str]]]:
    """For each group, the ``(canonical name, source label)`` pairs that can fill it.

    ``overrides`` names the source labels of a group directly (``--channels``). A group that
    nothing fills raises `ChannelError` naming what was found, what is needed and the hint.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {g.name for g in groups})
    if unknown:
        raise ChannelError(
            f"--channels names group(s) {unknown}; the model's groups are "
            f"{[g.name for g in groups]}"
        )
    by_lower = {label.strip().lower(): label for label in labels}
    chosen: dict[str, list[tuple[str, str]]] = {}
    for group in groups:
        if group.name in overrides:
            pairs = []
            for wanted in overrides[group.name]:
                label = by_lower.get(wanted.strip().lower())
                if label is None:
                    raise ChannelError(
                        f"{source}: --channels {group.name}={wanted!r}: no such signal; the "
                        f"file has {sorted(labels)}"
                    )
                name = canonical_name(label)
                if name is None or not _in_group(group, name):
                    kind = group.types[0] if group.types else "MISC"
                    name = f"{kind} {label.strip()}"
                pairs.append((name, label))
        else:
            pairs = [
                (name, label)
                for label in labels
                if (name := canonical_name(label)) is not None and _in_group(group, name)
            ]
        if not pairs:
            raise ChannelError(
                f"{source}: no channel for the model's {group.name!r} group (types "
                f"{list(group.types)}, names {list(group.names)}); the file has "
                f"{sorted(labels)}. Name one with --channels {group.name}=LABEL"
            )
        chosen[group.name] = pairs
    return chosen
