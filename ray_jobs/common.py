"""What the Ray entry points share: Ray storage from fsspec URIs, resource checks, one-line errors."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from typing import Callable

from landslide import storage
from landslide.errors import ConfigError, LandslideError

log = logging.getLogger(__name__)


def ray_storage(uri: str) -> tuple[str, object | None]:
    """(storage_path, storage_filesystem) for Ray from a local path or fsspec URI.

    Remote URIs go through the same fsspec filesystem the library uses (gcsfs honours
    ``STORAGE_EMULATOR_HOST`` and the user's credentials), wrapped for pyarrow, so Ray and the library
    always agree on where a run lives.
    """
    if not storage.is_remote(uri):
        return os.path.abspath(uri[len("file://"):] if uri.startswith("file://") else uri), None
    import pyarrow.fs

    fs, path = storage.filesystem(uri)
    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def connect(address: str | None):
    """``ray.init(address, log_to_driver=True)`` for a job's driver, with Ray's autoscaler modules imported first.

    Ray 2.52's log-printing thread imports ``ray.autoscaler`` when the first worker log line arrives; if the main
    thread is importing it at that moment, one of them fails with a circular ``ImportError`` and the job dies
    (ray-project/ray#63317, fixed after 2.52 by ray-project/ray#63410). Importing the chain here, before any log
    thread exists, closes the race.
    """
    import ray
    import ray.autoscaler.v2.utils  # noqa: F401  (see the docstring)

    return ray.init(address=address, log_to_driver=True)


TRAIN_FIX = ("lower ray.num_workers / ray.resources_per_worker, or set ray.wait_for_resources: true on an "
             "autoscaling cluster")


def check_resources(num_workers: int, per_worker: dict[str, float], wait: bool,
                    what: str = "ray: {n} worker(s)", fix: str = TRAIN_FIX) -> dict:
    """Fail fast when the cluster can never place the workers (unless it may autoscale: ``wait``)."""
    import ray

    total = ray.cluster_resources()
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    needed = {k: v * num_workers for k, v in per_worker.items() if v}
    short = {k: (v, total.get(k, 0.0)) for k, v in needed.items() if total.get(k, 0.0) < v}
    fits_one_node = any(all(node.get(k, 0.0) >= v for k, v in per_worker.items() if v) for node in nodes)
    if (short or not fits_one_node) and not wait:
        detail = ", ".join(f"{k}: need {need:g}, cluster has {have:g}" for k, (need, have) in short.items())
        if not detail:
            detail = f"no single node has {per_worker} for one worker"
        raise ConfigError(f"{what.format(n=num_workers)} x {per_worker} cannot be placed ({detail}); {fix}")
    return {"cluster": total, "needed": needed}


def job_parser(prog: str, description: str, config_help: str, set_example: str) -> argparse.ArgumentParser:
    """The arguments every Ray entry point takes: --config, --set, --address, --debug."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", required=True, help=config_help)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help=f"override a config value, e.g. --set {set_example} (repeatable)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray instance)")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


_REMOTE_ERROR = re.compile(r"^landslide\.errors\.(\w+): (.+)$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def landslide_error(exc: BaseException) -> LandslideError | None:
    """The LandslideError behind an exception from a Ray worker, or None.

    A task's error reaches the driver as a ``RayTaskError`` that is also an instance of the original class but
    whose text is the remote traceback; an actor that fails in ``__init__`` (a Ray Data actor loading a bad
    checkpoint) reaches it as ``ActorDiedError``, which keeps only that traceback as text. Either way the user
    should read the one line the library wrote, so this returns a fresh error of the same class with that line.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        if isinstance(cause, LandslideError):
            return type(cause)(*cause.args)
        if isinstance(current, LandslideError) and not hasattr(current, "cause"):
            return current
        current = current.__cause__ or (cause if isinstance(cause, BaseException) else None) or current.__context__
    current, found = exc, None
    for _ in range(8):  # the remote traceback's last "landslide.errors.X: message" line
        matches = _REMOTE_ERROR.findall(_ANSI.sub("", str(current)))
        if matches:
            found = matches[-1]
            break
        current = current.__cause__ or current.__context__
        if current is None:
            break
    if found is None:
        return None
    from landslide import errors

    cls = getattr(errors, found[0], None)
    return cls(found[1].strip()) if isinstance(cls, type) and issubclass(cls, LandslideError) else None


def run_main(body: Callable[[], int], debug: bool = False) -> int:
    """Run an entry point: a LandslideError, raised here or in a Ray worker, becomes one ``error:`` line and exit
    code 2."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return body()
    except KeyboardInterrupt:
        print("interrupted: finished work is kept in storage; submit the same config again to resume",
              file=sys.stderr)
        return 130
    except Exception as exc:
        error = landslide_error(exc)
        if error is None or debug:
            raise
        print(f"error: {error}", file=sys.stderr, flush=True)
        return 2
