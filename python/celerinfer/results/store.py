"""The results store: benchmark records (``docs/results_schema.md``) in an append-only JSONL log.

Writers only ever append: each batch of records is written as whole lines with one ``write``
under an exclusive ``flock``, so concurrent writers (processes, threads) never interleave or lose
lines, and a writer killed mid-line leaves one damaged line that readers skip with a
:class:`ResultsWarning` (the next writer starts a fresh line after it). Nothing is ever rewritten
or truncated; ``clear_log`` moves the old log aside.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path

from . import bounded_json
from .schema import record_line


class ResultsWarning(UserWarning):
    """A results log had damaged lines (skipped)."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - os.write raises instead
            raise OSError(errno.EIO, "write returned 0")
        view = view[written:]


def append_records(path, records) -> None:
    """Append records to a JSONL log, one line each, as one locked write (see the module doc).

    Every record is serialized before the file is touched, so a record that cannot be stored
    raises without writing anything.
    """
    data = b"".join(record_line(r) for r in records)
    if not data:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                st = os.fstat(fd)
                try:
                    current = os.stat(path)
                except FileNotFoundError:
                    current = None
                if current is None or (current.st_dev, current.st_ino) != (st.st_dev, st.st_ino):
                    continue  # clear_log moved the file aside while we waited: open the new one
                prefix = b""
                if st.st_size > 0 and os.pread(fd, 1, st.st_size - 1) != b"\n":
                    prefix = b"\n"  # a writer died mid-line: keep its fragment on a line of its own
                _write_all(fd, prefix + data)
                os.fsync(fd)
                return
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    raise OSError(f"{path}: the file kept being replaced while appending")  # pragma: no cover


def append_record(path, record: dict) -> None:
    """Append one record (see :func:`append_records`)."""
    append_records(path, [record])


def check_writable(path) -> None:
    """Raises OSError naming `path` unless records can be appended to it: called before
    measuring, so that no run measures for nothing. Its folder is created; a file that is not
    there yet is not (a probe file beside it is written and removed), so that "no log yet"
    keeps its meaning for whoever reads the folder."""
    path = Path(path)
    try:
        probe_writable(path)
    except OSError as exc:
        raise OSError(f"cannot write the results log {path}: {why_unwritable(path, exc)}") from None


def probe_writable(path: Path) -> None:
    """The OSError that appending to `path` would raise, if any (see check_writable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with open(path, "ab"):
            pass
    else:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.probe-"):
            pass


def why_unwritable(path: Path, exc: OSError) -> str:
    """What stops writing `path`, in words: a parent that is a file, or the system's reason."""
    for parent in path.parents:
        if parent.exists():
            return f"{parent} is not a folder" if not parent.is_dir() else (exc.strerror or str(exc))
    return exc.strerror or str(exc)


def read_records(path, benchmark: str | None = None, run_id: str | None = None) -> list[dict]:
    """The records of a JSONL log (a missing file: []), optionally of one benchmark / run.

    Lines that are not JSON objects with a ``schema_version`` are skipped with one
    :class:`ResultsWarning` per call; blank lines are ignored.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH)  # a consistent snapshot: no half-written batch
            except OSError:  # a file system without locks: read anyway
                pass
            data = f.read()  # closing the file releases the lock
    except FileNotFoundError:
        return []
    records = []
    damaged, first_damaged = 0, None
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = bounded_json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            record = None
        if not isinstance(record, dict) or "schema_version" not in record:
            damaged += 1
            first_damaged = first_damaged or number
            continue
        if benchmark is not None and record.get("benchmark") != benchmark:
            continue
        if run_id is not None and record.get("run_id") != run_id:
            continue
        records.append(record)
    if damaged:
        warnings.warn(f"{path}: skipped {damaged} damaged line{'s' if damaged > 1 else ''} "
                      f"(first at line {first_damaged})", ResultsWarning, stacklevel=2)
    return records


def clear_log(path) -> Path | None:
    """Start a fresh log: move the old one aside to ``<name>.<UTC timestamp>.bak`` (never
    deleted) and return the backup's path; None when there was no log."""
    path = Path(path)
    if not path.exists():
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    with open(path, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # let a writer in progress finish first
        try:
            for i in range(1000):
                backup = path.with_name(f"{path.name}.{stamp}{'' if i == 0 else f'-{i}'}.bak")
                try:
                    os.link(path, backup)  # never replaces an existing file
                except FileExistsError:
                    continue
                except OSError:  # no hard links here: rename, having checked the name is free
                    if backup.exists():
                        continue
                    os.rename(path, backup)
                    return backup
                os.unlink(path)
                return backup
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    raise FileExistsError(f"no free backup name for {path}")  # pragma: no cover
