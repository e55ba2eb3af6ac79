"""Each function's import time from its own code package, with and without its bytecode, before and after.

    .venv/bin/python bench/import_times.py [--repeat 15] [--baseline REF | --baseline-build DIR]
                                           [--profile api] [--save PATH | --no-save]

For every Lambda function of the template (Handler, Code), its handler module is imported in a fresh
CPython 3.12 from the function's zip unpacked as the task root, the way the python3.12 runtime loads it:
``-S`` (no site-packages), only the runtime's own packages (boto3 and its dependencies, from the
emulator's interpreter) beside the package, ``PYTHONDONTWRITEBYTECODE=1`` so nothing is cached between
runs (Lambda's ``/var/task`` is read-only). The time is the import alone, in the child, as Lambda's init
phase runs it after its own runtime start; the page cache is warm (as on a reused host).

Two variants of each package: ``pyc``, the zip as shipped (``scripts/build.py`` puts CPython 3.12
bytecode beside every module), and ``src``, the same files with every ``__pycache__`` removed (each
import compiles its source, as every cold start did before the bundles carried bytecode).

``--baseline REF`` builds REF's packages in a temporary git worktree (removed afterwards) and measures
them in the same run, interleaved with the current ones: the before/after table. A baseline built
without bytecode gets its ``pyc`` variant from the same compile step the build uses, so its columns
measure the code change apart from the bytecode.

Median and p90 over ``--repeat`` runs, in ms of wall time (what Lambda bills), and the median CPU time of
the importing process (steadier when other work shares the machine); a table, one JSON line, and (with a
baseline, or ``--save``) the same JSON saved to ``bench/results/import-times-<date>.json``.
``--profile FUNCTION`` prints the 25 slowest imports (cumulative, ``-X importtime``) of that function's
shipped package.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iotpipe.local.emulator import DEFAULT_VENV  # noqa: E402
from iotpipe.settings import REGION_DEFAULT  # noqa: E402


def _load_build_script() -> ModuleType:
    """scripts/build.py (the bundles, the runtime's packages, the compile step), loaded by path: the name
    ``build`` is also PyPA's package and, for mypy, the build/ output folder."""
    spec = importlib.util.spec_from_file_location("iotpipe_build_script", ROOT / "scripts" / "build.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


build = _load_build_script()

# Per Lambda function of cloudformation/template.yaml: (its Code zip, its Handler's module).
FUNCTIONS: dict[str, tuple[str, str]] = {
    "processor": ("processor", "functions.processor.handler"),
    "calibrator": ("processor", "functions.calibrator.handler"),
    "compactor": ("compactor", "functions.compactor.handler"),
    "ingest": ("ingest", "functions.ingest.handler"),
    "authorizer": ("ingest", "functions.authorizer.handler"),
    "iot_ingest": ("ingest", "functions.ingest.mqtt"),
    "api": ("api", "functions.api.lambda_handler"),
}
VARIANTS = ("src", "pyc")

app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


def runtime_python() -> Path:
    """The emulator's CPython 3.12: the interpreter that runs the functions locally, boto3 included."""
    return DEFAULT_VENV / "bin" / "python"


def runtime_site(folder: Path, python: Path) -> Path:
    """A folder holding only what the python3.12 Lambda runtime adds to the standard library."""
    site = Path(subprocess.run([str(python), "-c", "import boto3, pathlib; print(pathlib.Path(boto3.__file__)"
                                ".resolve().parents[1])"], capture_output=True, text=True, check=True)
                .stdout.strip())
    folder.mkdir(parents=True, exist_ok=True)
    for name in build.RUNTIME_PROVIDED:
        for candidate in (site / name, site / f"{name}.py"):
            if candidate.exists():
                (folder / candidate.name).symlink_to(candidate)
    return folder


def unpack(zip_path: Path, task: Path) -> dict[str, Path]:
    """The package unpacked twice: as shipped (bytecode compiled here if it ships none) and source only."""
    pyc, src = task / "pyc", task / "src"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(pyc)
    if not any(pyc.rglob("*.pyc")):
        build.compile_bytecode(pyc)
    shutil.copytree(pyc, src, ignore=shutil.ignore_patterns("__pycache__"))
    return {"pyc": pyc, "src": src}


def _child(task: Path, site: Path, module: str,
           flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    code = (f"import sys, time, importlib; sys.path[:0] = {[str(task), str(site)]!r}\n"
            "t, c = time.perf_counter(), time.process_time()\n"
            f"importlib.import_module({module!r})\n"
            "print(time.perf_counter() - t, time.process_time() - c)")
    return subprocess.run(
        [str(runtime_python()), "-S", *flags, "-c", code], capture_output=True, text=True, timeout=120,
        cwd=task, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AWS_REGION": REGION_DEFAULT,
                       "PYTHONDONTWRITEBYTECODE": "1"},
    )


def import_seconds(task: Path, site: Path, module: str) -> float:
    """One import of ``module`` in a fresh interpreter whose task root is ``task``: wall seconds."""
    return import_times(task, site, module)[0]


def import_times(task: Path, site: Path, module: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one import. Wall time is what Lambda bills; the process's CPU time is the
    steadier figure on a shared machine (other processes' load lengthens wall time, not CPU time)."""
    result = _child(task, site, module)
    if result.returncode != 0:
        raise RuntimeError(f"importing {module} from {task} failed: {result.stderr.strip()[-1000:]}")
    wall, cpu = result.stdout.strip().splitlines()[-1].split()
    return float(wall), float(cpu)


def import_profile(task: Path, site: Path, module: str, top: int = 25) -> list[tuple[float, float, str]]:
    """(cumulative ms, self ms, module) of the slowest imports, from ``-X importtime``."""
    result = _child(task, site, module, ("-X", "importtime"))
    rows = []
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            parts = line.removeprefix("import time:").split("|")
            self_us, cumulative_us, name = (part.strip() for part in parts)
            rows.append((int(cumulative_us) / 1000, int(self_us) / 1000, name))
    return sorted(rows, reverse=True)[:top]


def summary(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    p90 = statistics.quantiles(ms, n=10, method="inclusive")[8] if len(ms) > 1 else ms[0]
    return {"median": round(statistics.median(ms), 1), "p90": round(p90, 1)}


def build_baseline(ref: str, folder: Path) -> Path:
    """REF's packages, built by REF's own scripts/build.py in a temporary worktree; their folder."""
    tree = folder / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True,
                   capture_output=True)
    try:
        subprocess.run([sys.executable, str(tree / "scripts" / "build.py"), "--out", str(folder / "build")],
                       check=True, stdout=subprocess.DEVNULL)
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True,
                       capture_output=True)
    return folder / "build"


def measure(builds: dict[str, Path], repeat: int, work: Path) -> dict[str, Any]:
    """Median/p90 per (build, function, variant), runs interleaved so machine noise spreads evenly."""
    site = runtime_site(work / "site", runtime_python())
    tasks: dict[tuple[str, str], dict[str, Path]] = {}
    sizes: dict[str, dict[str, int]] = {}
    for label, folder in builds.items():
        for bundle in sorted({b for b, _ in FUNCTIONS.values()}):
            zip_path = folder / f"{bundle}.zip"
            tasks[label, bundle] = unpack(zip_path, work / label / bundle)
            with zipfile.ZipFile(zip_path) as zf:
                sizes.setdefault(bundle, {})[f"{label}_zip_bytes"] = zip_path.stat().st_size
                sizes[bundle][f"{label}_unzipped_bytes"] = sum(i.file_size for i in zf.infolist())
    times: dict[tuple[str, str, str], list[float]] = {}
    cpu: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(repeat):
        for name, (bundle, module) in FUNCTIONS.items():
            for label in builds:
                for variant in VARIANTS:
                    wall, used = import_times(tasks[label, bundle][variant], site, module)
                    times.setdefault((label, name, variant), []).append(wall)
                    cpu.setdefault((label, name, variant), []).append(used)
    functions = {name: {"bundle": bundle, "module": module,
                        **{f"{label}_{variant}_ms": summary(times[label, name, variant])
                           for label in builds for variant in VARIANTS},
                        **{f"{label}_{variant}_cpu_ms": summary(cpu[label, name, variant])
                           for label in builds for variant in VARIANTS}}
                 for name, (bundle, module) in FUNCTIONS.items()}
    return {"functions": functions, "bundles": sizes}


def table(result: dict[str, Any], labels: list[str]) -> list[str]:
    columns = [f"{label} {variant}" for label in labels for variant in VARIANTS]
    lines = [f"{'function':11s} {'bundle':10s} " + " ".join(f"{c:>16s}" for c in columns),
             f"{'':11s} {'':10s} " + " ".join(f"{'median / p90 ms':>16s}" for _ in columns)]
    for name, row in result["functions"].items():
        cells = [row[f"{label}_{variant}_ms"] for label in labels for variant in VARIANTS]
        lines.append(f"{name:11s} {row['bundle']:10s} "
                     + " ".join(f"{c['median']:>7.0f} / {c['p90']:>6.0f}" for c in cells))
    lines.append("CPU time of the importing process, median ms (steadier on a shared machine):")
    for name, row in result["functions"].items():
        lines.append(f"{name:11s} {row['bundle']:10s} " + " ".join(
            f"{row[f'{label}_{variant}_cpu_ms']['median']:>16.0f}"
            for label in labels for variant in VARIANTS))
    lines.append("")
    for bundle, size in result["bundles"].items():
        lines.append(f"{bundle + '.zip':14s} " + ", ".join(
            f"{label} {size[f'{label}_zip_bytes']:,} B zipped / "
            f"{size[f'{label}_unzipped_bytes']:,} B unzipped"
            for label in labels))
    return lines


@app.command()
def main(
    repeat: Annotated[int, typer.Option(help="fresh interpreters per function and variant")] = 15,
    baseline: Annotated[str | None, typer.Option(
        help="git ref whose packages are measured beside the current ones (built in a temporary "
             "worktree)")] = None,
    baseline_build: Annotated[Path | None, typer.Option(
        help="a folder of already built baseline zips instead of --baseline")] = None,
    profile: Annotated[str | None, typer.Option(help="print this function's 25 slowest imports")] = None,
    save: Annotated[Path | None, typer.Option(
        help="where to write the JSON (default bench/results/import-times-DATE.json)")] = None,
    no_save: Annotated[bool, typer.Option("--no-save", help="print only")] = False,
) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build.py")], check=True,
                   stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="iotpipe-import-times-") as tmp:
        work = Path(tmp)
        builds: dict[str, Path] = {}
        if baseline_build is not None:
            builds["before"] = baseline_build
        elif baseline is not None:
            builds["before"] = build_baseline(baseline, work / "baseline")
        builds["after" if builds else "now"] = ROOT / "build"
        labels = list(builds)
        if profile is not None:
            bundle, module = FUNCTIONS[profile]
            for label, folder in builds.items():
                task = unpack(folder / f"{bundle}.zip", work / "profile" / label)["pyc"]
                print(f"{profile} ({label}, bytecode): slowest imports, cumulative / self ms")
                for cumulative, own, name in import_profile(task, runtime_site(work / "psite" / label,
                                                                               runtime_python()), module):
                    print(f"  {cumulative:8.1f} {own:8.1f}  {name}")
        result = measure(builds, repeat, work)
    for line in table(result, labels):
        print(line)
    record = {"bench": "import_times", "date": datetime.now(UTC).strftime("%Y-%m-%d"), "repeat": repeat,
              "baseline": baseline or (str(baseline_build) if baseline_build else None),
              "python": subprocess.run([str(runtime_python()), "-c", "import sys; print(sys.version)"],
                                       capture_output=True, text=True).stdout.split()[0],
              **result}
    line = json.dumps(record)
    print(line)
    # A run without a baseline (`make bench`) prints only: it must not overwrite the recorded comparison
    # that iotpipe/cost/init_time.py cites.
    if not no_save and (save is not None or len(labels) > 1):
        path = save or ROOT / "bench" / "results" / f"import-times-{record['date']}.json"
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}", file=sys.stderr)


if __name__ == "__main__":
    app()
