"""serving/Dockerfile, checked without a Docker engine: what it copies is enough to serve the model."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "serving" / "Dockerfile"


def _copies() -> list[tuple[list[str], str]]:
    text = DOCKERFILE.read_text()
    return [(src.split(), dest) for src, dest in re.findall(r"^COPY\s+(.+?)\s+(\S+)$", text, re.M)]


def test_the_image_follows_the_bring_your_own_container_contract() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.12", text, re.M)  # the Lambda runtime's Python
    assert re.search(r'^ENTRYPOINT \["serve"\]', text, re.M)  # SageMaker runs `docker run IMAGE serve`
    assert re.search(r"^EXPOSE 8080$", text, re.M)
    assert "SERVE_HOST=0.0.0.0" in text  # reachable by SageMaker's front end inside the container only
    assert (ROOT / "serving" / "serve").stat().st_mode & 0o111  # executable
    for sources, _ in _copies():
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: missing"


def test_what_the_image_copies_loads_and_scores_with_the_embedded_backend(tmp_path: Path) -> None:
    # GIVEN only the files the Dockerfile copies, laid out as in the image's /opt/program
    for sources, dest in _copies():
        if dest in ("./", "."):
            continue
        target = tmp_path / dest
        for src in sources:
            path = ROOT / src
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, target / path.name)
    # WHEN the server's app is built there, without the editable install of the repository (-S: no .pth
    # files, so nothing outside the copied tree can be imported from the project)
    probe = (
        "import sys; from serving.app import create_app; import numpy as np\n"
        "from functions.detector.anomaly_detector import build_embedded\n"
        "app = create_app()\n"
        "d = build_embedded(); x = np.zeros((3, len(d.model.spec.feature_names)))\n"
        "print(d.model_version, d.score_features(x).shape)\n"
        "print(sorted({m.split('.')[0] for m in sys.modules}\n"
        "             & {'boto3', 'botocore', 'sklearn', 'iotpipe', 'model'}))"
    )
    site = sysconfig.get_paths()["purelib"]
    result = subprocess.run([sys.executable, "-S", "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": f"{tmp_path}:{site}", "PATH": "/usr/bin:/bin"},
                            check=False, timeout=120)
    # THEN it loads the artifact and scores, with no AWS SDK and no training code in the image's path
    assert result.returncode == 0, result.stderr[-2000:]
    version, shape = result.stdout.splitlines()[0].split(" ", 1)
    assert version
    assert shape == "(3,)"
    assert result.stdout.splitlines()[1] == "[]"
