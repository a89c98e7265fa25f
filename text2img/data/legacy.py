"""Reading the StackGAN-era pickles safely: a restricted unpickler and one error type.

The real text-to-image releases (StackGAN, AttnGAN, DF-GAN) ship ``filenames.pickle``,
``class_info.pickle`` and ``char-CNN-RNN-embeddings.pickle`` written by Python 2. Two
things follow:

* Python 2 ``str`` objects are byte strings, and a numpy array's raw buffer is one of
  them; ``pickle.load`` must decode them with ``encoding="latin1"`` (a byte-for-byte
  mapping) or it fails with ``UnicodeDecodeError``. numpy accepts the latin1 ``str``
  back as the array buffer.
* A pickle can name any importable callable and call it (``os.system``...). These files
  are downloaded from third parties, so they are untrusted input. :class:`_PlainDataUnpickler`
  resolves only the four globals plain numpy arrays need; every other global is refused
  before anything is called. Lists, dicts, tuples, strings, bytes, numbers, booleans and
  ``None`` need no global at all.

Every failure (missing, truncated, corrupt, refused, wrong content) is one
:class:`DatasetError` whose message starts with the offending path.
"""

from __future__ import annotations

import codecs
import importlib
import io
import os
import pickle
from pathlib import Path
from typing import Any

__all__ = ["ALLOWED_GLOBALS", "DatasetError", "load_legacy_pickle", "loads_legacy_pickle"]


class DatasetError(ValueError):
    """A dataset file or folder is missing or unusable; the message names the path."""


# (module, name) pairs a pickle of numpy arrays refers to. numpy 1.x writes
# numpy.core.multiarray._reconstruct, numpy >= 2 writes numpy._core.multiarray._reconstruct;
# both also name the dtype and ndarray classes (the dtype's state and the array's buffer
# are restored by their own __setstate__, not by a named function). numpy scalars (a class
# id stored as np.int64) come through multiarray.scalar, and Python-3 bytes written at
# protocol <= 2 through _codecs.encode (str -> bytes): plain data too, nothing runs.
_MULTIARRAY = ("_reconstruct", "scalar")
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    *((m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray") for n in _MULTIARRAY),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
})


class _Refused(pickle.UnpicklingError):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


def _numpy_global(module: str, name: str) -> Any:
    import numpy as np

    if module == "_codecs":
        return codecs.encode
    if name in _MULTIARRAY:
        # Resolve the numpy-1 spelling to wherever the installed numpy keeps it
        # (importing numpy.core on numpy >= 2 would only raise a deprecation warning).
        for candidate in ("numpy._core.multiarray", "numpy.core.multiarray"):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise _Refused(module, name)
    return getattr(np, name)


class _PlainDataUnpickler(pickle.Unpickler):
    """An Unpickler whose only reachable globals are :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        if (module, name) in ALLOWED_GLOBALS:
            return _numpy_global(module, name)
        raise _Refused(module, name)

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle API
        raise pickle.UnpicklingError("persistent ids are not supported")


def loads_legacy_pickle(data: bytes, where: str | os.PathLike[str] = "<bytes>") -> Any:
    """Unpickle ``data`` (Python 2 or 3) admitting only plain data and numpy arrays.

    ``where`` names the source in error messages.
    """
    try:
        return _PlainDataUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _Refused as err:
        raise DatasetError(
            f"{where}: refusing to load global {err.qualname!r}: legacy dataset pickles may "
            "only hold numpy arrays, lists, dicts, strings and numbers (nothing was run)"
        ) from None
    except RecursionError:
        raise DatasetError(f"{where}: pickle is nested too deeply to load") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, OverflowError, MemoryError, UnicodeError) as err:
        # Truncation shows up as UnpicklingError("pickle data was truncated") or EOFError;
        # flipped bytes as any of the others (a bad opcode, a wrong buffer size...).
        raise DatasetError(
            f"{where}: pickle is truncated or corrupt ({type(err).__name__}: {err})"
        ) from None


def load_legacy_pickle(path: str | os.PathLike[str], what: str = "pickle") -> Any:
    """Load a dataset pickle file through the restricted unpickler.

    ``what`` describes the file for the "not found" message, e.g. ``"filenames pickle"``
    gives ``DatasetError: <path>: filenames pickle not found``.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise DatasetError(f"{path}: expected a {what} file, found a folder") from None
    except OSError as err:
        raise DatasetError(f"{path}: cannot read {what} ({err.strerror or err})") from None
    if not data:
        raise DatasetError(f"{path}: {what} is empty (truncated or corrupt)")
    return loads_legacy_pickle(data, path)
