"""The function code packages are self-contained: each handler imports from its own zip alone.

LocalStack's community image does not apply Lambda layers, so a package that leans on one fails every
invocation there with ``Runtime.ImportModuleError``. These tests import each handler the way the Lambda
runtime does: a bare CPython 3.12 (``-S``: no site-packages) whose only extra modules are the ones the
python3.12 runtime provides (boto3 and its dependencies), with the unpacked zip as the task root.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import build  # noqa: E402

HANDLERS = {
    "processor": ["functions.processor.handler", "functions.detector.anomaly_detector"],
    "ingest": ["functions.ingest.handler"],
    "api": ["functions.api.lambda_handler"],
    # duckdb is imported inside compact_files; importing it here proves the wheel in the zip loads
    "compactor": ["functions.compactor.handler", "duckdb"],
}
# Modules a handler's start must not load (init time billed on every cold start): pydantic.v1 is left out
# of the api bundle (build.PRUNED) and boto3 is loaded by the adapters at first use.
NOT_AT_START = {"api": ("pydantic.v1", "boto3"), "ingest": ("boto3",)}
# Test-only code: the testkit and tests packages, and anything named like test furniture.
TEST_ONLY_PACKAGES = ("testkit/", "tests/")
TEST_ONLY_MODULE = re.compile(
    r"(^|/)(fakes|demo\w*|seed|faults|fault_handler|testing|conftest|test_\w+)\.py$"
)
RUNTIME_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "urllib3", "dateutil", "six.py")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, build.Bundle]:
    # The same call `make test` and deploy.sh make; a no-op (no network) when build/ is up to date.
    return {b.name: b for b in build.build(ROOT / "build")}


@pytest.fixture(scope="module")
def runtime_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding only what the python3.12 Lambda runtime adds to the standard library."""
    import boto3

    site = Path(boto3.__file__).resolve().parents[1]
    folder = tmp_path_factory.mktemp("runtime-site")
    for name in RUNTIME_MODULES:
        if (site / name).exists():
            (folder / name).symlink_to(site / name)
    assert (folder / "boto3").exists()
    assert (folder / "botocore").exists()
    return folder


def test_template_references_exactly_the_declared_bundles() -> None:
    template = (ROOT / "cloudformation" / "template.yaml").read_text()
    # GIVEN the bundles declared in pyproject.toml THEN each function's Code is one of them, no layer
    assert "AWS::Lambda::LayerVersion" not in template
    assert "Layers:" not in template
    referenced = {line.split("../build/")[1].removesuffix(".zip").strip()
                  for line in template.splitlines() if "Code: ../build/" in line}
    assert referenced == set(build.bundle_requirements())


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_handler_imports_from_its_own_zip(name: str, bundles: dict[str, build.Bundle], runtime_site: Path,
                                          tmp_path: Path) -> None:
    # GIVEN the function's zip unpacked as the task root
    with zipfile.ZipFile(bundles[name].zip_path) as zf:
        zf.extractall(tmp_path / "task")
    # Every module compiled from source on the way is recorded: on Lambda that is init time billed.
    code = ("import importlib, importlib.machinery as m, sys\ncompiled = []\n"
            "_compile = m.SourceFileLoader.source_to_code\n"
            "def record(self, data, path, *a, **k):\n"
            "    compiled.append(str(path))\n"
            "    return _compile(self, data, path, *a, **k)\n"
            "m.SourceFileLoader.source_to_code = record\n")
    code += "".join(f"importlib.import_module({m!r})\n" for m in HANDLERS[name])
    if name == "processor":
        # the detector's model and numpy load lazily at the first batch: load them here too
        code += "from functions.detector.anomaly_detector import get_detector; get_detector()\n"
    code += f"print('\\n'.join(c for c in compiled if c.startswith({str(tmp_path / 'task')!r})))\n"
    code += f"print('\\n'.join('loaded ' + m for m in {NOT_AT_START.get(name, ())!r} if m in sys.modules))\n"
    # WHEN a bare interpreter with only the runtime's packages imports the handler
    paths = [str(tmp_path / "task"), str(runtime_site)]
    result = subprocess.run(
        [sys.executable, "-S", "-c", f"import sys; sys.path[:0] = {paths!r}\n" + code],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={"AWS_REGION": "us-east-1", "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
    )
    # THEN it imports (a package missing from the zip would be Runtime.ImportModuleError on LocalStack)
    assert result.returncode == 0, result.stderr[-2000:]
    # AND from the bytecode shipped in the zip: not one module of the package compiled at import
    # AND without loading what its first request does not need
    assert [line for line in result.stdout.splitlines() if line] == []


def test_bundles_fit_lambda_limits_and_leave_out_what_a_function_does_not_use(
        bundles: dict[str, build.Bundle]) -> None:
    for bundle in bundles.values():
        assert bundle.unzipped_bytes < build.LAMBDA_UNZIPPED_LIMIT
    names = {n: set(zipfile.ZipFile(b.zip_path).namelist()) for n, b in bundles.items()}
    assert any(n.startswith("numpy/") for n in names["processor"])
    assert not any(n.startswith(("numpy/", "fastapi/")) for n in names["ingest"])
    assert not any(n.startswith("numpy/") for n in names["api"])
    assert any(n.startswith("duckdb/") for n in names["compactor"])
    assert not any(n.startswith("duckdb/") for name in ("processor", "ingest", "api") for n in names[name])
    for listing in names.values():
        assert not any(n.startswith(("boto3/", "botocore/")) for n in listing)  # the runtime provides them
    # the detector needs no download: its model travels in the processor's package
    artifacts = [n for n in names["processor"] if n.startswith("functions/detector/artifacts/")]
    assert any(n.endswith(".json") for n in artifacts)


def test_zips_are_reproducible(tmp_path: Path) -> None:
    # GIVEN the same inputs written twice at different times THEN the bytes are identical (an unchanged
    # function keeps its S3 key and is not replaced by a re-deploy)
    entries = build._code_files()[:20]
    build.write_zip(tmp_path / "a.zip", entries)
    build.write_zip(tmp_path / "b.zip", entries)
    digest = [hashlib.sha256((tmp_path / f).read_bytes()).hexdigest() for f in ("a.zip", "b.zip")]
    assert digest[0] == digest[1]


def test_bundles_build_byte_for_byte_the_same_twice_from_clean(tmp_path: Path) -> None:
    # GIVEN the api bundle's installed packages (the most third-party Python of any bundle), without
    # bytecode, copied into two empty build folders (no network: the install is not what is tested)
    installed = ROOT / "build" / "deps" / "api"
    build.build(ROOT / "build")
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        shutil.copytree(installed, out / "deps" / "api", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(ROOT / "build" / "deps" / "api.sha256", out / "deps" / "api.sha256")
        # WHEN each builds the bundle: its own staging, compile and zip
        bundle = build.build_bundle(out, "api", build.bundle_requirements()["api"], force=False)
        digests.append(hashlib.sha256(bundle.zip_path.read_bytes()).hexdigest())
    # THEN the zips are identical, bytecode included
    listing = zipfile.ZipFile(tmp_path / "a" / "api.zip").namelist()
    assert "functions/api/__pycache__/main.cpython-312.pyc" in listing
    assert "fastapi/__pycache__/applications.cpython-312.pyc" in listing
    assert digests[0] == digests[1]


def _bytecode_of(source: str) -> str:
    """``a/b.py`` -> ``a/__pycache__/b.cpython-312.pyc``: where Python 3.12 looks for its bytecode."""
    folder, _, file = source.rpartition("/")
    return f"{folder + '/' if folder else ''}__pycache__/{file.removesuffix('.py')}.cpython-312.pyc"


def test_every_python_file_ships_with_its_bytecode(bundles: dict[str, build.Bundle]) -> None:
    for name, bundle in bundles.items():
        listing = set(zipfile.ZipFile(bundle.zip_path).namelist())
        # GIVEN every .py in the zip THEN beside it __pycache__/X.cpython-312.pyc (the source stays too)
        missing = [n for n in listing if n.endswith(".py") and _bytecode_of(n) not in listing]
        assert missing == [], f"{name}.zip: {missing[:10]}"


def test_no_bundle_contains_test_only_code(bundles: dict[str, build.Bundle]) -> None:
    # GIVEN every production zip the build writes (one per declared bundle)
    assert set(bundles) == set(build.bundle_requirements())
    for name, bundle in bundles.items():
        listing = zipfile.ZipFile(bundle.zip_path).namelist()
        assert "functions/core/ports.py" in listing  # the project's code is there to be checked
        # THEN none of it is test furniture: no testkit/tests package, no fakes/demo/seed/faults module
        offending = [n for n in listing if n.startswith(TEST_ONLY_PACKAGES)
                     or (n.startswith("functions/") and TEST_ONLY_MODULE.search(n))]
        assert offending == [], f"{name}.zip ships test-only code: {offending[:10]}"


def test_the_test_hooks_package_is_the_processor_bundle_plus_testkit(
        bundles: dict[str, build.Bundle]) -> None:
    # GIVEN the package only test stacks deploy (TestHooks=faults)
    hooks = build.build_test_hooks(ROOT / "build")
    listing = set(zipfile.ZipFile(hooks.zip_path).namelist())
    # THEN it holds the fault handler, and apart from testkit/ exactly what processor.zip holds
    assert "testkit/fault_handler.py" in listing
    assert "testkit/faults.py" in listing
    production = set(zipfile.ZipFile(bundles["processor"].zip_path).namelist())
    assert {n for n in listing if not n.startswith("testkit/")} == production
