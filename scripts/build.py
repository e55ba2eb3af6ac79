"""Build the Lambda artifacts: the function bundle and the dependency layer.

One artifact for every target: the layer holds manylinux x86_64 wheels for CPython 3.12 (the Lambda
runtime), and the embedded emulator runs functions on a CPython 3.12 of its own, so the same folders
serve ministack, LocalStack and AWS. The layer is rebuilt only when its requirements change (a hash
of them is stored beside it), so re-deploys take seconds.

    python scripts/build.py [--out build] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_ARGS = [
    "--platform", "manylinux2014_x86_64",
    "--platform", "manylinux_2_17_x86_64",
    "--platform", "manylinux_2_28_x86_64",
    "--python-version", "3.12",
    "--implementation", "cp",
    "--only-binary=:all:",
]
# boto3/botocore come with the Lambda runtime (and with the emulator's interpreter); shipping them
# again would only grow the layer.
LAYER_EXCLUDES = ("boto3", "botocore", "s3transfer", "jmespath")


def runtime_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def constraint_args() -> list[str]:
    constraints = ROOT / "constraints.txt"
    return ["--constraint", str(constraints)] if constraints.exists() else []


def build_layer(out: Path, force: bool) -> Path:
    layer = out / "layer"
    requirements = runtime_requirements()
    constraints = ROOT / "constraints.txt"
    digest = hashlib.sha256(
        ("\n".join(requirements) + (constraints.read_text() if constraints.exists() else "")).encode()
    ).hexdigest()
    stamp = out / "layer.sha256"
    if not force and stamp.exists() and stamp.read_text() == digest and (layer / "python").is_dir():
        print(f"layer: up to date ({layer})", file=sys.stderr)
        return layer
    shutil.rmtree(layer, ignore_errors=True)
    (layer / "python").mkdir(parents=True)
    print(f"layer: installing {len(requirements)} requirements for python3.12 manylinux x86_64 ...",
          file=sys.stderr)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-compile", "--target", str(layer / "python"), *PLATFORM_ARGS, *constraint_args(),
         *requirements],
        check=True,
    )
    for name in LAYER_EXCLUDES:
        for path in (layer / "python").glob(f"{name}*"):
            shutil.rmtree(path, ignore_errors=True)
    for cache in (layer / "python").rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    stamp.write_text(digest)
    size = sum(p.stat().st_size for p in layer.rglob("*") if p.is_file())
    print(f"layer: {size / 1e6:.1f} MB unzipped", file=sys.stderr)
    return layer


def build_functions(out: Path) -> Path:
    bundle = out / "functions"
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(
        ROOT / "functions", bundle / "functions",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "tests"),
    )
    # The committed model artifact travels inside the bundle so the detector needs no download.
    artifacts = sorted((ROOT / "model" / "artifacts").glob("*.json"))
    if artifacts:
        target = bundle / "functions" / "detector" / "artifacts"
        target.mkdir(parents=True, exist_ok=True)
        for artifact in artifacts:
            shutil.copy2(artifact, target / artifact.name)
    print(f"functions: bundle at {bundle} ({len(artifacts)} model artifact(s))", file=sys.stderr)
    return bundle


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    parser.add_argument("--force", action="store_true", help="rebuild the layer even if up to date")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    build_layer(args.out, args.force)
    build_functions(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
