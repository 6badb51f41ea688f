"""A study kept between pytest runs (``--xai-study-cache``): one file per study, read back
only when it is whole and holds nothing but a study.

The folder lives in the user's project tree, where any file can land (a checkout, a copy, a
colleague's archive), so a kept file is data from outside:

* it starts with a format line and the sha256 of the pickle that follows: a truncated or
  altered file, or one of another format, is not read;
* the pickle is read by an unpickler that builds only what a study holds (the package's own
  dataclasses, enums and reason strings, numpy arrays and scalars, torch tensors read
  ``weights_only``, a few containers): a file that names anything else (``os.system``, a
  function of the package) is refused before it runs;
* what it gives must be a :class:`~xai_checks.study.StudyResult`.

Every refusal says why, so the caller can tell the user that the study is computed again.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import pickle
from pathlib import Path
from typing import Any

__all__ = ["FORMAT_LINE", "read_kept_study", "write_kept_study"]

#: the first line of a kept study; a new layout of the file changes it
FORMAT_LINE = b"xai-checks kept study 1\n"
_DIGEST_LEN = 64  # hex sha256, then a newline, then the pickle

#: globals a study's pickle may name besides the package's own classes
_ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("builtins", "range"),
        ("builtins", "bytearray"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("collections", "deque"),
        ("collections", "Counter"),
        ("pathlib", "PosixPath"),
        ("pathlib", "PurePosixPath"),
        ("pathlib", "WindowsPath"),
        ("pathlib", "PureWindowsPath"),
        ("pathlib._local", "PosixPath"),
        ("pathlib._local", "PurePosixPath"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("torch", "Size"),
        ("torch", "device"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch.torch_version", "TorchVersion"),
    }
)


class _Refused(pickle.UnpicklingError):
    """A global that a kept study never holds."""


def _storage_from_bytes(data: bytes) -> Any:
    """A tensor's storage, read as torch reads weights: no code runs from the bytes."""
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def _own_class(obj: Any) -> bool:
    """The package's data classes: dataclasses, enums and reason strings (no behaviour runs
    when pickle builds them)."""
    return isinstance(obj, type) and (
        dataclasses.is_dataclass(obj) or issubclass(obj, enum.Enum | str)
    )


class _StudyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _storage_from_bytes
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "numpy.dtypes" and "." not in name:  # a dtype's class, nothing else
            import numpy as np

            found = getattr(np.dtypes, name, None)
            if isinstance(found, type) and issubclass(found, np.dtype):
                return found
        if module == "torch":
            import torch

            found = getattr(torch, name, None)
            if isinstance(found, torch.dtype):
                return found
        if module == "xai_checks" or module.startswith("xai_checks."):
            found = super().find_class(module, name)
            if _own_class(found) and found.__module__ == module:  # defined there, not imported
                return found
        raise _Refused(f"it names {module}.{name}, which a study never holds")


def read_kept_study(path: Path) -> tuple[Any, str | None]:
    """``(study, None)``, or ``(None, why)`` when ``path`` holds no usable study (``why`` is
    ``None`` when there is simply no file yet)."""
    from xai_checks.study import StudyResult

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"it cannot be read ({exc.strerror or exc})"
    if not data.startswith(FORMAT_LINE):
        return None, "it is not a study kept by this version of xai-checks"
    head = len(FORMAT_LINE)
    digest, body = data[head : head + _DIGEST_LEN], data[head + _DIGEST_LEN + 1 :]
    if hashlib.sha256(body).hexdigest().encode() != digest:
        return None, "it is truncated or altered (its checksum does not match)"
    try:
        study = _StudyUnpickler(io.BytesIO(body)).load()
    except _Refused as exc:
        return None, f"it was not loaded: {exc}"
    except Exception as exc:  # a class that changed shape, or a tensor torch will not read
        return None, f"it cannot be read ({type(exc).__name__}: {exc})"
    if not isinstance(study, StudyResult):
        return None, f"it holds a {type(study).__name__}, not a study"
    return study, None


def write_kept_study(path: Path, study: Any) -> str | None:
    """Keep ``study`` at ``path`` (atomically); the reason when it cannot be kept."""
    from xai_checks.cache import atomic_write

    body = pickle.dumps(study)
    digest = hashlib.sha256(body).hexdigest().encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            handle.write(FORMAT_LINE + digest + b"\n" + body)
    except OSError as exc:
        blocking = next((p for p in (path.parent, *path.parent.parents) if p.is_file()), None)
        if blocking is not None:
            return f"{blocking} is a file, not a folder"
        return exc.strerror or str(exc)
    return None
