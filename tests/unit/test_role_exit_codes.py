"""A role that cannot start says whether trying again can help (issue 9): exit 78 only for
settings that can never work; a busy port or a full disk is an ordinary failure."""

from __future__ import annotations

import errno
import sqlite3

import pytest

from bitcoin_supervisor.interfaces import SupervisorError
from bitcoin_supervisor.roles._main import EXIT_CONFIG, EXIT_TEMPFAIL, start_failure_code


@pytest.mark.parametrize("code", [errno.EADDRINUSE, errno.ENOSPC, errno.EIO, errno.ENOMEM,
                                  errno.EMFILE, errno.EAGAIN, errno.EDQUOT])
def test_transient_os_errors_are_retried(code: int) -> None:
    assert start_failure_code(OSError(code, "x")) == EXIT_TEMPFAIL


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT,
                                  errno.EADDRNOTAVAIL])
def test_os_errors_about_the_settings_are_config_errors(code: int) -> None:
    assert start_failure_code(OSError(code, "x")) == EXIT_CONFIG


def test_bad_options_and_unusable_files_are_config_errors() -> None:
    assert start_failure_code(ValueError("rpcport must be an integer")) == EXIT_CONFIG
    assert start_failure_code(SupervisorError("block file is damaged")) == EXIT_CONFIG


def test_storage_errors_and_the_unexpected_are_retried() -> None:
    assert start_failure_code(sqlite3.OperationalError("database is locked")) == EXIT_TEMPFAIL
    assert start_failure_code(RuntimeError("bug")) == EXIT_TEMPFAIL
    assert start_failure_code(OSError("no errno")) == EXIT_TEMPFAIL
