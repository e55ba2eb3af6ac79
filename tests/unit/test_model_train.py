"""Training is reproducible: the same command writes the same artifact bytes."""

from __future__ import annotations

import json

from model.train import main

ARGS = ["--source", "simulator", "--devices", "4", "--duration-s", "240", "--trees", "8", "--seed", "3"]


def test_artifact_rebuild_is_bit_for_bit(tmp_path):
    # GIVEN two independent training runs into different folders
    first, second = tmp_path / "a" / "m.json", tmp_path / "b" / "m.json"
    assert main([*ARGS, "--out", str(first)]) == 0
    assert main([*ARGS, "--out", str(second)]) == 0
    # THEN the files are identical and carry what the Lambda needs
    assert first.read_bytes() == second.read_bytes()
    artifact = json.loads(first.read_bytes())
    assert artifact["model_version"] == "iforest-v1"
    assert len(artifact["forest"]["trees"]) == 8
    assert artifact["training"]["data_sha256"]
    assert "timestamp" not in json.dumps(artifact["training"])


def test_committed_artifact_is_loadable():
    from functions.detector.anomaly_detector import EmbeddedDetector, default_artifact_path

    detector = EmbeddedDetector(default_artifact_path())
    assert detector.model_version == "iforest-v1"
