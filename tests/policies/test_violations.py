"""Finding the syscall a filter killed a process for, from kernel audit records."""

from __future__ import annotations

from pathlib import Path

from bitcoin_supervisor.sandbox import find_violation

_RECORDS = (
    "5,1001,2453235019,-;audit: type=1326 audit(1795535323.671:171): auid=4294967295 "
    "uid=65534 gid=65534 ses=4294967295 pid={pid} comm=\"python\" exe=\"/usr/bin/python3.11\" "
    "sig=31 arch=c000003e syscall={nr} compat=0 ip=0x7ff08efcc34a code=0x80000000\n"
)


def test_names_the_syscall_of_the_matching_pid(tmp_path: Path) -> None:
    log = tmp_path / "kmsg"
    log.write_text(_RECORDS.format(pid=4242, nr=41) + _RECORDS.format(pid=77, nr=59)
                   + "6,1002,2453235020,-;unrelated line pid=4242 syscall=1\n")
    assert find_violation([4242], kmsg=str(log), wait_s=0) == "socket"
    assert find_violation([1, 77], kmsg=str(log), wait_s=0) == "execve"


def test_none_when_no_record_or_no_log(tmp_path: Path) -> None:
    log = tmp_path / "kmsg"
    log.write_text(_RECORDS.format(pid=4242, nr=41))
    assert find_violation([4243], kmsg=str(log), wait_s=0) is None
    assert find_violation([4242], kmsg=str(tmp_path / "missing"), wait_s=0) is None
