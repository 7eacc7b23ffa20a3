"""Progress of the long steps a user waits for: seeding, each training epoch, calibration's scoring,
and the daily job's stages. One helper for all of them (installed as tagger.models.progress so that
the models package, which imports only itself, can use it; the job, the demo and the training
packages import it from here).

* On a terminal (stdout and stderr both): a tqdm bar on stderr that redraws in place.
* Otherwise (a file, a pipe, a scheduler's log): a line through `log` every `every_fraction` of the
  work or every `every_seconds`, whichever comes first, with the elapsed time and an ETA:

      [gate] epoch 1/3: 240/1,184 batches (20%), elapsed 18s, ETA 1m11s

`Stages` times the job's stages one after another with a line as each starts and ends.

Standard library only (tqdm is imported when a bar is drawn): no torch, no Spark.
"""
from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator

EVERY_FRACTION = 0.1   # a line per 10% of the work ...
EVERY_SECONDS = 30.0   # ... or per 30 s, whichever comes first


def on_terminal() -> bool:
    """True when both stdout and stderr are terminals: someone watches, and a bar can redraw in
    place. False when either goes to a file or a pipe (`make run > log`, `| tee`, a scheduler), or
    when a stream has no isatty. Raises nothing."""
    try:
        return sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False


def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by process `pid` (None: this process) and every
    process below it: the Spark JVM and its Python workers are children that live as long as the
    session, so resource.getrusage(RUSAGE_CHILDREN), which counts only children that have exited,
    would miss them. Read from /proc (each process's utime, stime and its exited children's cutime,
    cstime); where /proc cannot be read (not Linux), this process and its exited children from
    resource.getrusage. Returns a float; raises nothing."""
    import os

    root = os.getpid() if pid is None else pid
    try:
        tick = os.sysconf("SC_CLK_TCK")
        parent, ticks = {}, {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    stat = fh.read().decode("ascii", "replace")
            except OSError:
                continue  # exited meanwhile
            fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid ...
            parent[int(entry.name)] = int(fields[1])
            ticks[int(entry.name)] = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
        if root not in ticks:
            raise OSError("own process not in /proc")
        children: dict[int, list[int]] = {}
        for child, ppid in parent.items():
            children.setdefault(ppid, []).append(child)
        total, todo = 0, [root]
        while todo:
            current = todo.pop()
            total += ticks.get(current, 0)
            todo.extend(children.get(current, ()))
        return total / tick
    except (OSError, ValueError, IndexError):
        import resource

        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def format_seconds(seconds: float | None) -> str:
    """A duration for people: "0.4s", "42s", "3m05s", "1h02m". None, NaN, infinite or negative
    (an ETA that cannot be estimated yet) give "?". Raises nothing."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Progress over `total` units of one long step (batches of an epoch, rows of a table, texts
    scored). Call `update(n)` as units complete and `close()` at the end (or use it as a context
    manager).

    Inputs: `desc` starts every line; `log` receives each line (a str) when no bar is drawn
    (default print); `unit` names the units in lines; `bar` True/False forces a tqdm bar on stderr
    or periodic lines, None (default) chooses a bar exactly when on_terminal(); `enabled` False
    makes every call a no-op; `every_fraction` / `every_seconds` space the lines; `clock` returns
    seconds (tests pass a fake one). Raises ValueError if total < 0.
    """

    def __init__(self, total: int, desc: str, *, log: Callable[[str], object] = print, unit: str = "step",
                 bar: bool | None = None, enabled: bool = True, every_fraction: float = EVERY_FRACTION,
                 every_seconds: float = EVERY_SECONDS, clock: Callable[[], float] = time.perf_counter):
        if total < 0:
            raise ValueError(f"Progress total must be >= 0, got {total}")
        self.total, self.desc, self.log, self.unit = int(total), desc, log, unit
        self.every_fraction, self.every_seconds, self.clock = every_fraction, every_seconds, clock
        self.enabled = enabled
        self.done = 0
        self.started = clock()
        self._last_done, self._last_time = 0, self.started
        self._bar = None
        if enabled and (on_terminal() if bar is None else bar):
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, leave=False, file=sys.stderr,
                             dynamic_ncols=True)

    @property
    def elapsed(self) -> float:
        """Seconds since the Progress was created."""
        return self.clock() - self.started

    def eta(self) -> float | None:
        """Estimated seconds left at the average rate so far; None before the first unit is done
        or when nothing is left to estimate from (total 0)."""
        if self.done <= 0 or self.total <= 0:
            return None
        return self.elapsed / self.done * max(0, self.total - self.done)

    def line(self, detail: str = "") -> str:
        """The progress line as it is now: desc, done/total units (percent), optional detail,
        elapsed and ETA."""
        share = f" ({self.done / self.total:.0%})" if self.total else ""
        detail = f" {detail}" if detail else ""
        units = self.unit + ("es" if self.unit.endswith(("s", "sh", "ch", "x")) else "s")
        return (f"{self.desc}: {self.done:,}/{self.total:,} {units}{share}{detail}, "
                f"elapsed {format_seconds(self.elapsed)}, ETA {format_seconds(self.eta())}")

    def update(self, n: int = 1, detail: str = "") -> None:
        """Count `n` more units done. With a bar, it advances; otherwise a line goes to `log` when
        `every_fraction` of the total or `every_seconds` have passed since the last line (or since
        the start). `detail` (e.g. the table just written) is added to that line."""
        if not self.enabled:
            return
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = self.clock()
        by_share = self.total > 0 and (self.done - self._last_done) >= self.every_fraction * self.total
        if by_share or now - self._last_time >= self.every_seconds:
            self._last_done, self._last_time = self.done, now
            self.log(self.line(detail))

    def close(self) -> None:
        """Remove the bar, if any (the caller logs its own closing line). Safe to call twice."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable, total: int, desc: str, **options) -> Iterator:
    """Yield the elements of `items` one by one, counting each as one unit of a Progress(total,
    desc, **options) that is closed when the iteration ends or is abandoned. Errors of `items`
    propagate."""
    with Progress(total, desc, **options) as progress:
        for item in items:
            yield item
            progress.update(1)


class Stages:
    """Times the stages of one run, one after another: `start(name)` logs "<prefix>name ..." and
    `end()` logs "<prefix>name done in 3.2s (elapsed 10.5s)" and returns the stage's seconds. The
    finished stages are in `seconds` (name -> seconds rounded to 0.01). `log` receives each line;
    `clock` returns seconds. Raises RuntimeError from end() if no stage was started."""

    def __init__(self, log: Callable[[str], object] = print, prefix: str = "",
                 clock: Callable[[], float] = time.perf_counter):
        self.log, self.prefix, self.clock = log, prefix, clock
        self.started = clock()
        self.seconds: dict[str, float] = {}
        self._current: tuple[str, float] | None = None

    def start(self, name: str) -> None:
        """End the running stage, if any, then start `name` and log its start line."""
        if self._current is not None:
            self.end()
        self._current = (name, self.clock())
        self.log(f"{self.prefix}{name} ...")

    def end(self) -> float:
        """End the running stage: log its time and the run's elapsed time, record it in `seconds`
        and return its seconds (unrounded)."""
        if self._current is None:
            raise RuntimeError("Stages.end() with no stage started")
        name, began = self._current
        now = self.clock()
        self._current = None
        self.seconds[name] = round(now - began, 2)
        self.log(f"{self.prefix}{name} done in {format_seconds(now - began)} "
                 f"(elapsed {format_seconds(now - self.started)})")
        return now - began
