"""bench/import_times.py measures every Lambda function of the template, from the zip it deploys."""

from __future__ import annotations

import zipfile
from pathlib import Path

from bench.import_times import FUNCTIONS, summary, unpack
from iotpipe.ops.template import load_template


def _handler(value: object) -> str:
    # the processor's Handler is !If [UseFaultHooks, testkit..., functions...]: the production one
    if isinstance(value, dict):
        return str(value["If"][2])
    return str(value)


def test_every_function_of_the_template_is_measured_from_its_own_zip() -> None:
    # GIVEN the template's Lambda functions: (their Code zip, their Handler's module)
    resources = load_template()["Resources"].values()
    deployed = {(str(r["Properties"]["Code"]).removeprefix("../build/").removesuffix(".zip"),
                 _handler(r["Properties"]["Handler"]).rsplit(".", 1)[0])
                for r in resources if r["Type"] == "AWS::Lambda::Function"
                and str(r["Properties"].get("Code", "")).startswith("../build/")}
    # THEN the bench imports exactly those (a new function cannot be left out of the table)
    assert set(FUNCTIONS.values()) == deployed


def test_median_and_p90_in_ms() -> None:
    # GIVEN ten import times of 100..1000 ms THEN the median and the 90th percentile (inclusive method)
    times = [s / 10 for s in range(1, 11)]
    assert summary(times) == {"median": 550.0, "p90": 910.0}
    assert summary([0.25]) == {"median": 250.0, "p90": 250.0}


def test_the_source_variant_is_the_shipped_package_without_its_bytecode(tmp_path: Path) -> None:
    # GIVEN a package shipped with bytecode beside its module
    zip_path = tmp_path / "f.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
        zf.writestr("pkg/mod.py", "X = 1\n")
        zf.writestr("pkg/__pycache__/mod.cpython-312.pyc", b"shipped")
    # WHEN it is unpacked for the bench
    tasks = unpack(zip_path, tmp_path / "task")
    # THEN "pyc" is it as shipped and "src" the same sources with no __pycache__ at all
    assert (tasks["pyc"] / "pkg/__pycache__/mod.cpython-312.pyc").read_bytes() == b"shipped"
    assert sorted(p.relative_to(tasks["src"]).as_posix() for p in tasks["src"].rglob("*")) == \
        ["pkg", "pkg/__init__.py", "pkg/mod.py"]
