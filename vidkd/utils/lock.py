"""One writer per directory: an exclusive advisory lock held for as long as a command writes.

The lock is `fcntl.flock` on a small file that names its holder (host, pid, start time). The
system releases it when the holding process dies, however it dies, so a lock left by a killed
job never blocks its successor; the file itself is only a label. Within one process the lock is
re-entrant (a demo holds its experiment directory while the grid it runs takes it again).
Where `fcntl` does not exist (Windows) directories are not locked.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from vidkd.errors import VidkdError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class DirectoryBusyError(VidkdError):
    """Another process writes the directory."""


_held: dict[str, int] = {}  # lock file (real path) -> times this process holds it


def _holder(path: Path) -> str:
    try:
        record = json.loads(path.read_text())
        return f"pid {record['pid']} on {record['host']} since {record['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def exclusive(lock_file: Path, what: str) -> Iterator[None]:
    """Hold `lock_file` exclusively while the block runs; `what` names the directory in the refusal.

    Raises:
        DirectoryBusyError: another process holds it (the message names that process).
    """
    lock_file = Path(lock_file)
    key = os.path.realpath(lock_file)
    if fcntl is None or key in _held:
        _held[key] = _held.get(key, 0) + 1
        try:
            yield
        finally:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
        return
    fd = _acquire(lock_file, what)
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        lock_file.unlink(missing_ok=True)  # while still held: no other process can have locked this inode
        os.close(fd)


def _acquire(lock_file: Path, what: str) -> int:
    while True:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DirectoryBusyError(f"{what} is in use by {_holder(lock_file)}; wait for that process to finish "
                                     "or stop it (a lock of a process that died is released by itself)") from None
        except BaseException:
            os.close(fd)
            raise
        try:  # the holder before us may have removed the file after we opened it: lock the one on disk
            if os.fstat(fd).st_ino == os.stat(lock_file).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    since = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": since}).encode())
    return fd
