"""The CLI's cookie reader trusts nothing in the node's datadir: every file a compromised
node could put there instead of its cookie is refused with one line, without blocking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bitcoin_supervisor.interfaces import SupervisorError
from bitcoin_supervisor.supervisor._rpcclient import COOKIE_SIZE, CookieRefused, read_cookie

COOKIE = "__cookie__:" + "ab" * 32
ME = os.geteuid()


def _refusal(path: Path, why: str) -> str:
    return (f"refusing the node's cookie {path}: {why}; the node may be compromised, "
            "nothing was sent (inspect the file, then restart the node)")


def test_an_honest_cookie_is_read(tmp_path: Path) -> None:
    (tmp_path / ".cookie").write_text(COOKIE)
    assert read_cookie(tmp_path / ".cookie", ME) == COOKIE
    assert COOKIE_SIZE == len(COOKIE)


def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "target").write_text(COOKIE)
    (tmp_path / ".cookie").symlink_to(tmp_path / "target")
    with pytest.raises(CookieRefused) as err:
        read_cookie(tmp_path / ".cookie", ME)
    assert str(err.value) == _refusal(tmp_path / ".cookie", "it is a symbolic link")


def test_a_fifo_does_not_hang_the_cli(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / ".cookie")  # a blocking open would wait for a writer forever
    with pytest.raises(CookieRefused, match="it is not a regular file"):
        read_cookie(tmp_path / ".cookie", ME)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / ".cookie").mkdir()
    with pytest.raises(CookieRefused, match="it is not a regular file"):
        read_cookie(tmp_path / ".cookie", ME)


def test_someone_elses_file_is_refused(tmp_path: Path) -> None:
    # A hard link to another user's file keeps that user as owner.
    (tmp_path / ".cookie").write_text(COOKIE)
    with pytest.raises(CookieRefused) as err:
        read_cookie(tmp_path / ".cookie", ME + 1)
    assert str(err.value) == _refusal(tmp_path / ".cookie",
                                      f"it is owned by uid {ME}, not by the node's uid {ME + 1}")


@pytest.mark.parametrize("text", ["", COOKIE + "\n", COOKIE[:-1], "x" * 4096])
def test_a_file_of_the_wrong_size_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / ".cookie").write_text(text)
    with pytest.raises(CookieRefused, match=f"it has {len(text)} bytes, a cookie has 75"):
        read_cookie(tmp_path / ".cookie", ME)


@pytest.mark.parametrize("text", ["__cookie__:" + "AB" * 32, "root:" + "a" * 70,
                                  "__cookie__:" + "a" * 63 + "\n"])
def test_cookie_sized_text_that_is_no_cookie_is_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / ".cookie").write_text(text)
    with pytest.raises(CookieRefused, match="its content is not a cookie"):
        read_cookie(tmp_path / ".cookie", ME)


def test_a_missing_cookie_says_so(tmp_path: Path) -> None:
    with pytest.raises(SupervisorError) as err:
        read_cookie(tmp_path / ".cookie", ME)
    assert not isinstance(err.value, CookieRefused)
    assert str(err.value) == (f"cannot read the node's cookie {tmp_path / '.cookie'}: "
                              "No such file or directory (is the node running?)")
