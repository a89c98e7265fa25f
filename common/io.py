"""Atomic file writes: a crash or a kill never leaves a half-written file in place.

Every writer goes through the same three steps: write to a temporary file in the *same
directory* as the target (so the final rename never crosses a filesystem), flush and
``fsync`` it, then ``os.replace`` it over the target. ``os.replace`` is atomic on POSIX
and Windows, so readers see either the old file or the new one, never a mixture.

``atomic_path`` covers libraries that insist on writing files themselves (``torch.save``,
``safetensors``, PIL, ``soundfile``, ``np.savez``): it yields a temporary path that keeps
the target's suffix, because several of those libraries choose the format from it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "refuse_overwrite",
]

# mkstemp creates files with mode 0600; published artifacts should be readable like any
# other file the user writes. An existing target keeps its own mode.
_DEFAULT_MODE = 0o644


def refuse_overwrite(path: str | os.PathLike[str]) -> None:
    """Raise ``FileExistsError`` if ``path`` exists (the guard behind ``overwrite=False``)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(
            f"refusing to overwrite existing file: {path} "
            "(delete it, choose another path, or pass overwrite=True where supported)"
        )


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable. Best effort: not every platform/filesystem lets
    # a directory be opened for fsync (Windows, some network filesystems).
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(tmp: Path, path: Path, *, overwrite: bool) -> None:
    """Move a finished, fsynced temp file to ``path``."""
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = _DEFAULT_MODE
    os.chmod(tmp, mode)
    if overwrite:
        os.replace(tmp, path)
    else:
        # A hard link fails with FileExistsError if the target appeared in the meantime,
        # so "never overwrite" holds even against a concurrent writer.
        try:
            os.link(tmp, path)
        except FileExistsError:
            refuse_overwrite(path)
            raise
        except OSError:  # filesystem without hard links: check, then rename
            refuse_overwrite(path)
            os.replace(tmp, path)
        else:
            os.unlink(tmp)
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it into place if the block succeeds.

    The temporary name ends with the same suffix as ``path`` (``.png``, ``.wav``, ...).
    On an exception the temporary file is removed and the target is left untouched.

    Example::

        with atomic_path(run_dir / "model.pt") as tmp:
            torch.save(state, tmp)
    """
    path = Path(path)
    if not overwrite:
        refuse_overwrite(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}"
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary file {tmp} for {path}")
        _fsync_file(tmp)
        _publish(tmp, path, overwrite=overwrite)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(
    path: str | os.PathLike[str], data: bytes, *, overwrite: bool = True
) -> Path:
    """Write ``data`` to ``path`` atomically (parent directories are created)."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(data)  # atomic_path fsyncs before the rename
    return path


def atomic_write_text(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", overwrite: bool = True
) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8 by default)."""
    return atomic_write_bytes(path, text.encode(encoding), overwrite=overwrite)


def atomic_write_json(
    path: str | os.PathLike[str],
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    allow_nan: bool = False,
    overwrite: bool = True,
) -> Path:
    """Write ``obj`` as JSON atomically, with a trailing newline.

    ``allow_nan`` is False by default: ``NaN``/``Infinity`` are not JSON, and browsers'
    ``JSON.parse`` (the HTML reports) rejects them. A non-finite float therefore raises
    ``ValueError`` here; convert it to ``None`` first or pass ``allow_nan=True``.
    """
    try:
        text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan)
    except ValueError as e:
        raise ValueError(
            f"cannot write {path} as strict JSON ({e}); replace NaN/inf with None "
            "or pass allow_nan=True"
        ) from e
    return atomic_write_text(path, text + "\n", overwrite=overwrite)
