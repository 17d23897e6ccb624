"""The Ray launcher in a real Ray: a private one on 127.0.0.1 (one per module, shared by the
tests) and a head started by scripts/ray-up.sh.

Two TorchTrainer workers train to the same bits as two torchrun ranks; ingest units as Ray
tasks fill a store identical to a local ingest; a worker that dies or a store fault stops the
ingest cleanly; every listener of the private Ray is on loopback; an address where no Ray
answers fails within its timeout. Drivers that join other clusters run in their own process
(one Ray session per process).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("torch")

import yaml  # noqa: E402

from medscale.cli.main import main  # noqa: E402
from medscale.errors import LaunchError, SpecError  # noqa: E402
from medscale.ingest import ingest  # noqa: E402
from medscale.ingest.run import StoreWriteFailed, UnitJob  # noqa: E402
from medscale.launch.ray import RaySession, connect, ray_runner, train_on_ray  # noqa: E402
from medscale.synth import synthesize_nights  # noqa: E402
from medscale.train.config import RayConfig  # noqa: E402
from tests.train.conftest import tiny_config  # noqa: E402

pytestmark = [
    pytest.mark.real,
    pytest.mark.slow,  # every test starts a Ray or a driver process (seconds each)
    # Ray 2.60's TorchTrainer.fit() sets deprecated options of its own DataContext.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context"),
]

REPO = Path(__file__).resolve().parents[2]
#: One intra-op thread per rank under torchrun, as the Ray workers use (bits depend on it).
TORCHRUN_ENV = {"OMP_NUM_THREADS": "1", "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


@pytest.fixture(scope="module")
def ray_data(tmp_path_factory) -> dict[str, Path]:
    """Four half-hour nights and a local ingest of them (the reference store)."""
    root = tmp_path_factory.mktemp("ray-data")
    synthesize_nights(root / "nights", 4, seed=11, duration_h=0.5, progress=False)
    report = ingest("synthetic", root / "nights", root / "store", progress=False)
    (root / "local-report.json").write_text(report.to_json())
    return {"root": root, "nights": root / "nights", "store": root / "store"}


@pytest.fixture(scope="module")
def ray_session() -> Iterator[RaySession]:
    """One private Ray for the module's tests (starting one takes seconds)."""
    with connect(RayConfig(num_workers=2)) as session:
        yield session
    assert not ray.is_initialized()


# --- helpers -------------------------------------------------------------------------


def _parents() -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
                out[int(entry.name)] = int(stat[1])
            except (OSError, IndexError, ValueError):
                pass
    return out


def _descendants(root: int) -> set[int]:
    parents, found = _parents(), set()
    frontier = {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _address(hex_ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    ip = ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
    return ip.ipv4_mapped or ip


def _listeners(pids: set[int]) -> list[tuple[str, int, int]]:
    """(address, port, pid) of every TCP socket in LISTEN that one of ``pids`` holds."""
    owner = {}
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    owner[link[8:-1]] = pid
        except OSError:
            pass
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in owner:  # 0A: LISTEN
                hex_ip, hex_port = fields[1].split(":")
                out.append((str(_address(hex_ip)), int(hex_port, 16), owner[fields[9]]))
    return out


def _off_loopback(listeners: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    return [entry for entry in listeners if not ipaddress.ip_address(entry[0]).is_loopback]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: A driver in its own process: join ``address``, run one task, print JSON.
DRIVER = """
import json, sys, time
import ray
from medscale.errors import LaunchError
from medscale.launch.ray import connect
from medscale.train.config import RayConfig

config = RayConfig(address=sys.argv[1], connect_timeout_s=float(sys.argv[2]))
started = time.monotonic()
try:
    with connect(config) as session:
        out = {"cpus": session.cpus, "answer": ray.get(ray.remote(lambda: 42).remote())}
        out["node_ip"] = ray.util.get_node_ip_address()
except LaunchError as exc:
    out = {"error": str(exc)}
out["seconds"] = time.monotonic() - started
out["connected_after"] = ray.is_initialized()
print(json.dumps(out))
"""


def _start_driver(address: str, timeout_s: float, env: dict[str, str] | None = None):
    """Start `DRIVER` for ``address`` in a process of its own, with only ``env``'s RAY_*."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, address, str(timeout_s)],
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    return proc, timeout_s


def _result(started) -> dict:
    proc, timeout_s = started
    out, err = proc.communicate(timeout=timeout_s + 300)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


# --- addresses that do not answer, and the head of scripts/ray-up.sh -----------------


def test_address_that_does_not_answer_fails_in_time():
    with socket.socket() as impostor:
        # Nothing listens: refused until the deadline.
        port = _free_port()
        nobody = _start_driver(f"127.0.0.1:{port}", 2.0)
        # Something listens but is no Ray head: Ray itself would retry for minutes.
        impostor.bind(("127.0.0.1", 0))
        impostor.listen()
        address = f"127.0.0.1:{impostor.getsockname()[1]}"
        wrong = _start_driver(address, 3.0)
        out, out_wrong = _result(nobody), _result(wrong)
    assert f"127.0.0.1:{port}" in out["error"] and "does not answer" in out["error"]
    assert out["seconds"] < 2.0 + 3.0
    assert address in out_wrong["error"] and "did not let this driver join" in out_wrong["error"]
    assert out_wrong["seconds"] < 3.0 + 3.0
    assert not out_wrong["connected_after"]


@pytest.fixture
def ray_head() -> Iterator[tuple[Path, dict[str, str]]]:
    """A head from scripts/ray-up.sh in a short folder (Ray's socket paths), stopped after."""
    root = Path(tempfile.mkdtemp(prefix="mray-", dir="/tmp"))
    head = root / "head"
    try:
        up = subprocess.run(
            [str(REPO / "scripts" / "ray-up.sh"), str(head)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert up.returncode == 0, up.stderr[-3000:]
        yield head, _exports(up.stdout)
    finally:
        subprocess.run([str(REPO / "scripts" / "ray-down.sh"), str(head)], timeout=120)
        shutil.rmtree(root, ignore_errors=True)


def _exports(text: str) -> dict[str, str]:
    return dict(
        line.removeprefix("export ").split("=", 1)
        for line in text.splitlines()
        if line.startswith("export ")
    )


def _alive(pid: int) -> bool:
    """Running, not a zombie (pid 1 of a container may not reap Ray's daemons)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _head_processes(head: Path) -> set[int]:
    named = set()
    for pid in _parents():
        try:
            if f"{head}/t/".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                named.add(pid)
        except OSError:
            pass
    return {pid for pid in named if _alive(pid)}


def _session_members(sid: int) -> set[int]:
    members = set()
    for pid in _parents():
        try:
            if os.getsid(pid) == sid:
                members.add(pid)
        except OSError:
            pass
    return {pid for pid in members if _alive(pid)}


def test_ray_up_head_answers_on_loopback_and_down_stops_it(ray_head):
    head, env = ray_head
    assert set(env) == {"MEDSCALE_RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"}
    assert env["MEDSCALE_RAY_ADDRESS"].startswith("127.0.0.1:")
    assert (head / "env.sh").read_text().count("export ") == 3
    assert oct((head / "auth_token").stat().st_mode & 0o777) == "0o600"
    sid = int((head / "ray.sid").read_text())
    members = _session_members(sid)
    assert members and not _off_loopback(_listeners(members))

    joined = _start_driver(env["MEDSCALE_RAY_ADDRESS"], 30.0, env)
    # Without the head's token a driver is refused (in time, with the address named).
    refused = _start_driver(env["MEDSCALE_RAY_ADDRESS"], 3.0)
    out, out_refused = _result(joined), _result(refused)
    assert out.get("answer") == 42, out
    assert out["cpus"] == 2.0 and out["node_ip"] == "127.0.0.1"
    assert env["MEDSCALE_RAY_ADDRESS"] in out_refused["error"]

    # The same head answers: not restarted (its GCS pid is unchanged), whatever the load.
    gcs_pid = (head / "gcs.pid").read_text()
    again = subprocess.run(
        [str(REPO / "scripts" / "ray-up.sh"), str(head)], capture_output=True, text=True
    )
    assert again.returncode == 0 and _exports(again.stdout) == env
    assert "already up" in again.stderr and (head / "gcs.pid").read_text() == gcs_pid

    down = subprocess.run(
        [str(REPO / "scripts" / "ray-down.sh"), str(head)], capture_output=True, text=True
    )
    assert down.returncode == 0, down.stderr
    assert not head.exists()
    assert not _head_processes(head) and not _session_members(sid)


# --- the private Ray ------------------------------------------------------------------


def test_private_ray_listens_on_loopback_only(ray_session):
    assert ray_session.started and ray_session.cpus == max(os.cpu_count() or 1, 2)
    assert ray_session.address.startswith("127.0.0.1:")
    listeners = _listeners(_descendants(os.getpid()) | {os.getpid()})
    assert len(listeners) >= 3  # the GCS, the raylet, this driver, workers
    assert not _off_loopback(listeners), listeners
    # Inside it, connect() hands out the same session and leaves it open.
    with connect(RayConfig()) as inner:
        assert inner.address == ray_session.address and not inner.started
    assert ray.is_initialized()
    with pytest.raises(LaunchError, match="already connected"), connect(RayConfig(address="x:1")):
        pass


def test_torchtrainer_matches_torchrun_bitwise(ray_session, ray_data, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_config(max_steps=8, val_every=4)))
    store = ray_data["store"]
    # The torchrun reference runs alongside (2 ranks, one thread each).
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", "-m", "medscale.launch.worker", str(config)]
    command += ["--store", str(store), "--out", str(tmp_path / "torchrun"), "--quiet"]
    reference = subprocess.Popen(
        command,
        env={**os.environ, **TORCHRUN_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:  # through the command line: medscale train ... --launcher ray --nproc 2
        code = main(
            ["train", str(config), "--store", str(store), "--out", str(tmp_path / "ray"),
             "--launcher", "ray", "--nproc", "2", "-q"]
        )  # fmt: skip
    finally:
        text = reference.communicate(timeout=300)[0].decode(errors="replace")
    assert reference.returncode == 0, text[-3000:]

    run = tmp_path / "ray"
    result = json.loads((run / "result.json").read_text())
    manifest = json.loads((run / "manifest.json").read_text())
    expected = json.loads((tmp_path / "torchrun" / "result.json").read_text())
    assert code == 0 and result["finished"] and result["step"] == 8
    assert manifest["run"]["world_size"] == 2
    assert result["weights_sha256"] == expected["weights_sha256"]
    assert (run / "ray").is_dir()  # Ray Train's files stay inside the run folder
    # A fresh start never overwrites a run (refused before Ray is asked for anything).
    with pytest.raises(SpecError, match="already holds a run"):
        train_on_ray(config, store, run, ray_config=RayConfig())


def _statuses(report) -> dict[str, str]:
    return {unit.recording_id: unit.status for unit in report.units}


def test_ray_ingest_equals_local_ingest(ray_session, ray_data, tmp_path):
    local = json.loads((ray_data["root"] / "local-report.json").read_text())
    report = ingest(
        "synthetic",
        ray_data["nights"],
        tmp_path / "store",
        progress=False,
        runner=ray_runner(RayConfig()),
    )
    assert not report.stopped
    assert report.store_content_hash == local["store_content_hash"]
    assert _statuses(report) == {u["recording_id"]: u["status"] for u in local["units"]}
    assert set(_statuses(report).values()) == {"ingested"}


@dataclasses.dataclass(frozen=True)
class _FaultyJob(UnitJob):
    """A job whose ``victim`` recording kills its worker or hits a full disk; the other
    recordings start late, so that the fault is seen before any of them ends."""

    fault: str = "crash"
    victim: str = ""

    def run(self, unit):
        if unit.recording_id == self.victim:
            if self.fault == "crash":
                os._exit(1)
            raise StoreWriteFailed(f"writing {unit.recording_id}: no space left (test)")
        time.sleep(2.0)
        return UnitJob.run(self, unit)


def _faulty_runner(fault: str, victim: str):
    inner = ray_runner(RayConfig())

    def run(units, job, on_done):
        fields = {f.name: getattr(job, f.name) for f in dataclasses.fields(UnitJob)}
        inner(units, _FaultyJob(**fields, fault=fault, victim=victim), on_done)

    return run


@pytest.mark.parametrize("fault", ["crash", "store"])
def test_ray_ingest_stops_cleanly_on_a_fault(ray_session, ray_data, tmp_path, fault):
    # The workers cannot import this test module: ship _FaultyJob by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        local = json.loads((ray_data["root"] / "local-report.json").read_text())
        victim = local["units"][0]["recording_id"]
        report = ingest(
            "synthetic",
            ray_data["nights"],
            tmp_path / "store",
            progress=False,
            runner=_faulty_runner(fault, victim),
        )
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    statuses = _statuses(report)
    assert statuses[victim] == "not_attempted"
    assert set(statuses.values()) <= {"ingested", "not_attempted"}
    if fault == "crash":
        assert "died" in report.stopped and victim in report.stopped
    else:
        assert report.stopped == f"writing {victim}: no space left (test)"
    # The tasks running beside the victim finished; nothing started after it.
    ingested = list(statuses.values()).count("ingested")
    assert ingested == min(len(statuses), int(ray_session.cpus)) - 1
