"""Files depthscope writes: atomic text writes and strict JSON (inf/nan travel as strings)."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

from depthscope._errors import DepthscopeError

# JSON has no inf/nan; strict readers (browsers) reject them, so they travel as strings.
SPECIAL_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


_FILE_MODE = 0o666


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that readers see the old file or the new one, never half."""
    target = Path(target)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise DepthscopeError(f"cannot write {target}: directory {parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    except OSError as err:
        raise DepthscopeError(f"cannot write {target}: {err.strerror}") from err
    try:
        os.chmod(tmp, _FILE_MODE & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise DepthscopeError(f"cannot write {target}: {err.strerror}") from err


def atomic_write_text(target: Path, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(target, text.encode("utf-8"))


def encode_json(obj: Any) -> Any:
    """``obj`` with numpy/torch scalars and arrays made plain, and non-finite floats as strings."""
    if hasattr(obj, "tolist") and not isinstance(obj, (list, tuple, dict, str)):
        obj = obj.tolist()  # numpy arrays and scalars, torch tensors
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
        return obj
    if isinstance(obj, dict):
        return {str(k): encode_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [encode_json(v) for v in obj]
    return obj
