"""`export systemd`'s units started under a real systemd: each component runs socket
activated, confined as its unit says, and answers over the accepted connection."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from bitcoin_supervisor.ipc import make_protocol

from ._boot import BootedSystemd, booted_systemd
from .conftest import COMPONENTS, VENV, bundled_config, checkout_dropin

DATADIR = "/var/lib/bitcoin-supervisor-export"


def _directive(text: str, key: str) -> str:
    values = [line.split("=", 1)[1] for line in text.splitlines()
              if line.startswith(f"{key}=")]
    assert len(values) == 1, (key, values)
    return values[0]


def _export(systemd: BootedSystemd, config: Path) -> dict[str, str]:
    """Export straight into the booted systemd's unit path; the units' text by name."""
    out = subprocess.run([str(VENV / "bin" / "bitcoin-supervisor"), "export", "systemd",
                          "--config", str(config), "--dir", str(systemd.units)],
                         capture_output=True, text=True, timeout=60, check=True)
    return {Path(line).name: Path(line).read_text() for line in out.stdout.splitlines()}


def _add_users(systemd: BootedSystemd, users: dict[str, tuple[str, str]]) -> None:
    """Create ``users`` (name -> (uid, gid)) as the install steps would, in the booted
    system only: copies of the host's /etc/passwd and /etc/group with their lines added
    are bind-mounted over the originals in its private mount namespace (the host's /etc
    is untouched). Plain files, because "files" is in every nsswitch.conf: JSON userdb
    records reach systemd's user lookup only through nss-systemd, which a minimal
    Debian 12 lacks (the exported units then failed with status 217/USER there)."""
    for db, line in (("passwd", "{name}:x:{uid}:{gid}::/:/usr/sbin/nologin"),
                     ("group", "{name}:x:{gid}:")):
        copy = systemd.state / db
        lines = Path(f"/etc/{db}").read_text().rstrip("\n").splitlines()
        lines += [line.format(name=name, uid=uid, gid=gid)
                  for name, (uid, gid) in sorted(users.items())]
        copy.write_text("\n".join(lines) + "\n")
        copy.chmod(0o644)
        systemd.run("mount", "--bind", systemd.inner(copy), f"/etc/{db}")


def _proc_status(systemd: BootedSystemd, pid: int) -> dict[str, str]:
    out = systemd.run("cat", f"/proc/{pid}/status").stdout
    return {k: v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def _instance_pid(systemd: BootedSystemd, name: str) -> int:
    """MainPID of the one running instance of the component's template unit."""
    listed = systemd.systemctl("list-units", "--no-legend", "--plain", "--state=running",
                               f"bitcoin-supervisor-{name}@*.service").splitlines()
    assert len(listed) == 1, listed
    return int(systemd.systemctl("show", "-p", "MainPID", "--value", listed[0].split()[0]))


def test_exported_units_run_each_component_confined_and_serving(tmp_path: Path) -> None:
    with booted_systemd(tmp_path / "systemd") as systemd:
        config = systemd.state / "multiprocess.toml"
        bundled_config(config, DATADIR)
        units = _export(systemd, config)
        users = {}
        for name in COMPONENTS:
            service = units[f"bitcoin-supervisor-{name}@.service"]
            # The install steps (systemd/README.md): the role's user, its datadir.
            uid, gid = _directive(service, "User"), _directive(service, "Group")
            users[f"bitcoin-supervisor-{name}"] = (uid, gid)
            datadir = _directive(service, "ReadWritePaths")
            assert datadir == f"{DATADIR}/{name}"
            systemd.run("install", "-d", "-m", "0700", "-o", uid, "-g", gid, datadir)
            if (shown := checkout_dropin()) is not None:
                dropin = systemd.units / f"bitcoin-supervisor-{name}@.service.d"
                dropin.mkdir()
                (dropin / "checkout.conf").write_text(shown)
        _add_users(systemd, users)
        systemd.systemctl("daemon-reload")
        for name in sorted(COMPONENTS):
            systemd.systemctl("start", f"bitcoin-supervisor-{name}.socket")
        host_netns = systemd.run("readlink", "/proc/1/ns/net").stdout.strip()

        protocol = make_protocol()

        async def main() -> dict[str, str]:
            answers = {}
            for name in sorted(COMPONENTS):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(str(systemd.inside(f"/run/bitcoin-supervisor/{name}.sock")))
                try:
                    connection = await protocol.connect(sock, peer=name)
                    echo = await connection.init.make_echo()
                    answers[name] = await echo.echo(f"hello {name}")
                except Exception as exc:  # the instance's own account says why
                    # systemd's own account too: a unit that never ran its program
                    # (status 217/USER, 203/EXEC …) leaves nothing of the component's.
                    log = systemd.run("journalctl", "--no-pager", "-n", "60",
                                      check=False).stdout
                    log += systemd.run("systemctl", "status", "--no-pager", "-l", "--all",
                                       f"bitcoin-supervisor-{name}@*.service",
                                       check=False).stdout
                    raise AssertionError(f"{name}: {exc}\n{log}") from exc

                # While it serves: the instance systemd started for this connection runs
                # under the unit's confinement (as /proc shows it).
                pid = _instance_pid(systemd, name)
                status = _proc_status(systemd, pid)
                service = units[f"bitcoin-supervisor-{name}@.service"]
                assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "1", status
                assert int(status["CapEff"], 16) == 0 and int(status["CapBnd"], 16) == 0
                assert set(status["Uid"].split()) == {_directive(service, "User")}, status
                netns = systemd.run("readlink", f"/proc/{pid}/ns/net").stdout.strip()
                private = "PrivateNetwork=yes" in service.splitlines()
                assert (netns != host_netns) == private, (name, netns, host_netns)
                connection.close()
            return answers

        answers = protocol.run(main)
        assert answers == {name: f"hello {name}" for name in COMPONENTS}
