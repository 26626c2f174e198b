"""Storage through fsspec: every path in the library is a local path or a URI (gs://, s3://, file://, memory://).

gcsfs honours ``STORAGE_EMULATOR_HOST`` (a local GCS emulator); we also switch off its slow
hierarchical-namespace probe unless the user chose otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Iterator

import fsspec

from landslide.errors import StorageError

if TYPE_CHECKING:
    import pandas as pd

# gcsfs probes every bucket for hierarchical namespaces over gRPC; against an emulator or without
# that API each probe waits ~60 s. Users who need HNS can set the variable themselves.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
# gcsfs logs a full traceback when it runs out of retries; the StorageError raised here already names the
# URI and the cause, so keep its logger quiet unless the user configured it.
if logging.getLogger("gcsfs").level == logging.NOTSET:
    logging.getLogger("gcsfs").setLevel(logging.CRITICAL)


def is_remote(uri: str) -> bool:
    """True for URIs with a protocol other than file://."""
    return "://" in uri and not uri.startswith("file://")


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and in-filesystem path for ``uri``."""
    try:
        fs, path = fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise StorageError(f"{uri}: unsupported storage URI ({exc})") from exc
    return fs, path


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URI."""
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def resolve(path: str, relative_to: str) -> str:
    """Resolve ``path`` against the folder ``relative_to`` unless it is absolute or a URI."""
    if "://" in path or os.path.isabs(path):
        return path
    return join(relative_to, path)


def parent(uri: str) -> str:
    """The folder holding ``uri``."""
    if is_remote(uri):
        return posixpath.dirname(uri.rstrip("/"))
    return os.path.dirname(os.path.abspath(uri))


def _wrap(uri: str, exc: Exception) -> StorageError:
    if isinstance(exc, FileNotFoundError):
        return StorageError(f"{uri}: not found")
    if isinstance(exc, PermissionError):
        return StorageError(f"{uri}: permission denied")
    detail = (str(exc).strip().splitlines() or [""])[0][:300]
    return StorageError(f"{uri}: cannot access storage ({type(exc).__name__}: {detail})")


def _write_error(uri: str, exc: OSError) -> StorageError:
    """A local write failure in words: which part of the path is in the way, or what the system said."""
    parent = os.path.dirname(os.path.abspath(uri))
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if parent and not os.path.isdir(parent):
        return StorageError(f"{uri}: cannot write here: {parent} is a file, not a folder")
    if os.path.isdir(uri):
        return StorageError(f"{uri}: cannot write here: it is a folder")
    if isinstance(exc, PermissionError):
        return StorageError(f"{uri}: permission denied")
    return StorageError(f"{uri}: cannot write ({exc.strerror or type(exc).__name__})")


def read_bytes(uri: str, max_bytes: int | None = None) -> bytes:
    """Read a whole object, refusing objects larger than ``max_bytes``."""
    fs, path = filesystem(uri)
    try:
        if max_bytes is not None:
            size = fs.size(path)
            if size is not None and size > max_bytes:
                raise StorageError(f"{uri}: {size} bytes exceeds the limit of {max_bytes} bytes")
        return fs.cat_file(path)
    except StorageError:
        raise
    except Exception as exc:  # fsspec backends raise many types; name the URI in all of them
        raise _wrap(uri, exc) from exc


def _call(uri: str, method: str, **kwargs: Any) -> Any:
    """Call a filesystem method on ``uri``'s path; any backend error becomes a StorageError naming the URI."""
    fs, path = filesystem(uri)
    try:
        return getattr(fs, method)(path, **kwargs)
    except Exception as exc:
        raise _wrap(uri, exc) from exc


def exists(uri: str) -> bool:
    """True if ``uri`` exists; storage errors other than absence are raised."""
    return _call(uri, "exists")


def remove(uri: str) -> None:
    """Delete an object (a missing one is fine)."""
    if exists(uri):
        _call(uri, "rm")


def check_writable(folder: str) -> None:
    """Write and delete a small probe object, so an unreachable or read-only destination fails at once."""
    probe = join(folder, ".landslide-write-probe")
    write_bytes(probe, b"ok")
    remove(probe)


def size(uri: str) -> int:
    """Size of an object in bytes."""
    return int(_call(uri, "size"))


def isdir(uri: str) -> bool:
    """True if ``uri`` is a folder (or prefix)."""
    return _call(uri, "isdir")


def makedirs(uri: str) -> None:
    """Create a folder (a no-op on object stores)."""
    _call(uri, "makedirs", exist_ok=True)


def _into_place(uri: str, fill) -> None:
    """A local file written whole or not at all: ``fill(tmp)`` makes a temporary file beside the target, which
    then replaces it; StorageError naming ``uri`` (and no temporary left) when that fails."""
    target = uri[len("file://"):] if uri.startswith("file://") else uri
    tmp = f"{target}.tmp-{os.getpid()}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
        fill(tmp)
        os.replace(tmp, target)
    except OSError as exc:  # a parent that is a file, a folder in the way, no space, read-only, ...
        if os.path.exists(tmp):
            os.remove(tmp)
        raise _write_error(uri, exc) from None


def write_bytes(uri: str, data: bytes) -> None:
    """Write an object atomically where the backend allows it (local: temp file + rename)."""
    if not is_remote(uri):
        def fill(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                fh.write(data)

        _into_place(uri, fill)
        return
    fs, path = filesystem(uri)
    try:
        fs.pipe_file(path, data)
    except Exception as exc:
        raise _wrap(uri, exc) from exc


def put_file(local_path: str, uri: str) -> None:
    """Put a finished local file at ``uri``, whole or not at all: moved into place locally (as
    :func:`write_bytes` writes), streamed up in 8 MiB pieces to object storage; the local file is gone
    afterwards. StorageError naming ``uri`` when it cannot be written."""
    import shutil

    if not is_remote(uri):
        _into_place(uri, lambda tmp: shutil.move(local_path, tmp))
        return
    fs, path = filesystem(uri)
    try:
        with open(local_path, "rb") as src, fs.open(path, "wb") as dst:
            shutil.copyfileobj(src, dst, 8 << 20)
    except Exception as exc:
        raise _wrap(uri, exc) from exc
    os.remove(local_path)


def write_text(uri: str, text: str) -> None:
    """Write UTF-8 text."""
    write_bytes(uri, text.encode("utf-8"))


def read_text(uri: str) -> str:
    """Read UTF-8 text."""
    return read_bytes(uri).decode("utf-8")


def write_json(uri: str, obj: Any) -> None:
    """Write JSON, pretty-printed and key-sorted so outputs diff cleanly."""
    write_text(uri, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(uri: str) -> Any:
    """Read JSON, naming the file when it is malformed."""
    text = read_text(uri)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StorageError(f"{uri}: invalid JSON ({exc})") from exc


def read_table(uri: str, what: str = "table") -> "pd.DataFrame":
    """A CSV (by suffix) or Parquet table; a file that is not one is a DataError naming ``what`` it should
    have been."""
    import io

    import pandas as pd

    from landslide.errors import DataError

    try:
        if uri.lower().endswith(".csv"):
            with open_uri(uri) as fh:
                return pd.read_csv(fh)
        return pd.read_parquet(io.BytesIO(read_bytes(uri)))
    except StorageError:
        raise
    except Exception as exc:
        raise DataError(f"{uri}: not a readable {what} ({type(exc).__name__}: {exc})") from None


def write_table(frame: "pd.DataFrame", uri: str, fmt: str | None = None) -> None:
    """Write a table as Parquet (``fmt="parquet"``, or a ``.parquet``/``.pq`` URI) or else CSV, in one object."""
    import io

    if fmt == "parquet" or (fmt is None and uri.lower().endswith((".parquet", ".pq"))):
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        write_bytes(uri, buf.getvalue())
    else:
        write_text(uri, frame.to_csv(index=False))


@contextmanager
def open_uri(uri: str, mode: str = "rb") -> Iterator[IO[Any]]:
    """Open a URI like ``open``; errors name the URI."""
    fs, path = filesystem(uri)
    try:
        fh = fs.open(path, mode)
    except Exception as exc:
        raise _wrap(uri, exc) from exc
    with fh:
        yield fh


def list_files(uri: str, suffixes: tuple[str, ...] | None = None) -> list[str]:
    """All files below a folder/prefix, as URIs in the same style as ``uri``, sorted."""
    fs, path = filesystem(uri)
    try:
        found = fs.find(path)
    except Exception as exc:
        raise _wrap(uri, exc) from exc
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    out = []
    for item in sorted(found):
        if suffixes and not item.lower().endswith(suffixes):
            continue
        out.append(item if protocol in ("file", "local") else f"{protocol}://{item}")
    return out
