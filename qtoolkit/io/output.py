"""The one way qtoolkit writes a file (GGUF models, importance matrices, recipes, report files),
so that nothing half-written survives and no file but the output is ever changed.

:class:`ReplaceOnSuccess` (``with ReplaceOnSuccess(path, force, what, inputs) as out:``):

* refuses an output path that is ``-``, a directory, an existing file (without ``force``), or the
  same file as one of the inputs (by device and inode, following links: a symbolic or hard link
  to an input is the input), before anything is written;
* creates ``OUT.partial`` exclusively (``O_CREAT | O_EXCL | O_NOFOLLOW``) and holds an exclusive
  ``flock`` on it: a link planted at that name is never followed, a second writer of the same
  output is refused. A ``.partial`` left by a killed run is a plain file whose lock died with
  it: it is removed and created anew; one that is a link, has other names or is not a regular
  file is refused, since qtoolkit did not leave it;
* the writer writes through the descriptor it created (:meth:`ReplaceOnSuccess.file`), never
  reopening the name;
* when the block completes the file is ``fsync``-ed and published: without ``force`` by a
  hard link that fails if a file appeared at the output path meanwhile (then
  ``renameat2(RENAME_NOREPLACE)``, where the file system has no hard links), with ``force`` by
  ``rename``; then the folder is ``fsync``-ed. On any error or Ctrl-C the partial file is removed.

So ``OUT`` is either absent, the old file, or the new complete one.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from typing import BinaryIO, Iterable, Optional, Sequence

from ..errors import QtkError, QtkFileExistsError, QtkIOError, QtkValueError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock against a second writer
    fcntl = None

log = logging.getLogger(__name__)

FULL_DISK = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS, errno.EXDEV)


def input_files(paths: Iterable[Optional[str]]) -> list:
    """The files behind ``paths`` (None skipped; a folder stands for every file directly in it,
    as a model folder's shards, config and tokenizer do)."""
    out = []
    for p in paths:
        if not p:
            continue
        p = os.fspath(p)
        if os.path.isdir(p):
            try:
                out += [e.path for e in os.scandir(p)]
            except OSError:
                pass
        else:
            out.append(p)
    return out


def same_as_input(path: str, inputs: Iterable[Optional[str]]) -> Optional[str]:
    """The input (from :func:`input_files`) that ``path`` is, or links to; None if none."""
    try:
        st = os.stat(path)  # follows links: a symbolic link to an input is the input
    except OSError:
        return None
    for p in input_files(inputs):
        try:
            if os.path.samestat(st, os.stat(p)):
                return p
        except OSError:
            continue
    return None


def check_output(out_path: str, force: bool, inputs: Sequence[Optional[str]] = ()) -> None:
    """Refuse an output path that is ``-``, a directory, exists (without ``force``), has no
    folder, or is (or links to) one of ``inputs`` (files or folders), before a long run."""
    out_path = os.fspath(out_path)
    if out_path == "-":
        raise QtkValueError("-: writing to standard output is not supported; give a file name for the output")
    if not out_path or out_path.endswith(os.sep) or os.path.isdir(out_path):
        raise QtkFileExistsError(f"{out_path}: is a directory; give a file name for the output")
    for name in (out_path, out_path + ".partial"):
        src = same_as_input(name, inputs)
        if src is not None:
            shown = "" if os.path.abspath(src) == os.path.abspath(name) else f" ({src})"
            raise QtkValueError(f"{name}: is one of the inputs{shown}; the output must be another file")
    if os.path.lexists(out_path) and not force:
        raise QtkFileExistsError(f"{out_path}: already exists; pass --force to replace it")
    parent = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(parent):
        raise QtkError(f"{out_path}: the folder {parent} does not exist")


def _locked(out_path: str, partial: str) -> QtkFileExistsError:
    return QtkFileExistsError(
        f"{out_path}: another process is writing it ({partial} is locked); wait for it or stop it")


def _lock(fd: int) -> bool:
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _remove_stale(out_path: str, partial: str) -> None:
    """Remove ``partial`` if it is what a killed run leaves: a regular file with one name whose
    lock nobody holds. Anything else is refused, and nothing is followed or written."""
    try:
        st = os.lstat(partial)
    except FileNotFoundError:
        return
    not_ours = f"{out_path}: {partial} is not a file qtoolkit left"
    if stat.S_ISLNK(st.st_mode):
        raise QtkFileExistsError(f"{not_ours} (a symbolic link); remove it and run again")
    if not stat.S_ISREG(st.st_mode):
        raise QtkFileExistsError(f"{not_ours} (not a regular file); remove it and run again")
    if st.st_nlink != 1:
        raise QtkFileExistsError(f"{not_ours} (it has {st.st_nlink} names: a hard link to another file?); "
                                 "remove it and run again")
    try:
        fd = os.open(partial, os.O_RDONLY | os.O_NONBLOCK | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise QtkIOError(f"{out_path}: cannot open the stale {partial}: {exc}") from exc
    try:
        if not os.path.samestat(os.fstat(fd), st):
            return  # replaced since the lstat: look again
        if not _lock(fd):
            raise _locked(out_path, partial)
        try:
            if os.path.samestat(os.lstat(partial), st):
                os.unlink(partial)
                log.info("removed %s, left by a run that was killed", partial)
        except FileNotFoundError:
            pass
    finally:
        os.close(fd)


def lock_partial(out_path: str, partial: str) -> int:
    """An fd of ``partial``, created here (exclusively, never through a link) and holding an
    exclusive flock. A stale ``partial`` of a killed run is replaced; a locked one (another
    writer) or one qtoolkit did not leave is refused."""
    for _ in range(8):
        try:
            fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
        except FileExistsError:
            _remove_stale(out_path, partial)
            continue
        except OSError as exc:
            raise QtkIOError(f"{out_path}: cannot create {partial}: {exc}") from exc
        if not _lock(fd):  # another run took the fresh file for a stale one
            os.close(fd)
            raise _locked(out_path, partial)
        try:
            if os.path.samestat(os.fstat(fd), os.lstat(partial)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the name was removed or replaced between open and lock: try again
    raise QtkIOError(f"{out_path}: {partial} keeps changing under us")  # pragma: no cover


def fsync_dir(path: str) -> None:
    """Flush a directory entry (a rename) to disk, where the file system allows it."""
    try:
        fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    except OSError:  # pragma: no cover
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _rename_noreplace(src: str, dst: str) -> bool:
    """``renameat2(src, dst, RENAME_NOREPLACE)``; False where the C library or file system lacks it."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):  # pragma: no cover
        return False
    at_fdcwd, noreplace = -100, 1
    if fn(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), noreplace) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # pragma: no cover
        return False
    raise OSError(err, os.strerror(err), dst)


class ReplaceOnSuccess:
    """``with ReplaceOnSuccess(path, force, "the output", inputs) as out:`` write through
    ``out.file()`` (or ``out.fd``); when the block ends without an error the file is flushed and
    published at ``path`` and ``out.size`` is its size. ``inputs``: files or folders the output
    must not be. An OSError inside the block (a full disk...) becomes a QtkIOError naming
    ``path`` and ``what``; QtkErrors pass unchanged."""

    def __init__(self, path: str, force: bool, what: str, inputs: Sequence[Optional[str]] = ()):
        path = os.fspath(path)
        check_output(path, force, inputs)
        self.path = path
        self.force = force
        self.what = what
        self.partial = path + ".partial"
        self.size = 0
        self.fd = -1

    def __enter__(self) -> "ReplaceOnSuccess":
        self.fd = lock_partial(self.path, self.partial)
        return self

    def file(self) -> BinaryIO:
        """A buffered binary file writing the partial file through its own descriptor (a
        duplicate: closing it keeps the lock)."""
        return os.fdopen(os.dup(self.fd), "wb")

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._publish()
                return False
            if isinstance(exc, OSError) and not isinstance(exc, QtkError):
                raise self._io_error(exc) from exc
            return False
        finally:
            try:
                if os.path.samestat(os.lstat(self.partial), os.fstat(self.fd)):
                    os.remove(self.partial)
                    log.info("removed the unfinished %s", self.partial)
            except FileNotFoundError:
                pass
            os.close(self.fd)

    def _publish(self) -> None:
        try:
            os.fsync(self.fd)  # the data on disk before the name points at it
            self.size = os.fstat(self.fd).st_size
            if not os.path.samestat(os.lstat(self.partial), os.fstat(self.fd)):
                raise QtkIOError(f"{self.path}: {self.partial} was replaced while it was written; nothing was written")
            if self.force:
                os.replace(self.partial, self.path)
            else:
                self._publish_new()
            fsync_dir(os.path.dirname(os.path.abspath(self.path)))
        except QtkError:
            raise
        except OSError as err:
            raise self._io_error(err) from err

    def _publish_new(self) -> None:
        """Give the partial file the output's name, unless a file appeared there meanwhile."""
        appeared = QtkFileExistsError(f"{self.path}: a file appeared there while {self.what} was written; it was "
                                      "left as it is and nothing was written (pass --force to replace it)")
        try:
            os.link(self.partial, self.path, follow_symlinks=False)
        except FileExistsError:
            raise appeared from None
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            try:
                if _rename_noreplace(self.partial, self.path):
                    return
            except FileExistsError:
                raise appeared from None
            if os.path.lexists(self.path):  # pragma: no cover - neither hard links nor renameat2
                raise appeared from None
            os.rename(self.partial, self.path)  # pragma: no cover
            return
        os.unlink(self.partial)

    def _io_error(self, exc: OSError) -> QtkIOError:
        hint = " (the disk is full or a file-size limit was reached)" if exc.errno in FULL_DISK else ""
        return QtkIOError(f"{self.path}: cannot write {self.what}: {exc}{hint}; nothing was written")


def write_bytes(path: str, data: bytes, force: bool, what: str, inputs: Sequence[Optional[str]] = ()) -> int:
    """Write ``data`` to ``path`` through :class:`ReplaceOnSuccess`; returns the size."""
    with ReplaceOnSuccess(path, force, what, inputs) as out:
        with out.file() as f:
            f.write(data)
    return out.size


def write_text(path: str, text: str, force: bool, what: str, inputs: Sequence[Optional[str]] = ()) -> int:
    """Write ``text`` as UTF-8 (``\\n`` line ends) to ``path`` through :class:`ReplaceOnSuccess`."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise QtkValueError(f"{path}: {what} is not valid Unicode text ({exc.reason} at {exc.start})") from None
    return write_bytes(path, data, force, what, inputs)
