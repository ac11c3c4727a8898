"""Files replaced whole or not at all: the one writer for secrets, credentials, installed files and
backups.

A crash or a kill -9 leaves the old file or the new one, never half of one: the bytes go to a
temporary file beside the target with its final mode (and owner, through `prepare`) before any byte is
written, are fsync'ed, renamed over the target, and the folder is fsync'ed so the rename survives a
power cut.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_replace(path: Path, *, mode: int = 0o600,
                   prepare: Callable[[int], None] | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file whose content replaces `path` when the block ends without an exception.
    `mode` is set before anything is written (a secret is never readable by others, not even for a
    moment); `prepare(fd)` may then set its owner or group."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            if prepare is not None:
                prepare(fh.fileno())
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
