"""Opening an input file the way every qtoolkit reader does: only a regular file is read (a pipe
would block waiting for a writer, a device never ends), and each way of failing is a QtkError
that names the file."""

from __future__ import annotations

import os
import stat
from typing import BinaryIO, Tuple

from ..errors import QtkFileNotFoundError, QtkFormatError, QtkIOError


def open_regular(path: str, what: str) -> Tuple[BinaryIO, int]:
    """``path`` opened for binary reading, and its size. ``what`` names the expected kind of file
    ("a GGUF file") in the error for a directory."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):  # opening a pipe would wait for a writer
            raise QtkIOError(f"{path}: not a regular file")
        return open(path, "rb"), st.st_size
    except FileNotFoundError:
        raise QtkFileNotFoundError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise QtkFormatError(f"{path}: is a directory, not {what}") from None
    except OSError as exc:  # permissions, a special file...
        raise QtkIOError(f"{path}: cannot read it: {exc}") from None
