"""The ``iotpipe`` command line (typer): option names, environment defaults, exit codes, pass-through."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from iotpipe import cli, console
from iotpipe.cli import ops, run
from iotpipe.local import emulator, supervisor


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The commands' implementations replaced by recorders (nothing is started or deployed)."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(supervisor, "up", lambda opts: seen.setdefault("up", opts) and 0)
    monkeypatch.setattr(supervisor, "down", lambda: seen.setdefault("down", True) and 0)
    monkeypatch.setattr(run, "cmd_deploy", lambda *a: seen.setdefault("deploy", a) and 0)
    monkeypatch.setattr(ops, "cmd_status", lambda *a: seen.setdefault("status", a) and 7)
    monkeypatch.setattr(ops, "cmd_rebuild", lambda *a: seen.setdefault("rebuild", a) and 0)
    return seen


def test_up_options_keep_their_names_and_environment_defaults(
    calls: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN defaults from the environment (as `make up` passes them) and flags that win over them
    monkeypatch.setenv("SIM_DEVICES", "33")
    monkeypatch.setenv("STACK_NAME", "envstack")
    # WHEN `iotpipe up` parses its options
    code = cli.main(["up", "--rate", "2.5", "--shards", "2", "--parallelization", "3", "--port", "4599",
                     "--control-port", "9000", "--api-port", "9001", "--fresh", "--verbose",
                     "--duration", "12", "--interval", "1", "--snapshot", "0", "--anomaly-rate", "0.1",
                     "--malformed-rate", "0.2", "--seed", "5"])
    # THEN every option reached the command
    assert code == 0
    opts = calls["up"]
    assert (opts.stack, opts.devices, opts.rate) == ("envstack", 33, 2.5)
    assert (opts.shards, opts.parallelization) == (2, 3)
    assert (opts.port, opts.control_port, opts.api_port, opts.seed) == (4599, 9000, 9001, 5)
    assert (opts.fresh, opts.verbose, opts.duration, opts.interval, opts.snapshot) == (True, True, 12, 1, 0)
    assert (opts.anomaly_rate, opts.malformed_rate) == (0.1, 0.2)


def test_deploy_status_rebuild_down(calls: dict[str, Any]) -> None:
    assert cli.main(["deploy", "--target", "localstack", "--stack", "s", "--yes", "--dry-run",
                     "--param", "A=1", "--param", "B=2"]) == 0
    assert calls["deploy"] == ("localstack", "s", True, True, ["A=1", "B=2"])
    # the command's exit status is the process's
    assert cli.main(["status", "--json", "--stack", "x"]) == 7
    assert calls["status"] == ("x", True)
    assert cli.main(["rebuild"]) == 0
    assert calls["rebuild"] == ("iotpipe", False)
    assert cli.main(["down"]) == 0
    assert calls["down"] is True


@pytest.mark.parametrize(
    "argv",
    [["up", "--bogus"], ["deploy", "--target", "nowhere"], ["status", "--stack"], ["model", "foo"]],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # the message goes to stderr
    assert "Error" in captured.err


def test_no_command_shows_the_commands_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    captured = capsys.readouterr()
    help_text = captured.out + captured.err
    for command in ("up", "down", "deploy", "status", "rebuild", "cost", "model"):
        assert command in help_text


def test_cost_passes_its_options_through(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["cost", "--devices", "10", "--rate", "0.1", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert json.loads(out[0])["devices"] == 10
    assert cli.main(["cost", "--devices", "0", "--rate", "1"]) == 2


def test_model_evaluate_passes_its_options_through(monkeypatch: pytest.MonkeyPatch) -> None:
    import model.evaluate

    seen: list[list[str]] = []
    monkeypatch.setattr(model.evaluate, "main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["model", "evaluate", "--dataset", "simulator", "--devices", "3"]) == 0
    assert seen == [["--dataset", "simulator", "--devices", "3"]]


def test_model_train_passes_its_options_through(monkeypatch: pytest.MonkeyPatch) -> None:
    import model.train

    seen: list[list[str]] = []
    monkeypatch.setattr(model.train, "main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["model", "train", "--source", "csv", "--csv", "r.csv"]) == 0
    assert seen == [["--source", "csv", "--csv", "r.csv"]]


def test_model_calibrate_needs_exactly_one_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["model", "calibrate", "--device", "d1"]) == 2
    assert "exactly one of --csv FILE or --from-archive" in capsys.readouterr().err


def test_a_stale_endpoint_in_the_shell_gives_way_to_the_running_emulator(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN AWS_ENDPOINT_URL left on 4566 from an earlier run, and `up`'s emulator now on 53889
    live = emulator.Emulator(port=53889, state_dir=__import__("pathlib").Path("/nonexistent"), pid=1)
    monkeypatch.setattr(emulator.Emulator, "from_pidfile", classmethod(lambda cls: live))
    monkeypatch.setattr(emulator, "healthy", lambda endpoint, timeout=1.0: endpoint == live.endpoint)
    monkeypatch.setattr(emulator, "answers", lambda url: False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    # WHEN a command looks for its endpoint THEN it uses the live one and says why
    assert emulator.use_running_emulator(console.say) is live
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:53889"
    assert "AWS_ENDPOINT_URL=http://127.0.0.1:4566 does not answer" in capsys.readouterr().err
    # AND an endpoint that answers (LocalStack, say) is kept
    monkeypatch.setattr(emulator, "answers", lambda url: True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:4599")
    assert emulator.use_running_emulator(console.say) is None
    assert os.environ["AWS_ENDPOINT_URL"] == "http://localhost:4599"


def test_progress_to_a_hung_up_terminal_does_not_stop_the_clean_up(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN stderr on a terminal that was closed (writing raises EIO), as when `up`'s terminal hangs up
    class HungUp:
        def write(self, text: str) -> int:
            raise OSError(5, "Input/output error")

        def flush(self) -> None:
            raise OSError(5, "Input/output error")

    monkeypatch.setattr("sys.stderr", HungUp())
    monkeypatch.setattr(console._Terminal, "gone", False)
    # THEN a progress line is dropped instead of raising out of `up`'s clean-up (which then never
    # stopped the emulator: it was left running, orphaned), and `up` knows to stop
    console.say("stopping simulator, API and emulator ...")
    assert console.terminal_gone()
