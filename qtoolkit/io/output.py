"""Writing an output file so that nothing half-written survives, for every writer of the package
(GGUF models, importance matrices).

:class:`ReplaceOnSuccess` writes ``OUT.partial`` (locked against a second writer with ``flock``),
flushes it to disk and renames it to ``OUT`` when the block completes; on any error or Ctrl-C the
partial file is removed. So ``OUT`` is either absent, the old file, or the new complete one. An
existing ``OUT`` is only replaced with ``force``. After a SIGKILL or a power cut ``OUT.partial``
may remain; its lock died with the process, and the next run overwrites it.
"""

from __future__ import annotations

import errno
import logging
import os

from ..errors import QtkError, QtkFileExistsError, QtkIOError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock against a second writer
    fcntl = None

log = logging.getLogger(__name__)

FULL_DISK = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


def check_output(out_path: str, force: bool) -> None:
    """Refuse an output path that is a directory, exists (without ``force``) or has no folder."""
    if os.path.isdir(out_path):
        raise QtkFileExistsError(f"{out_path}: is a directory; give a file name for the output")
    if os.path.exists(out_path) and not force:
        raise QtkFileExistsError(f"{out_path}: already exists; pass --force (force=True) to replace it")
    parent = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(parent):
        raise QtkError(f"{out_path}: the folder {parent} does not exist")


def lock_partial(out_path: str, partial: str) -> int:
    """An fd of ``partial`` holding an exclusive flock (created if needed, not truncated: the
    writer truncates it once the lock is ours). Refuses while another process holds it."""
    for _ in range(5):
        try:
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise QtkIOError(f"{out_path}: cannot create {partial}: {exc}") from exc
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise QtkFileExistsError(
                f"{out_path}: another process is writing it ({partial} is locked); wait for it or stop it"
            ) from None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(partial)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the name was removed or replaced between open and lock: try again
    raise QtkIOError(f"{out_path}: {partial} keeps changing under us")  # pragma: no cover


def fsync_dir(path: str) -> None:
    """Flush a directory entry (a rename) to disk, where the file system allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


class ReplaceOnSuccess:
    """``with ReplaceOnSuccess(path, force, "the output") as out:`` write ``out.partial``; when the
    block ends without an error the file is flushed and renamed to ``path`` and ``out.size`` is its
    size. An OSError inside the block (a full disk...) becomes a QtkIOError naming ``path`` and
    ``what``; QtkErrors pass unchanged."""

    def __init__(self, path: str, force: bool, what: str):
        check_output(path, force)
        self.path = path
        self.what = what
        self.partial = path + ".partial"
        self.size = 0
        self._lock = -1

    def __enter__(self) -> "ReplaceOnSuccess":
        self._lock = lock_partial(self.path, self.partial)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                try:
                    os.fsync(self._lock)  # the data on disk before the name points at it
                    self.size = os.fstat(self._lock).st_size
                    os.replace(self.partial, self.path)
                    fsync_dir(os.path.dirname(os.path.abspath(self.path)))
                except OSError as err:
                    raise self._io_error(err) from err
                return False
            if isinstance(exc, OSError) and not isinstance(exc, QtkError):
                raise self._io_error(exc) from exc
            return False
        finally:
            if os.path.exists(self.partial) and os.path.samestat(os.stat(self.partial), os.fstat(self._lock)):
                os.remove(self.partial)
                log.info("removed the unfinished %s", self.partial)
            os.close(self._lock)

    def _io_error(self, exc: OSError) -> QtkIOError:
        hint = " (the disk is full or a file-size limit was reached)" if exc.errno in FULL_DISK else ""
        return QtkIOError(f"{self.path}: cannot write {self.what}: {exc}{hint}; nothing was written")
