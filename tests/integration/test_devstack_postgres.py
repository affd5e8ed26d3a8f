"""The embedded Postgres's start and stop (``medspa.devstack``), on throwaway data directories: `medspa dev up` /
`dev down`, the benchmarks, the drills and the tests' own servers all go through them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from medspa import devstack


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    devstack.stop_postgres(path)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_a_stopped_server_leaves_no_pid_and_a_second_stop_is_quiet(data_dir: Path) -> None:
    port = devstack.start_postgres(data_dir, fsync=False)
    assert devstack.postmaster_pid(data_dir) is not None and _accepts(port)
    devstack.stop_postgres(data_dir)
    assert devstack.postmaster_pid(data_dir) is None and not _accepts(port)
    devstack.stop_postgres(data_dir)  # nothing runs: nothing to do, no error


def test_a_stale_pid_file_after_a_crash_is_not_a_failure_to_stop(data_dir: Path) -> None:
    devstack.start_postgres(data_dir, fsync=False)
    devstack.stop_postgres(data_dir)
    # As a machine's crash leaves it: a postmaster.pid naming a process that no longer exists.
    stale = data_dir / "pg" / "postmaster.pid"
    stale.write_text(f"{2**22 - 7}\n{data_dir / 'pg'}\n")
    devstack.stop_postgres(data_dir)


@pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only when we are root (as in CI)")
def test_as_root_a_folder_closed_since_start_does_not_keep_the_server_running(data_dir: Path) -> None:
    port = devstack.start_postgres(data_dir, fsync=False)
    # As pytest does to /tmp/pytest-of-root at each session's start: the server's user can no longer get through.
    data_dir.parent.chmod(0o700)
    devstack.stop_postgres(data_dir)
    assert devstack.postmaster_pid(data_dir) is None and not _accepts(port)
    data_dir.parent.chmod(0o700)
    port = devstack.start_postgres(data_dir, fsync=False)  # and it starts again
    assert _accepts(port)
