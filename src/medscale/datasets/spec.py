"""Dataset specs: one small declarative YAML file per dataset.

A spec says how to find recordings and pair signal files with annotation files, how ids are
formed, which channels to keep under which canonical names, how stages are labelled and how the
signal is aligned with the hypnogram. See ``docs/datasets.md`` for the field reference and
``medscale/datasets/specs/*.yaml`` for the shipped ones.
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medscale.errors import SpecError
from medscale.io.stages import load_label_map

_DERIVATION = re.compile(r"^\s*(?P<plus>.+?)\s+-\s+(?P<minus>.+?)\s*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SignalFiles(_Strict):
    """Which files are signal files, and how to read them."""

    pattern: str = Field(description="regex matched against the path relative to the source root")
    companions: list[str] = Field(
        default_factory=list,
        description="files read with the signal file (e.g. WFDB '{dir}/{rec}.dat'), as globs",
    )
    reader: str = "auto"
    truncated: Literal["fail", "keep"] = Field(
        default="fail",
        description="an EDF/BDF holding fewer data records than its header declares: fail "
        "the recording, or keep the records it holds (reported as trimmed)",
    )
    options: dict[str, Any] = Field(default_factory=dict)
    options_by_recording: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class AnnotationFiles(_Strict):
    """Where each signal file's annotation file is, and how to read it."""

    pattern: str = Field(description="glob relative to the source root, with {group}s and {dir}")
    format: str
    label_map: str | dict[str, str]
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("label_map")
    @classmethod
    def _known_map(cls, value: str | dict[str, str]) -> str | dict[str, str]:
        load_label_map(value)  # raises SpecError naming the problem
        return value


class Alignment(_Strict):
    """How the signal and the hypnogram are cut to the same span of whole epochs.

    ``mismatch: fail`` (the default) fails a recording whose signal and hypnogram start or
    end more than ``tolerance_s`` apart (a hypnogram of another night, a cut file).
    ``mismatch: trim`` keeps the epochs both cover, as long as they overlap by at least
    ``min_overlap`` of the shorter of the two; every trim is in the QC report. When both
    files carry clock times, the hypnogram is placed by clock time, not by its first row.
    ``wake_margin_min`` keeps at most that many minutes of wake before the first and after
    the last sleep epoch. ``lights`` crops to lights-off/on when the annotations carry them.
    """

    mismatch: Literal["fail", "trim"] = "fail"
    tolerance_s: float = Field(default=30.0, ge=0)
    min_overlap: float = Field(default=0.5, gt=0, le=1)
    wake_margin_min: float | None = Field(default=None, ge=0)
    lights: Literal["crop", "keep"] = "keep"


class Privacy(_Strict):
    """What of a recording's identity may reach the store (see docs/privacy.md).

    ``ids: pseudonymize`` (the default) replaces recording, subject and session ids with keyed
    hashes and keeps file names out of the store and reports; ``ids: source`` keeps the ids
    the dataset publishes (public datasets whose ids are pseudonyms already). Age and sex are
    dropped unless allowed; ages are banded in 5-year bands with ``age: band``.
    """

    ids: Literal["pseudonymize", "source"] = "pseudonymize"
    age: Literal["drop", "band", "exact"] = "drop"
    sex: Literal["drop", "keep"] = "drop"


class DatasetSpec(_Strict):
    """A dataset adapter, as data. Build it with `load_dataset_spec`."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: int = Field(ge=1)
    description: str = ""
    synthetic: bool = False
    signals: SignalFiles
    annotations: AnnotationFiles
    recording_id: str
    subject: str
    session: str = ""
    channels: dict[str, list[str]] = Field(default_factory=dict)
    channels_by_group: dict[str, dict[str, dict[str, list[str]]]] = Field(
        default_factory=dict,
        description="{group: {value: {channel: aliases}}}: aliases for recordings whose "
        "signals.pattern group has that value (one spec, several montages)",
    )
    derivations: dict[str, str] = Field(default_factory=dict)
    required: list[str] = Field(default_factory=list)
    align: Alignment = Field(default_factory=Alignment)
    privacy: Privacy = Field(default_factory=Privacy)
    hook: str | None = Field(default=None, description="'module:function' for the odd dataset")

    @field_validator("derivations")
    @classmethod
    def _derivations_are_differences(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expr in value.items():
            if not _DERIVATION.match(expr):
                raise ValueError(f"{name}: {expr!r} is not of the form 'A - B'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DatasetSpec:
        kept = set(self.channels) | set(self.derivations)
        if not kept:
            raise ValueError("declares no channels: give 'channels' and/or 'derivations'")
        unknown = [c for c in self.required if c not in kept]
        if unknown:
            raise ValueError(
                f"required channels {unknown} are not declared in channels/derivations"
            )
        groups = set(re.compile(self.signals.pattern).groupindex)
        for where, pattern in [("annotations.pattern", self.annotations.pattern)] + [
            (f"signals.companions[{i}]", c) for i, c in enumerate(self.signals.companions)
        ]:
            missing = sorted(set(re.findall(r"{(\w+)}", pattern)) - groups - {"dir"})
            if missing:
                raise ValueError(
                    f"{where} uses {missing}, which signals.pattern does not capture "
                    f"(its groups: {sorted(groups)}, plus 'dir')"
                )
        for field_name in ("recording_id", "subject", "session"):
            template = getattr(self, field_name)
            missing = sorted(set(re.findall(r"{(\w+)}", template)) - groups)
            if missing:
                raise ValueError(
                    f"{field_name} uses {missing}, which signals.pattern does not capture "
                    f"(its groups: {sorted(groups)})"
                )
        return self

    def aliases(self, channel: str, groups: dict[str, str]) -> list[str]:
        """Source labels for ``channel`` in a recording whose pattern groups are ``groups``."""
        for group, by_value in self.channels_by_group.items():
            override = by_value.get(groups.get(group, ""), {})
            if channel in override:
                return override[channel]
        return self.channels.get(channel, [])

    @property
    def kept_channels(self) -> list[str]:
        """Canonical channel names in store order: aliases first, then derivations."""
        return list(self.channels) + [c for c in self.derivations if c not in self.channels]

    def derivation_operands(self, name: str) -> tuple[str, str]:
        match = _DERIVATION.match(self.derivations[name])
        if match is None:  # validated on load; kept for type narrowing
            raise SpecError(f"{self.name}: derivation {name!r} is malformed")
        return match["plus"], match["minus"]

    def config_hash(self) -> str:
        """sha256 of the spec's content, independent of key order and formatting."""
        payload = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()


def _format_validation_error(where: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{where}: unknown key {loc!r}")
        elif err["type"] == "missing":
            lines.append(f"{where}: missing required key {loc!r}")
        else:
            lines.append(f"{where}: field {loc!r}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def parse_dataset_spec(data: Any, where: str = "<spec>") -> DatasetSpec:
    """Validate a spec given as a mapping; errors name ``where`` and the field."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected a mapping of spec fields, got {type(data).__name__}")
    try:
        return DatasetSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_format_validation_error(where, exc)) from None
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None


def list_datasets() -> list[str]:
    """Names of the dataset specs shipped with medscale."""
    folder = resources.files("medscale.datasets") / "specs"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def load_dataset_spec(name_or_path: str | Path) -> DatasetSpec:
    """Load a shipped spec by name, or a spec file by path (always with a safe YAML loader)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():  # a folder named "hmc" is no spec
        if not path.is_file():
            raise SpecError(f"dataset spec {path} does not exist")
        text, where = path.read_text(encoding="utf-8"), str(path)
    else:
        known = list_datasets()
        if str(name_or_path) not in known:
            raise SpecError(
                f"unknown dataset {str(name_or_path)!r}; shipped specs are {known}, "
                "or give the path of a .yaml spec"
            )
        ref = resources.files("medscale.datasets") / "specs" / f"{name_or_path}.yaml"
        text, where = ref.read_text(encoding="utf-8"), f"shipped spec {name_or_path}"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{where}: not valid YAML: {exc}") from None
    return parse_dataset_spec(data, where)
