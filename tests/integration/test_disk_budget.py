"""Disk budgets: each datadir is a loop-mounted ext4 image the kernel holds to its size
and inode count, whatever the sandboxed program inside does; a full one is a clear state
that ends by itself when space returns; nothing is left mounted after a stop, and a
restart after a supervisor SIGKILL reuses what it finds."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bitcoin_supervisor.sandbox import loop_support_problem

from ._peers import write_program
from .conftest import System, free_port, launch, own_config, start_system, stop_system

MIB = 1 << 20

# A program of its own, sandboxed as a wallet: exhausts its inodes, then its bytes, says
# how far it got and what it can see, then serves Init (so it runs, and status can show
# it full). argv: <fd> <another component's datadir> <the images directory>.
_FILLER = f"""#!{sys.executable}
import asyncio, json, os, signal, socket, sys
from bitcoin_supervisor.interfaces import Echo, Init
from bitcoin_supervisor.ipc import make_protocol

def exhaust(step):
    count = 0
    try:
        while True:
            count += step(count)
    except OSError as exc:
        return count, exc.errno

def touch(i):
    os.close(os.open(f"many/{{i}}", os.O_CREAT | os.O_WRONLY, 0o600))
    return 1

fd = os.open("fill", os.O_CREAT | os.O_WRONLY, 0o600)
chunk = b"x" * (1 << 20)
os.makedirs("many", exist_ok=True)
files, files_errno = exhaust(touch)
wrote, bytes_errno = exhaust(lambda _: os.write(fd, chunk))
os.close(fd)
print(json.dumps({{"event": "filled", "level": "info", "files": files,
                  "files_errno": files_errno, "wrote": wrote, "bytes_errno": bytes_errno,
                  "other_datadir": os.path.exists(sys.argv[2]),
                  "images": os.path.exists(sys.argv[3])}}), flush=True)

class Hello(Echo):
    async def echo(self, message):
        return message

class FillerInit(Init):
    async def make_echo(self):
        return Hello()

protocol = make_protocol()

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    serve = asyncio.ensure_future(protocol.serve(socket.socket(fileno=int(sys.argv[1])),
                                                 FillerInit(), name="filler"))
    await asyncio.wait({{serve, asyncio.ensure_future(stop.wait())}},
                       return_when=asyncio.FIRST_COMPLETED)
    return 0

sys.exit(protocol.run(main))
"""


def _mounts_under(path: Path) -> list[tuple[str, str]]:
    """(mount point, source) of every mount at or below ``path`` in our namespace."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            point, source = fields[4], fields[fields.index("-") + 2]
            if point == str(path) or point.startswith(f"{path}/"):
                found.append((point, source))
    return found


def _loops_for(images: Path) -> list[str]:
    """Loop devices whose backing file is in ``images``."""
    found = []
    for name in os.listdir("/sys/block"):
        try:
            backing = Path(f"/sys/block/{name}/loop/backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(f"{images}/"):
            found.append(name)
    return found


def _eventually(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Poll ``check`` until it returns something truthy: a mount count or statvfs has no
    event to wait on. Fails with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.1)


def _assert_nothing_left(tmp_path: Path) -> None:
    assert _mounts_under(tmp_path) == []
    # The loop device goes once no mount namespace holds the filesystem (autoclear);
    # another namespace created on the host meanwhile may delay that a moment.
    _eventually(lambda: not _loops_for(tmp_path / "data" / "images"),
                "the loop devices of the stopped components are gone")


def test_this_machine_has_loop_devices() -> None:
    # Disk budgets need them; every test below would fail less clearly without.
    assert loop_support_problem() is None, loop_support_problem()


def test_the_budget_holds_against_a_sandboxed_writer_and_a_full_disk_recovers(
        tmp_path: Path) -> None:
    program = write_program(tmp_path, "filler", _FILLER)
    data = tmp_path / "data"
    config = own_config(tmp_path, f"""
[components.node]
rpcport = {free_port()}
[components.filler]
argv = ["{program}", "{{fd}}", "{data / 'node'}", "{data / 'images'}"]
sandbox = "wallet"
disk_budget = "32M"
inode_budget = 256
restart = "no"
""")
    system = launch(config)
    try:
        system.wait_ready()
        filled = system.log.wait_for(lambda e: e.get("child_event") == "filled")["child"]
        # The kernel said no at the budget, from inside the sandbox, for both.
        assert filled["files_errno"] == errno.ENOSPC and filled["bytes_errno"] == errno.ENOSPC
        assert 200 <= filled["files"] <= 256, filled
        assert 20 * MIB <= filled["wrote"] <= 32 * MIB, filled
        # Its view still shows nothing of the other datadirs, nor of the images.
        assert filled["other_datadir"] is False and filled["images"] is False
        image = data / "images" / "filler.img"
        assert image.stat().st_size == 32 * MIB
        assert image.stat().st_blocks * 512 <= 32 * MIB  # sparse, never beyond its budget
        assert _mounts_under(data / "filler")[0][1].startswith("/dev/loop")

        comp = system.component("filler")
        assert comp["state"] == "active" and comp["disk_full"] is True, comp
        disk = comp["disk"]
        assert disk["enforced"] is True and disk["budget_bytes"] == 32 * MIB
        assert disk["used_inodes"] == disk["budget_inodes"], disk
        human = system.cli("status", "filler").stdout
        assert "Active: active (running, disk full: " in human, human
        assert " — FULL" in human

        # Space returns (the operator deletes files): not full any more, by itself.
        for leaf in (data / "filler" / "many").iterdir():
            leaf.unlink()
        (data / "filler" / "fill").unlink()
        free = _eventually(lambda: not system.component("filler")["disk_full"]
                           and system.component("filler"), "the filler is not full")
        assert free["state"] == "active" and free["disk"]["used_bytes"] < 8 * MIB
        assert "disk full" not in system.cli("status", "filler").stdout
        stop_system(system)
        assert system.process.returncode == 0
        _assert_nothing_left(tmp_path)
    finally:
        stop_system(system)


def _events(system: System, prefix: str) -> list[dict[str, Any]]:
    """Every event so far whose name starts with ``prefix``."""
    system.log.wait_drain()
    return [e for e in system.log.events if str(e.get("event")).startswith(prefix)]


def _kill_daemon(system: System) -> None:
    """SIGKILL the daemon; its components die with it (PDEATHSIG), their mounts stay."""
    spawned = [e["pid"] for e in _events(system, "component.spawned")]
    system.process.kill()
    system.process.wait()
    _eventually(lambda: not any(_alive(p) for p in spawned), "every component is gone")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_a_restart_after_supervisor_sigkill_reuses_the_mounts_and_leaves_none(
        tmp_path: Path) -> None:
    system = start_system(tmp_path)
    data = tmp_path / "data"
    try:
        system.rpc("createwallet", "w")
        address = system.rpc("getnewaddress")
        before = dict(_mounts_under(data))
        assert set(before) == {str(data / n) for n in ("node", "wallet", "index")}
        loops = sorted(_loops_for(data / "images"))
        assert len(loops) == 3
        _kill_daemon(system)
        assert dict(_mounts_under(data)) == before  # stale, as a SIGKILL leaves them
        again = launch(system.config, rpcport=system.rpcport)
        try:
            again.wait_ready()
            # Found and reused: one mount per datadir, the same loop devices, the data.
            assert dict(_mounts_under(data)) == before
            assert sorted(_loops_for(data / "images")) == loops
            assert _events(again, "disk.mounted") == []
            info = json.loads(again.rpc("getaddressinfo", address))
            assert info["ismine"] is True
        finally:
            stop_system(again)
        assert again.process.returncode == 0
        _assert_nothing_left(tmp_path)
    finally:
        stop_system(system)


def test_a_plain_datadir_is_migrated_into_its_image_and_kept(tmp_path: Path) -> None:
    data = tmp_path / "data"
    config = own_config(tmp_path, f"""
[components.node]
rpcport = {free_port()}
disk_budget = "none"
[components.wallet]
disk_budget = "none"
""")
    first = launch(config)
    try:
        first.wait_ready()
        first.rpc("createwallet", "w")
        address = first.rpc("getnewaddress")
    finally:
        stop_system(first)
    assert _mounts_under(data) == []
    assert (data / "wallet" / "wallets" / "w").is_dir()
    # The wallet gets its default budget: its files move into the image.
    head, _, tail = config.read_text().rpartition('disk_budget = "none"')
    config.write_text(head + 'disk_budget = "64M"' + tail)
    second = launch(config)
    try:
        second.wait_ready()
        migrated = second.log.wait_for(lambda e: e.get("event") == "disk.migrated")
        assert migrated["original_kept"] == str(data / "wallet.before-disk-budget")
        assert [p for p, _ in _mounts_under(data)] == [str(data / "wallet")]
        assert (data / "wallet.before-disk-budget" / "wallets" / "w").is_dir()
        assert json.loads(second.rpc("getaddressinfo", address))["ismine"] is True
        # Shrinking is refused on reload; the old config keeps running.
        config.write_text(config.read_text().replace('"64M"', '"32M"'))
        refused = second.cli("reload", check=False)
        assert refused.returncode == 2 and "cannot shrink" in refused.stderr, refused.stderr
        # Growing works: the wallet restarts on a bigger image, data intact.
        config.write_text(config.read_text().replace('"32M"', '"128M"'))
        second.cli("reload")  # returns once the restarted wallet runs
        assert second.component("wallet")["disk"]["budget_bytes"] == 128 * MIB
        assert second.component("wallet")["disk"]["size_bytes"] > 100 * MIB, _events(
            second, "disk")
        assert json.loads(second.rpc("getaddressinfo", address))["ismine"] is True
        # Back to "none" would hide its data behind an empty directory: refused.
        config.write_text(config.read_text().replace('"128M"', '"none"'))
        refused = second.cli("reload", check=False)
        assert refused.returncode == 2 and "disk image" in refused.stderr, refused.stderr
    finally:
        stop_system(second)
    _assert_nothing_left(tmp_path)


def _fill(datadir: Path) -> Path:
    """Fill ``datadir`` (as root, from outside) until the kernel says ENOSPC."""
    filler = datadir / "ballast"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * MIB)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_full_wallet_says_so_over_rpc_and_catches_up_when_space_returns(
        tmp_path: Path) -> None:
    config = own_config(tmp_path, f"""
[components.node]
rpcport = {free_port()}
[components.wallet]
disk_budget = "32M"
""")
    system = launch(config)
    data = tmp_path / "data"
    try:
        system.wait_ready()
        system.rpc("createwallet", "w")
        address = system.rpc("getnewaddress")
        ballast = _fill(data / "wallet")
        assert system.component("wallet")["disk_full"] is True
        system.rpc("generatetoaddress", "101", address)
        failed = system.log.wait_for(lambda e: e.get("child_event") == "block.write_failed"
                                     and e.get("component") == "wallet")
        assert failed["child"]["why"] == "disk full"
        answer = system.cli("rpc", "getbalance", check=False)
        assert answer.returncode != 0 and "Disk full: the wallet" in answer.stderr, answer
        new = system.cli("rpc", "getnewaddress", check=False)
        assert "failed internally" not in new.stderr
        # It stays up (nothing to restart), shows full, and recovers by itself.
        wallet = system.component("wallet")
        assert wallet["state"] == "active" and wallet["disk_full"] is True
        ballast.unlink()
        system.log.wait_for(lambda e: e.get("child_event") == "block.write_recovered")
        assert float(system.rpc("getbalance")) == 50.0
        assert system.component("wallet")["disk_full"] is False
    finally:
        stop_system(system)
    _assert_nothing_left(tmp_path)


def test_disk_tools_are_installed_by_the_project() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert "e2fsprogs" in makefile and "mount" in makefile
    assert subprocess.run(["mkfs.ext4", "-V"], capture_output=True, check=False).returncode == 0


# Fills its datadir on its first run (from inside the sandbox), then cannot write its state
# and exits 75 (EX_TEMPFAIL) as the roles do on a full disk, until there is room again.
_STARTER = f"""#!{sys.executable}
import asyncio, os, signal, socket, sys
from bitcoin_supervisor.interfaces import Echo, Init
from bitcoin_supervisor.ipc import make_protocol

if not os.path.exists("filled-once"):
    open("filled-once", "w").close()
    fd = os.open("ballast", os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        while True:
            os.write(fd, b"x" * (1 << 20))
    except OSError:
        os.close(fd)
try:
    with open("state", "wb") as f:
        f.write(b"s" * (4 << 20))
except OSError:
    sys.exit(75)

class StarterInit(Init):
    async def make_echo(self):
        return None

protocol = make_protocol()

async def main():
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    serve = asyncio.ensure_future(protocol.serve(socket.socket(fileno=int(sys.argv[1])),
                                                 StarterInit(), name="starter"))
    await asyncio.wait({{serve, asyncio.ensure_future(stop.wait())}},
                       return_when=asyncio.FIRST_COMPLETED)
    return 0

sys.exit(protocol.run(main))
"""


def test_a_start_that_fails_on_a_full_disk_is_retried_until_space_returns(
        tmp_path: Path) -> None:
    program = write_program(tmp_path, "starter", _STARTER)
    config = own_config(tmp_path, f"""
[components.starter]
argv = ["{program}", "{{fd}}"]
sandbox = "wallet"
disk_budget = "32M"
[components.starter.restart]
backoff_initial_s = 0.1
backoff_max_s = 0.5
start_limit_burst = 3
start_limit_interval_s = 60
""")
    system = launch(config)
    try:
        # More failed starts than the start limit allows: still retried, never "failed".
        for _ in range(5):
            system.log.wait_for(lambda e: e.get("event") == "component.disk_full")
            system.log.mark()
        starter = system.component("starter")
        assert starter["state"] == "activating" and starter["disk_full"] is True, starter
        assert starter["last_exit"]["exit_code"] == 75
        (tmp_path / "data" / "starter" / "ballast").unlink()
        system.wait_running("starter")
        assert system.component("starter")["disk_full"] is False
    finally:
        stop_system(system)
    _assert_nothing_left(tmp_path)


_SAME_PATH = """
import subprocess, sys
from pathlib import Path
from bitcoin_supervisor.sandbox._disk import _backs, _loops_of
ours, theirs, device = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
assert _backs(device, ours) and _loops_of(ours) == [device]
# In this mount namespace the path now names another file (as the same path does in a
# container); /sys still shows the loop's file under that path.
subprocess.run(["mount", "--bind", str(theirs), str(ours)], check=True)
assert Path(f"/sys/block/{Path(device).name}/loop/backing_file").read_text().strip() == str(ours)
print(_backs(device, ours), _loops_of(ours))
"""


def test_a_loop_device_is_known_by_its_file_not_by_its_path(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "disk.img", tmp_path / "other.img"
    for image in (ours, theirs):
        with open(image, "wb") as f:
            f.truncate(1 << 20)
    device = subprocess.run(["losetup", "--find", "--show", str(ours)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        seen = subprocess.run(["unshare", "--mount", "--propagation", "private",
                               sys.executable, "-c", _SAME_PATH, str(ours), str(theirs),
                               device], capture_output=True, text=True, timeout=60)
        assert seen.returncode == 0, seen.stderr
        assert seen.stdout.split() == ["False", "[]"], seen.stdout
    finally:
        subprocess.run(["losetup", "-d", device], check=False)
