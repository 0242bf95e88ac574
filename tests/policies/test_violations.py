"""Finding the syscall a filter killed a process for, from kernel audit records."""

from __future__ import annotations

from pathlib import Path

from bitcoin_supervisor.sandbox import find_violation

_RECORD = (
    "5,{seq},2453235019,-;audit: type=1326 audit({time}:171): auid=4294967295 "
    "uid=65534 gid=65534 ses=4294967295 pid={pid} comm=\"python\" exe=\"/usr/bin/python3.11\" "
    "sig=31 arch=c000003e syscall={nr} compat=0 ip=0x7ff08efcc34a code=0x80000000\n"
)


def _record(pid: int, nr: int, time: str = "1795535323.671", seq: int = 1001) -> str:
    return _RECORD.format(pid=pid, nr=nr, time=time, seq=seq)


def test_names_the_syscall_of_the_matching_pid(tmp_path: Path) -> None:
    log = tmp_path / "kmsg"
    log.write_text(_record(4242, 41) + _record(77, 59)
                   + "6,1002,2453235020,-;unrelated line pid=4242 syscall=1\n")
    assert find_violation([4242], kmsg=str(log), wait_s=0) == "socket"
    assert find_violation([1, 77], kmsg=str(log), wait_s=0) == "execve"


def test_none_when_no_record_or_no_log(tmp_path: Path) -> None:
    log = tmp_path / "kmsg"
    log.write_text(_record(4242, 41))
    assert find_violation([4243], kmsg=str(log), wait_s=0) is None
    assert find_violation([4242], kmsg=str(tmp_path / "missing"), wait_s=0) is None


def test_records_older_than_the_process_are_ignored(tmp_path: Path) -> None:
    # Pid 4242 was an earlier process killed for setns; the one started at 1795535400.0
    # reused the pid and was killed for socket, but its record was rate-limited away.
    log = tmp_path / "kmsg"
    log.write_text(_record(4242, 308, time="1795535323.671"))
    assert find_violation([4242], kmsg=str(log), wait_s=0) == "setns"  # no start time given
    assert find_violation([4242], kmsg=str(log), wait_s=0, started_at=1795535400.0) is None
    # Its own record, even one stamped a clock tick before the start was read, counts.
    log.write_text(_record(4242, 308, time="1795535323.671")
                   + _record(4242, 41, time="1795535399.990", seq=1002))
    assert find_violation([4242], kmsg=str(log), wait_s=0, started_at=1795535400.0) == "socket"
    log.write_text(_record(4242, 41, time="1795535400.250", seq=1002)
                   + _record(4242, 308, time="1795535323.671", seq=1003))
    assert find_violation([4242], kmsg=str(log), wait_s=0, started_at=1795535400.0) == "socket"
