"""Build the Lambda artifacts: one self-contained code package per function.

Each function's zip holds the project's code (``functions/``, the committed model artifact) *and* the
third-party packages that function imports, installed as manylinux x86_64 wheels for CPython 3.12 (the
Lambda runtime). Nothing relies on a Lambda layer being applied: LocalStack's community image never
applies layers (only a Pro hook copies them into a function's environment), so a layer-based artifact
deploys there and then fails every invocation with ``Runtime.ImportModuleError``. The same zips serve
the embedded emulator (which runs functions on a CPython 3.12 of its own), LocalStack and AWS.

Which packages a function gets is declared once, in ``pyproject.toml`` under ``[tool.iotpipe.bundles]``
(names of ``project.dependencies``; versions from there and ``constraints.txt``), so the query API does
not carry numpy and the processor does not carry FastAPI. ``tests/unit/test_build_bundles.py`` imports
every handler from its own zip alone, so a missing package fails the build's test, not an invocation.

The zips are reproducible (sorted entries, fixed timestamps and modes): an unchanged function uploads
to the same S3 key (``cloudformation package`` de-duplicates by MD5) and a re-deploy does not replace
it. Third-party installs are cached under ``build/deps/`` by a hash of their requirements.

What ships is only what ``functions/`` contains (plus the model artifact), and nothing in ``functions/``
is test-only: fakes, event factories, the fault hook, the demo app and seed data live in ``testkit/``,
which no production bundle contains (``tests/unit/test_build_bundles.py`` opens every zip to check).
``--test-hooks`` also builds ``processor-testhooks.zip``: the processor bundle plus ``testkit/``, for
test stacks only (``TestHooks=faults``, ``scripts/deploy.sh --test-hooks faults``).

    python scripts/build.py [--out build] [--force] [--test-hooks]   # one line per bundle, then JSON
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
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
# boto3/botocore come with the Lambda runtime (and with the emulators' function interpreters);
# shipping them again would only add ~25 MB per function.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "python_dateutil",
                    "six")
# AWS Lambda: 250 MB unzipped for code + layers, 50 MB for a zip uploaded directly (more via S3).
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Bundle:
    name: str
    requirements: tuple[str, ...]
    zip_path: Path
    unzipped_bytes: int
    zipped_bytes: int


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def bundle_requirements() -> dict[str, list[str]]:
    """Per bundle, the requirement specifiers (from ``project.dependencies``) it installs."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = {_norm(re.split(r"[<>=!~ \[;]", spec, maxsplit=1)[0]): spec
            for spec in pyproject["project"]["dependencies"]}
    bundles = pyproject["tool"]["iotpipe"]["bundles"]
    out: dict[str, list[str]] = {}
    for name, wanted in bundles.items():
        missing = [w for w in wanted if _norm(w) not in deps]
        if missing:
            raise SystemExit(f"build: bundle {name!r} names {missing}, which are not in project.dependencies")
        out[name] = [deps[_norm(w)] for w in wanted]
    return out


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def install_deps(out: Path, name: str, requirements: list[str], force: bool) -> Path:
    """pip-install a bundle's packages for python3.12 manylinux x86_64 into build/deps/NAME (cached)."""
    target = out / "deps" / name
    constraints = ROOT / "constraints.txt"
    digest = _digest(*PLATFORM_ARGS, *requirements, constraints.read_text() if constraints.exists() else "")
    stamp = out / "deps" / f"{name}.sha256"
    if not force and stamp.exists() and stamp.read_text() == digest and target.is_dir():
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    print(f"build: {name}: installing {', '.join(requirements)} for python3.12 manylinux x86_64 ...",
          file=sys.stderr, flush=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
         "--target", str(target), *PLATFORM_ARGS,
         *(["--constraint", str(constraints)] if constraints.exists() else []), *requirements],
        check=True,
    )
    for provided in RUNTIME_PROVIDED:
        for path in target.glob(f"{provided}"):
            shutil.rmtree(path, ignore_errors=True)
        for path in target.glob(f"{provided}-*.dist-info"):
            shutil.rmtree(path, ignore_errors=True)
    for cache in target.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    stamp.write_text(digest)
    return target


TEST_HOOKS_BUNDLE = "processor-testhooks"  # the processor bundle plus testkit/ (test stacks only)


def _package_files(package: str) -> list[tuple[str, Path]]:
    """(archive name, source) for every file of a top-level package folder, bytecode left out."""
    files: list[tuple[str, Path]] = []
    for path in sorted((ROOT / package).rglob("*")):
        rel = path.relative_to(ROOT)
        if path.is_dir() or "__pycache__" in rel.parts or path.suffix == ".pyc":
            continue
        files.append((rel.as_posix(), path))
    return files


def _code_files() -> list[tuple[str, Path]]:
    """(archive name, source) for the project's own code and the committed model artifacts: exactly
    what ``functions/`` contains, nothing else of the repository."""
    files = _package_files("functions")
    # The committed model artifact travels inside the bundle so the detector needs no download.
    for artifact in sorted((ROOT / "model" / "artifacts").glob("*.json")):
        files.append((f"functions/detector/artifacts/{artifact.name}", artifact))
    return files


def write_zip(zip_path: Path, entries: list[tuple[str, Path]]) -> tuple[int, int]:
    """A reproducible zip: sorted names, fixed timestamps, 0644/0755 modes. Returns (unzipped, zipped)."""
    tmp = zip_path.with_name(f".{zip_path.name}.{os.getpid()}.tmp")
    unzipped = 0
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for arcname, path in sorted(entries):
            info = zipfile.ZipInfo(arcname, date_time=ZIP_EPOCH)
            mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = path.read_bytes()
            unzipped += len(data)
            zf.writestr(info, data)
    tmp.replace(zip_path)
    return unzipped, zip_path.stat().st_size


def build_bundle(out: Path, name: str, requirements: list[str], force: bool,
                 zip_name: str | None = None, extra: list[tuple[str, Path]] | None = None) -> Bundle:
    deps = install_deps(out, name, requirements, force)
    entries = _code_files() + (extra or [])
    names = {arc for arc, _ in entries}
    for path in sorted(deps.rglob("*")):
        if path.is_file():
            arc = path.relative_to(deps).as_posix()
            if arc.split("/", 1)[0] in ("functions", "testkit") or arc in names:
                raise SystemExit(f"build: {name}: third-party file {arc} would shadow the project's code")
            entries.append((arc, path))
    zip_name = zip_name or name
    zip_path = out / f"{zip_name}.zip"
    # Rebuild the zip only when an input changed: the fingerprint covers names, sizes and contents' mtimes.
    fingerprint = _digest(*(f"{arc}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for arc, p in sorted(entries)))
    stamp = out / f"{zip_name}.zip.sha256"
    if not force and zip_path.exists() and stamp.exists() and stamp.read_text().split()[0] == fingerprint:
        unzipped = int(stamp.read_text().split()[1])
        zipped = zip_path.stat().st_size
    else:
        unzipped, zipped = write_zip(zip_path, entries)
        stamp.write_text(f"{fingerprint} {unzipped}")
    if unzipped > LAMBDA_UNZIPPED_LIMIT:
        raise SystemExit(f"build: {name}: {unzipped / 2**20:.1f} MiB unzipped exceeds Lambda's 250 MB limit")
    return Bundle(zip_name, tuple(requirements), zip_path, unzipped, zipped)


def build_test_hooks(out: Path, force: bool = False) -> Bundle:
    """``processor-testhooks.zip``: the processor bundle plus ``testkit/`` (the fault handler and hook).

    Only test stacks use it (``TestHooks=faults`` selects ``testkit.fault_handler.handler``); a separate
    file, so the production ``processor.zip`` never contains test code whatever was built before.
    """
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        requirements = bundle_requirements()["processor"]
        return build_bundle(out, "processor", requirements, force, zip_name=TEST_HOOKS_BUNDLE,
                            extra=_package_files("testkit"))


def build(out: Path, force: bool = False) -> list[Bundle]:
    out.mkdir(parents=True, exist_ok=True)
    # Deploys and tests may build at the same time (parallel test sessions, a deploy while `make test`
    # runs): one build at a time per folder, the others wait and then find it up to date.
    with open(out / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        bundles = [build_bundle(out, name, reqs, force) for name, reqs in bundle_requirements().items()]
    # Earlier builds made build/layer and build/functions; leave nothing a deploy could pick up by mistake.
    for stale in ("layer", "layer.sha256", "functions"):
        path = out / stale
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    return bundles


def main(argv: list[str] | None = None) -> int:
    # argparse, not typer (the other tools' CLI framework): this script is standard library only, so that
    # scripts/deploy.sh can run it with any Python 3.12 on PATH when the project's .venv is absent.
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build")
    parser.add_argument("--force", action="store_true", help="reinstall the packages even if up to date")
    parser.add_argument("--test-hooks", action="store_true",
                        help=f"also build {TEST_HOOKS_BUNDLE}.zip (processor + testkit, test stacks only)")
    args = parser.parse_args(argv)
    bundles = build(args.out, args.force)
    if args.test_hooks:
        bundles.append(build_test_hooks(args.out, args.force))
    for b in bundles:
        shown = b.zip_path.relative_to(ROOT) if b.zip_path.is_relative_to(ROOT) else b.zip_path
        print(f"build: {b.name}: {shown} {b.zipped_bytes / 2**20:.1f} MiB zipped, "
              f"{b.unzipped_bytes / 2**20:.1f} MiB unzipped "
              f"({100 * b.unzipped_bytes / LAMBDA_UNZIPPED_LIMIT:.0f} % of Lambda's 250 MB)", file=sys.stderr)
    print(json.dumps({f"{b.name}_{k}": v for b in bundles
                      for k, v in (("zip_bytes", b.zipped_bytes), ("unzipped_bytes", b.unzipped_bytes))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
