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

Every bundle ships CPython 3.12 bytecode beside its sources (``__pycache__/X.cpython-312.pyc``, the
project's code and the vendored packages alike): the task root on Lambda is read-only, so without it
every cold start compiles every module it imports, and AWS bills that init time. The ``.pyc`` files are
unchecked-hash pycs (PEP 552: no source mtime inside, never re-validated against the source, which
cannot change in a deployed package), compiled by a CPython 3.12 (this interpreter if it is one, else
``PY312`` or the first ``python3.12`` found as ``make install`` finds it) in one fresh process per
folder, files in sorted order, with a fixed hash seed. marshal marks an object as shared (FLAG_REF)
when its reference count is above one, and that count depends on what the compiling process did
before, so the order and the process are fixed, not left to chance: the same inputs give the same
bytes (``tests/unit/test_build_bundles.py`` builds twice from clean and compares). The ``.py`` files
stay in the zip for tracebacks.

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
import functools
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
# Parts of installed packages a bundle leaves out, because merely having them costs init time. The api
# bundle: FastAPI checks every route's parameter and response types against pydantic.v1.BaseModel (to
# refuse v1 models, which it no longer supports), and that check imports all of pydantic.v1 at start,
# 20-40 ms of each cold start (bench/import_times.py --profile api). Nothing here uses a v1 model; without
# the package the check's ImportError branch answers "not a v1 model" at once.
PRUNED: dict[str, tuple[str, ...]] = {"api": ("pydantic/v1/",)}
# AWS Lambda: 250 MB unzipped for code + layers, 50 MB for a zip uploaded directly (more via S3).
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
LAMBDA_ZIPPED_LIMIT = 50 * 1024 * 1024
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


PY312_CANDIDATES = ("~/.pyenv/versions/3.12.*/bin/python3.12", "/usr/local/bin/python3.12",
                    "/usr/bin/python3.12", "python3.12")


def _is_cpython312(python: str) -> bool:
    check = "import sys; assert sys.implementation.name == 'cpython' and sys.version_info[:2] == (3, 12)"
    try:
        return subprocess.run([python, "-c", check], capture_output=True, timeout=30).returncode == 0
    except OSError:
        return False


@functools.cache
def python312() -> str:
    """The CPython 3.12 that compiles the bytecode: the Lambda runtime's version, so its magic number.

    Looked up as the Makefile looks up the venvs' interpreter (``PY312``, then pyenv's, then the
    system's), so a fresh clone builds with what ``make install`` used.
    """
    if sys.implementation.name == "cpython" and sys.version_info[:2] == (3, 12):
        return sys.executable
    candidates = [os.environ["PY312"]] if os.environ.get("PY312") else []
    for pattern in PY312_CANDIDATES:
        expanded = os.path.expanduser(pattern)
        candidates += sorted(str(p) for p in Path("/").glob(expanded.lstrip("/"))) if "*" in expanded \
            else [expanded]
    for candidate in candidates:
        if _is_cpython312(candidate):
            return candidate
    raise SystemExit("build: the bundles ship CPython 3.12 bytecode (the Lambda runtime's) and no Python "
                     "3.12 was found: run this script with one, or set PY312=/path/to/python3.12")


# Compiles every .py under a folder in sorted order, each with its path relative to the folder as its
# file name (no build path inside the bytes). Unchecked-hash pycs: the import system never stats the
# source nor hashes it again. Files that do not compile (a vendored package's Python 2 test data, say)
# are left as source only and counted.
_COMPILE_SCRIPT = """
import py_compile, sys
from pathlib import Path
root = Path(sys.argv[1])
failed = []
for path in sorted(root.rglob("*.py")):
    if "__pycache__" in path.parts:
        continue
    try:
        py_compile.compile(str(path), dfile=path.relative_to(root).as_posix(), doraise=True, optimize=0,
                           invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    except py_compile.PyCompileError:
        failed.append(path.relative_to(root).as_posix())
print("\\n".join(failed))
"""


def compile_bytecode(root: Path) -> list[str]:
    """Write ``__pycache__/X.cpython-312.pyc`` beside every .py under ``root``; the ones that failed."""
    for cache in root.rglob("__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)
    # A fresh interpreter per folder with a fixed hash seed and no site: its history before each file is
    # the same on every build, so are the reference counts marshal reads (see the module docstring).
    result = subprocess.run(
        [python312(), "-S", "-s", "-c", _COMPILE_SCRIPT, str(root)], capture_output=True, text=True,
        env={"PYTHONHASHSEED": "0", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}, check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"build: compiling {root} failed: {result.stderr.strip()[-2000:]}")
    return [line for line in result.stdout.splitlines() if line]


@functools.cache
def bytecode_tag() -> str:
    """What the bytecode depends on besides the sources: the compiling interpreter's exact version."""
    result = subprocess.run([python312(), "-c", "import sys; print(sys.version)"], capture_output=True,
                            text=True, check=True)
    return f"bytecode unchecked-hash {result.stdout.strip()}"


def install_deps(out: Path, name: str, requirements: list[str], force: bool) -> Path:
    """pip-install a bundle's packages for python3.12 manylinux x86_64 into build/deps/NAME (cached)."""
    target = out / "deps" / name
    constraints = ROOT / "constraints.txt"
    digest = _digest(*PLATFORM_ARGS, *requirements, constraints.read_text() if constraints.exists() else "")
    stamp = out / "deps" / f"{name}.sha256"
    if not force and stamp.exists() and stamp.read_text() == digest and target.is_dir():
        compile_deps(out, name, target, digest)
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
    stamp.write_text(digest)
    compile_deps(out, name, target, digest)
    return target


def compile_deps(out: Path, name: str, target: Path, installed: str) -> None:
    """Bytecode for a bundle's installed packages, redone only when they or the interpreter changed."""
    stamp = out / "deps" / f"{name}.pyc.sha256"
    digest = _digest(installed, bytecode_tag())
    if stamp.exists() and stamp.read_text() == digest:
        return
    failed = compile_bytecode(target)
    if failed:
        print(f"build: {name}: {len(failed)} vendored files do not compile for 3.12, shipped as source only: "
              f"{', '.join(failed[:5])}{' ...' if len(failed) > 5 else ''}", file=sys.stderr)
    stamp.write_text(digest)


def stage_code(out: Path, unit: str, entries: list[tuple[str, Path]]) -> list[tuple[str, Path]]:
    """Copy the project's files to ``out/code/UNIT`` and compile them there (never in the source tree).

    Re-staged only when a name, a content or the interpreter changed, so an unchanged tree keeps its
    files' mtimes and the zip is not rewritten. Returns (archive name, staged file), bytecode included.
    """
    folder = out / "code" / unit
    digest = _digest(bytecode_tag(), *(f"{arc}:{hashlib.sha256(path.read_bytes()).hexdigest()}"
                                      for arc, path in sorted(entries)))
    stamp = out / "code" / f"{unit}.sha256"
    if not (stamp.exists() and stamp.read_text() == digest and folder.is_dir()):
        shutil.rmtree(folder, ignore_errors=True)
        for arc, path in entries:
            (folder / arc).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, folder / arc)
            shutil.copymode(path, folder / arc)
        failed = compile_bytecode(folder)
        if failed:
            raise SystemExit(f"build: the project's {', '.join(failed)} do not compile for Python 3.12")
        stamp.write_text(digest)
    return [(path.relative_to(folder).as_posix(), path)
            for path in sorted(folder.rglob("*")) if path.is_file()]


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
    entries = stage_code(out, "functions", _code_files())
    if extra:
        entries += stage_code(out, zip_name or name, extra)
    names = {arc for arc, _ in entries}
    pruned = PRUNED.get(name, ())
    for path in sorted(deps.rglob("*")):
        if path.is_file():
            arc = path.relative_to(deps).as_posix()
            if arc.startswith(pruned):
                continue
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
    if zipped > LAMBDA_ZIPPED_LIMIT:
        # CloudFormation uploads through S3 (no 50 MB cap there), but a direct update-function-code has one.
        raise SystemExit(f"build: {name}: {zipped / 2**20:.1f} MiB zipped exceeds Lambda's 50 MB "
                         "direct upload")
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
              f"({100 * b.unzipped_bytes / LAMBDA_UNZIPPED_LIMIT:.0f} % of Lambda's 250 MB, "
              f"{100 * b.zipped_bytes / LAMBDA_ZIPPED_LIMIT:.0f} % of its 50 MB zipped)", file=sys.stderr)
    print(json.dumps({f"{b.name}_{k}": v for b in bundles
                      for k, v in (("zip_bytes", b.zipped_bytes), ("unzipped_bytes", b.unzipped_bytes))}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
