"""Hostile and malformed files go through ingest: each fails with a clear reason, or is
ingested; none crashes the run, hangs, allocates gigabytes or leaks an identifier."""

from __future__ import annotations

import shutil
import tracemalloc

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from medscale.ingest import ingest

from .conftest import PLANTED, write_identified_edf

pytestmark = pytest.mark.slow

MAX_PEAK_BYTES = 300 * 2**20  # the night is ~60 KB; anything near this means a runaway alloc


@pytest.fixture(scope="module")
def clean_source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clean")
    write_identified_edf(folder / "Jane_Doe-PSG.edf", n_epochs=8)
    return folder


mutation = st.one_of(
    st.tuples(
        st.just("overwrite"), st.integers(0, 2 * 256 + 3 * 256), st.binary(min_size=1, max_size=24)
    ),
    st.tuples(st.just("truncate"), st.integers(0, 4000), st.just(b"")),
    st.tuples(st.just("append"), st.integers(0, 0), st.binary(min_size=1, max_size=3000)),
    st.tuples(
        st.just("field"),
        st.sampled_from([236, 244, 252]),  # n_records, record duration, n_signals
        st.sampled_from(
            [b"99999999", b"-1      ", b"1e308   ", b"nan     ", b"        ", b"\xff\xfe\x00"]
        ),
    ),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(target=st.sampled_from(["-PSG.edf", "-Hypnogram.edf"]), change=mutation)
# Record durations that once made ingest overflow or allocate 30 GiB to resample.
@example(target="-PSG.edf", change=("field", 244, b"1e308   "))
@example(target="-PSG.edf", change=("field", 244, b"99999999"))
@example(target="-PSG.edf", change=("field", 244, b"0.000001"))
def test_hostile_headers_fail_cleanly_and_leak_nothing(
    hospital_spec, clean_source, tmp_path_factory, target, change
):
    work = tmp_path_factory.mktemp("fuzz")
    source = work / "src"
    shutil.copytree(clean_source, source)
    path = source / f"Jane_Doe{target}"
    data = bytearray(path.read_bytes())
    kind, offset, payload = change
    if kind == "overwrite" or kind == "field":
        data[offset : offset + len(payload)] = payload
    elif kind == "truncate":
        data = data[:offset]
    else:
        data += payload
    path.write_bytes(bytes(data))

    # Bounded by memory, not seconds (a loaded machine is slow, not wrong); a hang is caught by
    # pytest-timeout.
    tracemalloc.start()
    report = ingest(hospital_spec, source, work / "store", progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert peak < MAX_PEAK_BYTES, f"peak allocation {peak / 2**20:.0f} MiB"
    for unit in report.units:
        assert unit.status in ("ingested", "failed")
        if unit.status == "failed":
            assert unit.reason.strip() and "Traceback" not in unit.reason
    for entry in report.unmatched_files:
        assert entry["reason"].strip()
    blob = (
        report.to_json()
        + b"".join(p.read_bytes() for p in (work / "store").rglob("*") if p.is_file()).decode(
            "latin-1"
        )
    ).lower()
    for token in PLANTED:
        assert token.lower() not in blob, f"{token!r} leaked after mutation {kind}@{offset}"
