"""The developer tools' console: a typer app run as ``main(argv) -> int``, and progress on stderr.

Every tool (iotpipe, bench, model, scripts) declares its options with typer; ``run_app`` runs one the
way tests and other commands call it (an argument list in, an exit status out: 2 for a usage error, as
argparse did). Progress displays write to stderr only, so stdout keeps what scripts read: the last JSON
line of a benchmark, the ``--json`` outputs.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

STDERR = Console(stderr=True)


class _Terminal:
    # Set when writing progress fails with EIO: the terminal `iotpipe up` runs in was closed. `up` then stops
    # what it started (with the terminal's foreground taken, no SIGHUP reaches it: own_terminal_foreground).
    gone = False


def say(message: str) -> None:
    """One ``[iotpipe]`` line on stderr. A closed terminal must not stop `up` from stopping what it
    started: writing to it fails, which is noted (``terminal_gone``) instead of raised."""
    try:
        print(f"[iotpipe] {message}", file=sys.stderr, flush=True)
    except OSError as exc:
        if exc.errno == errno.EIO:
            _Terminal.gone = True


def terminal_gone() -> bool:
    """Whether a ``say`` found the terminal closed."""
    return _Terminal.gone


def run_app(app: typer.Typer, argv: Sequence[str] | None = None, prog_name: str | None = None) -> int:
    """Runs ``app`` on ``argv`` (default: the process's arguments) and returns its exit status."""
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except typer.Abort:
        STDERR.print("Aborted!")
        return 1
    except typer.TyperException as exc:  # usage errors (typer's click): the message on stderr, status 2
        show = getattr(exc, "show", None)
        if show is None:
            raise
        show()
        return int(getattr(exc, "exit_code", 1))
    return int(result or 0)


def progress(transient: bool = False) -> Progress:
    """A progress display on stderr: spinner, description, bar, done/total, elapsed time.

    Not a terminal (CI, a pipe): rich draws nothing live and prints the final state once.
    """
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=STDERR,
        transient=transient,
        # stdout stays the tools' own (readable lines, then the JSON line): rich would route it to stderr.
        redirect_stdout=False,
    )


def progress_callback(bar: Progress, description: str) -> Callable[[int, int], None]:
    """``on_progress(done, total)`` for work that counts its own steps: one task on ``bar``."""
    task = bar.add_task(description, total=None)

    def on_progress(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return on_progress


def track[T](items: Sequence[T] | Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """``items``, one by one, with a progress bar on stderr (gone when done)."""
    count = total if total is not None else (len(items) if isinstance(items, Sequence) else None)
    with progress(transient=True) as bar:
        task = bar.add_task(description, total=count)
        for item in items:
            yield item
            bar.advance(task)
