"""Opening an input file the way every qtoolkit reader does: only a regular file is read (a pipe
would block waiting for a writer, a device never ends), and each way of failing is a QtkError
that names the file.

:func:`open_regular` is the model readers' way in (GGUF, safetensors, importance matrices);
:func:`read_text_file` is the one reader of text-like inputs (evaluation and calibration texts,
tensor-type files and recipes): a regular file, at most ``limit`` bytes, UTF-8 (invalid bytes are
an error unless ``errors="replace"``), with a warning when the text looks like binary data.
"""

from __future__ import annotations

import logging
import os
import stat
from typing import BinaryIO, Tuple

from ..errors import QtkFileNotFoundError, QtkFormatError, QtkIOError, QtkValueError

log = logging.getLogger(__name__)

TEXT_LIMIT = 1 << 30          # evaluation and calibration texts (1 GiB: ~250M tokens, far beyond any run)
SMALL_TEXT_LIMIT = 16 << 20   # tensor-type files and recipes (16 MiB: hundreds of thousands of lines)
_SNIFF = 1 << 20              # bytes looked at for the binary-data warning
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\v\x1b")


def open_regular(path: str, what: str) -> Tuple[BinaryIO, int]:
    """``path`` opened for binary reading, and its size. ``what`` names the expected kind of file
    ("a GGUF file") in the error for a directory. The file is opened without blocking and
    checked through its descriptor, so a pipe swapped in after a check cannot hang the reader."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise QtkFileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise QtkFormatError(f"{path}: is a directory, not {what}") from None
    except OSError as exc:  # permissions, a name too long, a loop of links...
        raise QtkIOError(f"{path}: cannot read it: {exc}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise QtkFormatError(f"{path}: is a directory, not {what}")
        if not stat.S_ISREG(st.st_mode):  # a pipe would wait for a writer, a device never ends
            raise QtkIOError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    return f, st.st_size


def unicode_name(s: str) -> str:
    """``s`` (a path from the file system, perhaps with undecodable bytes kept as lone
    surrogates) as text that has a UTF-8 form: each undecodable byte becomes U+FFFD."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape" if _only_escapes(s) else "surrogatepass").decode("utf-8", "replace")


def _only_escapes(s: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in s)


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def looks_binary(data: bytes) -> bool:
    """A NUL byte, or more than 1 % control bytes other than tab, line ends and ESC, in the first MiB."""
    head = data[:_SNIFF]
    if not head:
        return False
    if b"\0" in head:
        return True
    controls = sum(head.count(bytes([b])) for b in range(32) if b not in _TEXT_CONTROLS) + head.count(b"\x7f")
    return controls > len(head) // 100


def read_text_file(path: str, what: str, limit: int = TEXT_LIMIT, errors: str = "strict") -> str:
    """The text of ``path`` (``what``: "evaluation text"...), decoded as UTF-8 with line ends
    made ``\\n`` (as Python's text mode does). A directory, a pipe or a device, a file over
    ``limit`` bytes, and (with ``errors="strict"``) invalid UTF-8 are QtkErrors naming the file;
    ``errors="replace"`` turns invalid bytes into U+FFFD with a warning. A text that looks like
    binary data is read, with a warning."""
    if errors not in ("strict", "replace"):
        raise QtkValueError(f"errors must be 'strict' or 'replace', got {errors!r}")
    path = os.fspath(path)
    f, size = open_regular(path, f"{'an' if what[:1] in 'aeiou' else 'a'} {what}")
    with f:
        if size > limit:
            raise QtkValueError(f"{path}: the {what} is {_size(size)}; the limit is {_size(limit)}")
        try:
            data = f.read(limit + 1)
        except OSError as exc:
            raise QtkIOError(f"{path}: cannot read it: {exc}") from None
    if len(data) > limit:
        raise QtkValueError(f"{path}: the {what} grew past the limit of {_size(limit)} while it was read")
    if looks_binary(data):
        log.warning("%s: the %s looks like binary data (NUL or control bytes), not text; "
                    "results on it mean little", path, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if errors == "strict":
            raise QtkFormatError(
                f"{path}: the {what} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                "convert it to UTF-8, or replace the invalid bytes (--utf8-errors replace)") from None
        text = data.decode("utf-8", "replace")
        log.warning("%s: the %s is not valid UTF-8; %d invalid sequences were replaced by U+FFFD",
                    path, what, text.count("\ufffd") - data.decode("utf-8", "ignore").count("\ufffd"))
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text
