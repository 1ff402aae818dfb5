"""`make install`: the files land where the unit expects them, and the installed service
runs as systemd would run it: an unprivileged user, the package installed from its
wheel (not this checkout) beside its dependencies without extras (no torch), the
installed config and checkpoints, NOTIFY_SOCKET and WATCHDOG_USEC from the unit, and the
unit's Environment= and UMask=."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import distributions
from pathlib import Path

import pytest

from marllbd.daemon.config import load
from marllbd.ipc.region import region_path
from tests.daemon.test_e2e import scrape, wait_for
from tests.daemon.test_without_torch import NO_TORCH, link_site
from tests.ops.conftest import require_tool
from tests.ops.test_systemd import _systemd_version, verify_unit

REPO = Path(__file__).resolve().parents[2]
MARLLBD = Path(sys.executable).with_name("marllbd")


def make_install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(REPO), "install-files",
         f"MARLLBD_BIN={MARLLBD}", *args],
        capture_output=True, text=True,
    )  # fmt: skip


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """Key -> values of a unit and its drop-ins, as systemd merges them (an empty
    assignment resets the list; the last value of a single-valued key wins)."""
    out: dict[str, list[str]] = {}
    dropins = sorted(unit.with_name(unit.name + ".d").glob("*.conf"))
    for path in (unit, *dropins):
        for line in path.read_text().splitlines():
            if "=" not in line or line.lstrip().startswith(("#", ";", "[")):
                continue
            key, value = (s.strip() for s in line.split("=", 1))
            out[key] = [*out.get(key, []), value] if value else []
    return out


@pytest.fixture
def staged() -> Iterator[Path]:
    """A staging root that an unprivileged user may traverse (pytest's tmp_path may not)."""
    root = Path(tempfile.mkdtemp(prefix="marllbd-install-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(("backend", "version"), [("sim", "252"), ("vpp", "256")])
def test_install_files(staged: Path, backend: str, version: str) -> None:
    out = make_install(f"DESTDIR={staged}", f"BACKEND={backend}", f"SYSTEMD_VERSION={version}")
    assert out.returncode == 0, out.stdout + out.stderr
    unit = staged / "etc/systemd/system/marllbd.service"
    assert unit.read_text().count("ExecStart=/usr/local/bin/marllbd run --config "
                                  "/etc/marllbd/marllbd.toml") == 1  # fmt: skip
    assert (staged / "usr/local/bin/marllbd").resolve() == MARLLBD.resolve()
    dropins = sorted(p.name for p in unit.with_name("marllbd.service.d").iterdir())
    assert dropins == (["simulator.conf"] if backend == "sim" else []) + (
        ["systemd-252.conf"] if version == "252" else []
    )
    settings = unit_settings(unit)
    assert settings["Type"][-1] == ("notify" if version == "252" else "notify-reload")
    assert ("vpp.service" in settings["BindsTo"]) == (backend == "vpp")
    assert settings["SupplementaryGroups"] == ([] if backend == "sim" else ["vpp"])
    conf = staged / "etc/marllbd/marllbd.toml"
    for path in (unit, conf, staged / "usr/lib/sysusers.d/marllbd.conf"):
        # world-readable: the service user reads its config, and it holds no secret
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path
    config = load(conf)
    assert config.backend.kind == backend
    assert config.policy.name == "sac-gru:/var/lib/marllbd/policies/seed-16-sac-gru"
    for ckpt in ("seed-16-sac-gru", "drift-7-sac-gru"):
        shipped = REPO / "configs/policies" / ckpt / "weights.safetensors"
        installed = staged / "var/lib/marllbd/policies" / ckpt / "weights.safetensors"
        assert installed.read_bytes() == shipped.read_bytes()


def test_install_keeps_the_operators_config(staged: Path) -> None:
    assert make_install(f"DESTDIR={staged}").returncode == 0
    conf = staged / "etc/marllbd/marllbd.toml"
    conf.write_text("# edited by the operator\n")
    out = make_install(f"DESTDIR={staged}", "BACKEND=vpp")
    assert out.returncode == 0, out.stderr
    assert conf.read_text() == "# edited by the operator\n"
    assert load(conf.with_name("marllbd.toml.new")).backend.kind == "vpp"
    # installing for VPP removes the simulator's drop-in an earlier install left
    assert not (staged / "etc/systemd/system/marllbd.service.d/simulator.conf").exists()


def test_install_refuses_an_unknown_backend(staged: Path) -> None:
    out = make_install(f"DESTDIR={staged}", "BACKEND=dpdk")
    assert out.returncode != 0
    assert "BACKEND must be sim or vpp, not 'dpdk'" in out.stdout + out.stderr
    assert not (staged / "etc").exists()


@pytest.mark.parametrize(("extras", "spec"), [("", "'.'"), ("rl", "'.[rl]'")])
def test_install_venv_leaves_the_training_stack_to_the_operator(extras: str, spec: str) -> None:
    """The service venv gets the package without extras (no torch) unless asked for."""
    out = subprocess.run(
        ["make", "-n", "-s", "--no-print-directory", "-C", str(REPO), "install-venv",
         "DESTDIR=/nonexistent", f"EXTRAS={extras}"], capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (pip,) = [ln for ln in out.stdout.splitlines() if "/opt/marllbd/bin/pip install" in ln]
    assert pip.endswith(f"-c constraints.txt {spec}"), pip


def test_installed_units_pass_systemd_analyze_verify(staged: Path) -> None:
    """The installed unit with the drop-ins this machine's systemd gets."""
    require_tool("systemd-analyze")  # before asking it for its version
    assert make_install(f"DESTDIR={staged}", "BACKEND=vpp").returncode == 0
    assert make_install(f"DESTDIR={staged}", "BACKEND=sim").returncode == 0
    units = staged / "etc/systemd/system"
    if _systemd_version() < 253:  # it overrides the main unit's two notify-reload lines
        assert (units / "marllbd.service.d/systemd-252.conf").exists()
    verify_unit(units)


def _wheel_site(root: Path) -> Path:
    """The package as pip installs it from its wheel: no checkout beside it."""
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("marllbd", "plugins"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__",
                        "*.nbi", "*.nbc"))  # fmt: skip
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"),
                    str(src)], check=True, capture_output=True)  # fmt: skip
    wheel = next((root / "dist").glob("marllbd-*.whl"))
    site = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)  # fmt: skip
    shutil.rmtree(src)
    return site


def _as_user(user: pwd.struct_passwd, *argv: str) -> list[str]:
    """argv run as `user`, with no supplementary groups."""
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
            *argv]  # fmt: skip


def _launcher(root: Path, user: pwd.struct_passwd) -> Path:
    """`marllbd` as the venv's console script is, on an interpreter `user` may execute
    (this venv's may sit under a home directory that user cannot enter)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for python in (os.path.realpath(sys.executable), f"/usr/bin/python{version}"):
        # Through sh: setpriv's own exec still holds root's capabilities.
        probe = subprocess.run(
            _as_user(user, "/bin/sh", "-c", 'exec "$0" -c pass', python), capture_output=True
        )
        if probe.returncode == 0:
            break
    else:
        pytest.skip(f"no Python {version} that {user.pw_name} may execute")
    script = root / "venv-bin" / "marllbd"
    script.parent.mkdir()
    script.write_text(f"#!{python}\nimport sys\nfrom marllbd.cli import main\nsys.exit(main())\n")
    script.chmod(0o755)
    return script


def _logs(path: Path) -> list[dict[str, object]]:
    """The daemon's JSON log records so far."""
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.startswith("{")]


def _recv(server: socket.socket, deadline: float) -> str:
    server.settimeout(max(deadline - time.monotonic(), 0.1))
    return server.recv(4096).decode()


def test_installed_service_runs_as_an_unprivileged_user(staged: Path, region_name: str) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    nobody = pwd.getpwnam("nobody")
    dirs = {"CONFDIR": staged / "etc/marllbd", "STATEDIR": staged / "var/lib/marllbd",
            "BINDIR": staged / "usr/local/bin", "UNITDIR": staged / "etc/systemd/system",
            "SYSUSERSDIR": staged / "usr/lib/sysusers.d"}  # fmt: skip
    launcher = _launcher(staged, nobody)
    out = make_install(*(f"{k}={v}" for k, v in dirs.items()), "BACKEND=sim",
                       f"MARLLBD_BIN={launcher}")  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    conf = dirs["CONFDIR"] / "marllbd.toml"
    # Only what must differ on a shared test machine: the region, the port, the pace.
    text = conf.read_text().replace('region = "marllbd"', f'region = "{region_name}"')
    text = text.replace("port = 9464", "port = 0").replace("speed = 1.0", "speed = 8.0")
    conf.write_text(text)
    settings = unit_settings(dirs["UNITDIR"] / "marllbd.service")
    # systemd creates StateDirectory/CacheDirectory owned by User=; here, under staged/.
    cache = staged / "var/cache/marllbd"
    cache.mkdir(parents=True)
    for d in (dirs["STATEDIR"], cache):
        os.chown(d, nobody.pw_uid, nobody.pw_gid)
        d.chmod(0o750)
    # The package from its wheel; its dependencies without extras, and only they (no
    # torch: `make install` leaves out the `rl` extra), from this venv.
    wheel_site = _wheel_site(staged)
    (wheel,) = distributions(name="marllbd", path=[str(wheel_site)])
    path = [str(wheel_site), str(link_site(staged / "deps", wheel.requires or ()))]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(dirs["STATEDIR"]), "USER": "nobody",
           "PYTHONPATH": os.pathsep.join(path)}  # fmt: skip
    for assignment in settings["Environment"]:
        key, value = assignment.split("=", 1)
        env[key] = value.replace("/var/cache/marllbd", str(cache))
    # The service's interpreter on that path: marllbd from the wheel, and no torch.
    python = launcher.read_text().splitlines()[0].removeprefix("#!")
    probe = "import marllbd\nprint(marllbd.__file__)\n" + NO_TORCH
    seen = subprocess.run(_as_user(nobody, python, "-c", probe), env=env, cwd="/",
                          capture_output=True, text=True)  # fmt: skip
    assert seen.stdout.split() == [str(wheel_site / "marllbd/__init__.py"), "torch"], seen
    sock_path = staged / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    os.chmod(sock_path, 0o777)  # systemd's socket accepts the service user's datagrams
    watchdog_usec = int(float(settings["WatchdogSec"][-1]) * 1_000_000)
    env |= {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": str(watchdog_usec)}
    argv = settings["ExecStart"][-1].split()
    umask = int(settings["UMask"][-1], 8)
    log_path = staged / "marllbd.log"  # a file, not a pipe nobody drains while it runs
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        _as_user(nobody, *argv), env=env, cwd="/", stdout=log_file, stderr=subprocess.STDOUT,
        preexec_fn=lambda: os.umask(umask),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        ready = _recv(server, deadline)
        # The shipped SAC-GRU checkpoint, from the state directory, not the fallback.
        assert ready.startswith("READY=1\nSTATUS=serving sac-gru"), ready
        shm = region_path(region_name)  # seed-16 has one LB node
        while not shm.exists() and time.monotonic() < deadline:  # the child creates it
            time.sleep(0.05)
        st = os.stat(shm)
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (nobody.pw_uid, 0o600)
        assert list(cache.rglob("*.nbi")), "numba cached nothing under NUMBA_CACHE_DIR"
        # ... and it is that policy that decides, frame after frame, with no torch.
        (url,) = [r["url"] for r in _logs(log_path) if r["event"] == "metrics_listening"]
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        wait_for(lambda: scrape(port)["marllbd_decisions_total"] >= 20, deadline - time.monotonic())
        m = scrape(port)
        assert m["marllbd_fallback_active"] == 0
        assert sum(v for k, v in m.items() if k.startswith("marllbd_fallbacks_total")) == 0, m
        assert _recv(server, time.monotonic() + watchdog_usec / 1e6) == "WATCHDOG=1"
        proc.send_signal(signal.SIGHUP)  # what `systemctl reload` sends
        msgs = [_recv(server, deadline)]
        while not msgs[-1].startswith("READY=1"):
            msgs.append(_recv(server, deadline))
        reloading = next(m for m in msgs if m.startswith("RELOADING=1"))
        assert int(reloading.split("MONOTONIC_USEC=")[1]) > 0
        assert msgs[-1].startswith("READY=1\nSTATUS=serving sac-gru"), msgs
        proc.terminate()
        assert proc.wait(timeout=20) == 0
        msgs = []
        while not msgs or "STOPPING=1" not in msgs[-1]:
            msgs.append(_recv(server, time.monotonic() + 5))
        assert not shm.exists()  # the daemon's own simulator child removed its region
        logs = _logs(log_path)
        assert not [r for r in logs if r.get("level") in ("error", "critical")], logs
        assert not [r for r in logs if r["event"] == "fallback_entered"], logs
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.close()
        log_file.close()
