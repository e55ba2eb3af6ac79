"""Peak resident memory of the emulator's process tree (Lambda workers included), sampled from /proc."""

from __future__ import annotations

import os
import threading
from collections import defaultdict


class RssSampler(threading.Thread):
    """Peak resident memory of a process and all its descendants (the emulator + Lambda workers)."""

    def __init__(self, root_pid: int, interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.peak_processes = 0
        self._stop = threading.Event()

    @staticmethod
    def _children() -> dict[int, list[int]]:
        tree: dict[int, list[int]] = defaultdict(list)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree[ppid].append(int(entry))
        return tree

    def sample(self) -> tuple[int, int]:
        tree = self._children()
        todo, total, count = [self.root_pid], 0, 0
        while todo:
            pid = todo.pop()
            todo.extend(tree.get(pid, []))
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                            count += 1
                            break
            except OSError:
                continue
        return total, count

    def run(self) -> None:
        while not self._stop.is_set():
            total, count = self.sample()
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_processes = total, count
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
