"""The memory of a process tree while a benchmark runs: the descendants of `root` (and `root` itself with
`include_root`), optionally only those whose name contains `name` (e.g. "chrom": the browser a page runner
started), sampled from /proc every `every_s` seconds while the block runs.

Three measures, because processes share pages (Chromium's renderer, GPU process and zygote map the same files
and shared memory):
- the peak of their summed resident set size (RSS: shared pages counted in every process that maps them),
- the peak of their summed proportional set size (PSS: each shared page divided among its sharers; the sum is
  what the tree costs the machine) and the largest process's PSS peak,
- each process's own peak RSS (VmHWM, kept as processes exit), the six largest reported.

RSS comes from /proc/PID/status, which costs next to nothing. PSS comes from /proc/PID/smaps_rollup: the kernel
walks the process's page tables for it, holding its memory map's lock, which costs the measured process itself
(28 ms for a renderer of 2.9 GB, 54 ms for a whole Chromium: at a read every 0.5 s, the CPU engine's first token
went from 12.4 to 13.6 s on 2 cores). So PSS is read only when the summed RSS reaches a new high, 2 % above the
one at the last read: its peak is the peak at those moments.
"""

import os
import re
import threading
from pathlib import Path


def descendants(pid: int) -> list:
    children = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int(re.search(r"PPid:\s+(\d+)", (d / "status").read_text()).group(1))
            except (OSError, AttributeError):  # a process that ended while listed
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _status(pid: int) -> dict:
    """Name, VmRSS and VmHWM (bytes) of a process; {} once it has ended."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {k: int(v) * 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.M)}
    name = re.search(r"^Name:\s+(.*)$", text, re.M)
    return {**out, "name": name.group(1) if name else "?"}


def _pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:  # ended between listing and reading
        return 0
    return 0


PSS_RISE = 1.02  # the summed RSS over the one at the last PSS read that reads PSS again


class ProcessTreeMemory:
    """`with ProcessTreeMemory(name="chrom") as mem: ...` then `mem.report()`."""

    def __init__(self, root: int | None = None, name: str | None = None, every_s: float = 0.5,
                 include_root: bool = False):
        self.root, self.name, self.every_s, self.include_root = root or os.getpid(), name, every_s, include_root
        self.rss_sum = self.pss_sum = self.pss_largest = 0
        self._pss_at = 0  # the summed RSS when PSS was last read
        self.hwm = {}  # pid -> {"name", "peak_rss_bytes"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.every_s):
                return

    def pids(self) -> list:
        return ([self.root] if self.include_root else []) + descendants(self.root)

    def sample(self) -> None:
        rss, pids = 0, []
        for pid in self.pids():
            s = _status(pid)
            if "VmRSS" not in s or (self.name and self.name not in s["name"]):
                continue
            rss += s["VmRSS"]
            pids.append(pid)
            self.hwm[pid] = {"name": s["name"], "peak_rss_bytes": s["VmHWM"]}
        self.rss_sum = max(self.rss_sum, rss)
        if rss > PSS_RISE * self._pss_at:  # a new high: PSS read (see above)
            self._pss_at = rss
            pss = [_pss(pid) for pid in pids]
            self.pss_sum = max(self.pss_sum, sum(pss))
            self.pss_largest = max(self.pss_largest, max(pss, default=0))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def report(self) -> dict:
        procs = sorted(self.hwm.values(), key=lambda p: -p["peak_rss_bytes"])
        return {"peak_rss_sum_bytes": self.rss_sum, "peak_pss_sum_bytes": self.pss_sum,
                "peak_pss_largest_bytes": self.pss_largest,
                "largest_process_peak_rss_bytes": procs[0]["peak_rss_bytes"] if procs else None,
                "processes": procs[:6]}
