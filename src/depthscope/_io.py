"""Files depthscope writes and reads: atomic writes (one file or a set), strict JSON (inf/nan travel
as strings), and JSON objects read back with errors that name the file and what is wrong."""

from __future__ import annotations

import errno
import json
import math
import os
import secrets
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from depthscope._errors import DepthscopeError

# JSON has no inf/nan; strict readers (browsers) reject them, so they travel as strings.
SPECIAL_FLOATS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


# Mode asked for when creating a file; the kernel removes the umask's bits, as for open(path, "w").
# The umask is never read by changing it: os.umask is process-wide, so even a momentary change
# gives files that other threads create meanwhile the wrong permissions.
_FILE_MODE = 0o666
# Random characters in a temporary name, and tries before giving up on finding a free name.
_TMP_NAME_BYTES = 8
_TMP_NAME_TRIES = 100
# depthscope's files nest a few levels; deeper JSON is refused before code that walks it
# recursively (decoding, encoding) can hit Python's recursion limit.
MAX_JSON_DEPTH = 64


def _parent(target: Path) -> Path:
    return target.parent if str(target.parent) else Path(".")


def _create_temp(parent: Path, stem: str) -> tuple[int, Path]:
    """An exclusive new file ``.{stem}.XXXX.tmp`` in ``parent``, created with the umask applied."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(_TMP_NAME_TRIES):
        path = parent / f".{stem}.{secrets.token_hex(_TMP_NAME_BYTES)}.tmp"
        try:
            return os.open(path, flags, _FILE_MODE), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temporary name in {parent}")


def _stage(target: Path, data: bytes) -> Path:
    """Write ``data`` to a new temporary file beside ``target`` (flushed to disk); return its path."""
    parent = _parent(target)
    if not parent.is_dir():
        raise DepthscopeError(f"cannot write {target}: directory {parent} does not exist")
    try:
        fd, tmp = _create_temp(parent, target.name)
    except OSError as err:
        raise DepthscopeError(f"cannot write {target}: {err.strerror}") from err
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise DepthscopeError(f"cannot write {target}: {err.strerror}") from err
        raise
    return tmp


def atomic_write_bytes(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` so that readers see the old file or the new one, never half."""
    atomic_write_files({Path(target): data})


def atomic_write_text(target: Path, text: str) -> None:
    """`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(target, text.encode("utf-8"))


@contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) for the few renames of a commit; deliver it right after.

    Only the main thread can install signal handlers, and only the main thread receives SIGINT.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGINT) is None:  # a handler not installed from Python: leave it be
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)  # the restored handler acts on it as it would have


def _second_name(target: Path) -> Path | None:
    """A hard link (or, without hard links, a copy) of the current ``target``; None if it does not exist."""
    if not os.path.lexists(target):
        return None
    if target.is_dir():
        raise IsADirectoryError(errno.EISDIR, "it is a directory", str(target))
    for _ in range(_TMP_NAME_TRIES):
        backup = _parent(target) / f".{target.name}.{secrets.token_hex(_TMP_NAME_BYTES)}.old"
        try:
            os.link(target, backup)
            return backup
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links
            break
    fd, backup = _create_temp(_parent(target), target.name + ".old")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(target.read_bytes())
    except BaseException:
        backup.unlink(missing_ok=True)
        raise
    return backup


def atomic_write_files(files: Mapping[Path, bytes]) -> None:
    """Replace several files together: afterwards all hold the new contents, or all the old ones.

    A pair such as ``results.json`` and ``atlas.html`` must never be left half old and half new.
    POSIX renames one file atomically, not several, so the set is written in two phases:

    1. stage: every new content goes to a temporary file beside its target, flushed to disk. An
       error or Ctrl-C here removes the temporary files and leaves the targets untouched.
    2. commit: each current target gets a second name (a hard link), then each temporary file is
       renamed over its target, with Ctrl-C held back until the renames are done. If a rename
       fails, the targets already replaced are put back from their second names (a target that
       did not exist before is removed), so the old set is what remains.

    Only a crash of the machine during the few renames can split the set; readers that must know
    can compare digests (the atlas records the digest of the results file it shows). Files are
    created with the process umask applied, like ``open(path, "w")``.
    """
    targets = [Path(t) for t in files]
    staged: dict[Path, Path] = {}
    backups: dict[Path, Path | None] = {}
    done: list[Path] = []
    current = targets[0] if targets else Path(".")
    try:
        for target in targets:
            staged[target] = _stage(target, files[target])
        with _interrupts_deferred():
            try:
                for current in targets if len(targets) > 1 else ():  # one file needs no rollback
                    backups[current] = _second_name(current)
                for current in targets:
                    os.replace(staged[current], current)
                    done.append(current)
            except BaseException:
                for target in reversed(done):
                    old = backups.pop(target, None)
                    if old is None:
                        target.unlink(missing_ok=True)
                    else:
                        os.replace(old, target)
                done.clear()
                raise
    except OSError as err:
        raise DepthscopeError(f"cannot write {current}: {err.strerror}") from err
    finally:
        for target, tmp in staged.items():
            if target not in done:
                tmp.unlink(missing_ok=True)
        for old in backups.values():
            if old is not None:
                old.unlink(missing_ok=True)


def check_writable_dir(folder: Path) -> None:
    """Raise `DepthscopeError` unless a file can be created in ``folder`` (it is created if missing).

    Creating and removing a real file asks the file system itself, so read-only mounts, ACLs and
    the super-user's rights all answer truthfully (``os.access`` does not for all of them).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DepthscopeError(f"cannot create {folder}: {err.strerror}") from err
    try:
        fd, probe = _create_temp(folder, "write-check")
    except OSError as err:
        raise DepthscopeError(f"cannot write in {folder}: {err.strerror}") from err
    os.close(fd)
    probe.unlink(missing_ok=True)


def _nesting_depth(obj: Any) -> int:
    """How many arrays/objects deep ``obj`` nests (iterative: safe on any depth)."""
    deepest, stack = 0, [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
        else:
            continue
        deepest = max(deepest, depth + 1)
    return deepest


_JSON_TYPE_NAMES = {
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def read_json_object(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The JSON object in file ``path``; any other content is a `DepthscopeError` naming the file.

    ``what`` names the kind of file in messages ("a depthscope report").
    """
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise DepthscopeError(f"cannot read {path}: {err.strerror}") from err
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        byte = f"byte {err.start} is 0x{data[err.start]:02x}"
        raise DepthscopeError(f"{path} is not {what}: not UTF-8 text ({byte})") from err
    too_deep = f"{path} is not {what}: JSON nested too deeply (more than {MAX_JSON_DEPTH} levels)"
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as err:
        raise DepthscopeError(f"{path} is not {what}: not JSON ({err})") from err
    except RecursionError as err:
        raise DepthscopeError(too_deep) from err
    if _nesting_depth(payload) > MAX_JSON_DEPTH:
        raise DepthscopeError(too_deep)
    if not isinstance(payload, dict):
        kind = _JSON_TYPE_NAMES.get(type(payload), type(payload).__name__)
        raise DepthscopeError(f"{path} is not {what}: its top level is {kind}, not an object")
    return payload


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
