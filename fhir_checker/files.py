"""Files written whole or not at all: the packed tables, their manifest, bulk summaries."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

#: A data file is for every user (mkstemp alone would leave it 0600).
DATA_FILE_MODE = 0o644


def mode_open_would_give() -> int:
    """0666 less the process's umask: what ``open(path, "w")`` would create."""
    mask = os.umask(0o022)  # the only way to read it is to set it: put it straight back
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[IO[bytes]], Any], mode: int = DATA_FILE_MODE) -> None:
    """Write via a temporary file in the same directory (created if missing), then rename:
    readers never see half a file, and a failed write leaves no temporary file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
