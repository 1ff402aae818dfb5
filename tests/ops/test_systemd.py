"""The systemd unit: verified by systemd-analyze, and its ExecStart speaks sd_notify."""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.ops.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "marllbd.service"
# systemd < 253 does not know Type=notify-reload / ReloadSignal= (the unit documents
# that it needs 253+); on such a systemd these two lines are the only acceptable output.
OLD_SYSTEMD = re.compile(
    r"Failed to parse service type, ignoring: notify-reload|Unknown key 'ReloadSignal'"
)


def _systemd_version() -> int:
    out = subprocess.run(["systemd-analyze", "--version"], capture_output=True, text=True).stdout
    return int(out.split()[1])


def verify_unit(units: Path) -> None:
    """systemd-analyze verify on units/marllbd.service (and its drop-ins), with ExecStart
    pointed at this venv's marllbd and a vpp.service to bind to: no output but the
    two lines systemd < 253 prints for notify-reload."""
    require_tool("systemd-analyze")
    unit = units / "marllbd.service"
    marllbd = Path(sys.executable).with_name("marllbd")
    unit.write_text(unit.read_text().replace("/usr/local/bin/marllbd", str(marllbd)))
    (units / "vpp.service").write_text("[Service]\nType=simple\nExecStart=/bin/true\n")
    env = {"SYSTEMD_UNIT_PATH": f"{units}:", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    if _systemd_version() < 253:
        lines = [ln for ln in lines if not OLD_SYSTEMD.search(ln)]
    assert out.returncode == 0 and lines == [], "\n".join(lines)


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    (units / "marllbd.service").write_text(UNIT.read_text())
    verify_unit(units)


def test_unit_keeps_shared_memory_working() -> None:
    text = UNIT.read_text()
    directives = {
        ln.split("=", 1)[0] for ln in text.splitlines() if "=" in ln and not ln.startswith("#")
    }
    for forbidden in ("RemoveIPC", "DynamicUser", "PrivateDevices", "PrivateIPC"):
        assert forbidden not in directives, forbidden
        assert forbidden in text  # ... and the comment says why
    for wanted in ("Type", "WatchdogSec", "Restart", "BindsTo", "StateDirectory", "ProtectSystem",
                   "ProtectHome", "PrivateTmp", "NoNewPrivileges", "RestrictAddressFamilies",
                   "SystemCallFilter", "SupplementaryGroups"):  # fmt: skip
        assert wanted in directives, wanted
    sysusers = (REPO / "systemd" / "marllbd.sysusers").read_text()
    assert "m marllbd vpp" in sysusers


def test_execstart_notifies_ready_then_watchdog(tmp_path: Path, region_name: str) -> None:
    """Run the unit's ExecStart as systemd would: NOTIFY_SOCKET and WATCHDOG_USEC set."""
    exec_line = next(ln for ln in UNIT.read_text().splitlines() if ln.startswith("ExecStart="))
    argv = shlex.split(exec_line.split("=", 1)[1])
    conf = tmp_path / "marllbd.toml"
    conf.write_text(
        f'[backend]\nkind = "sim"\nregion = "{region_name}"\n[backend.sim]\nspeed = 20.0\n'
        '[metrics]\nport = 0\n[logging]\nformat = "json"\n'
    )
    argv[0] = str(Path(sys.executable).with_name("marllbd"))
    argv[argv.index("--config") + 1] = str(conf)
    sock_path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(sock_path))
    server.settimeout(60)
    env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "1000000", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        messages: list[str] = []
        deadline = time.monotonic() + 60
        while messages.count("WATCHDOG=1") < 2 and time.monotonic() < deadline:
            messages.append(server.recv(4096).decode())
        assert messages[0].startswith("READY=1\nSTATUS=serving sed")
        assert messages.count("WATCHDOG=1") >= 2
        proc.terminate()
        assert proc.wait(timeout=10) == 0
        assert "STOPPING=1" in server.recv(4096).decode()
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()
