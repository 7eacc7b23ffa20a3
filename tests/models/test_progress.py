"""tagger.models.progress: off a terminal, long steps print lines with elapsed time and an ETA;
the job's stages print a line as each starts and ends.

Breaks these catch: dropping the ETA or elapsed time from Progress.line; printing on every update
(or never) off a terminal; choosing a bar when stdout is a file or a pipe."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tagger.models.progress import Progress, Stages, format_seconds, on_terminal, track


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_lines_every_tenth_of_the_work_with_elapsed_time_and_eta():
    clock, lines = FakeClock(), []
    progress = Progress(100, "[gate] epoch 1/3", log=lines.append, unit="batch", bar=False, clock=clock)
    for _ in range(100):
        clock.now += 1.0  # one second per batch
        progress.update(1)
    assert len(lines) == 10
    assert lines[0] == "[gate] epoch 1/3: 10/100 batches (10%), elapsed 10s, ETA 1m30s"
    assert lines[4] == "[gate] epoch 1/3: 50/100 batches (50%), elapsed 50s, ETA 50s"
    assert lines[-1] == "[gate] epoch 1/3: 100/100 batches (100%), elapsed 1m40s, ETA 0.0s"


def test_a_slow_step_still_prints_every_30_seconds():
    clock, lines = FakeClock(), []
    progress = Progress(1000, "seeding", log=lines.append, unit="row", bar=False, clock=clock)
    for _ in range(3):
        clock.now += 31.0  # far less than 10% of the work, but more than 30 s
        progress.update(1, detail="(pool done)")
    assert len(lines) == 3
    assert lines[0].startswith("seeding: 1/1,000 rows (0%) (pool done), elapsed 31s, ETA ")
    assert lines[2].endswith("elapsed 1m33s, ETA 8h35m")


def test_nothing_is_printed_between_thresholds_or_when_disabled():
    clock, lines = FakeClock(), []
    progress = Progress(100, "x", log=lines.append, bar=False, clock=clock)
    progress.update(9)
    assert lines == []
    Progress(100, "y", log=lines.append, bar=False, enabled=False, clock=clock).update(100)
    assert lines == []


def test_track_counts_each_element_and_an_eta_is_unknown_before_the_first():
    clock, lines = FakeClock(), []
    assert Progress(5, "z", log=lines.append, bar=False, clock=clock).eta() is None
    assert list(track(range(5), 5, "z", log=lines.append, bar=False, every_fraction=0.2, clock=clock)) == [0, 1, 2, 3, 4]
    assert [ln.split(":")[1].split(",")[0].strip() for ln in lines] == [f"{i}/5 steps ({i * 20}%)" for i in range(1, 6)]


@pytest.mark.parametrize("seconds,text", [(0.42, "0.4s"), (42, "42s"), (185, "3m05s"), (3720, "1h02m"),
                                          (None, "?"), (float("nan"), "?"), (-1, "?")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_off_a_terminal_lines_are_chosen_not_a_bar():
    # stdout and stderr are pipes here, as under `make run > log` or a scheduler
    code = ("from tagger.models.progress import Progress, on_terminal; "
            "p = Progress(10, 'x', log=print); print(on_terminal(), p._bar is None)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
    assert on_terminal() is False  # pytest captures both streams


def test_stages_log_start_and_end_with_seconds():
    clock, lines = FakeClock(), []
    stages = Stages(lines.append, prefix="[2024-01-05] stage ", clock=clock)
    stages.start("prepare")
    clock.now += 2.5
    stages.start("tag")  # ends prepare
    clock.now += 12.0
    assert stages.end() == pytest.approx(12.0)
    assert lines == ["[2024-01-05] stage prepare ...", "[2024-01-05] stage prepare done in 2.5s (elapsed 2.5s)",
                     "[2024-01-05] stage tag ...", "[2024-01-05] stage tag done in 12s (elapsed 14s)"]
    assert stages.seconds == {"prepare": 2.5, "tag": 12.0}
    with pytest.raises(RuntimeError):
        stages.end()


def test_tree_cpu_seconds_counts_a_child_that_is_still_running():
    """The demo's CPU-seconds include the Spark JVM and its workers: children alive for the whole run,
    which resource.getrusage(RUSAGE_CHILDREN) would not count until they exit."""
    import subprocess
    import sys
    import time

    from tagger.models.progress import tree_cpu_seconds

    before = tree_cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", "import time\nt = time.process_time()\n"
                              "while time.process_time() - t < 0.6: pass\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while tree_cpu_seconds() - before < 0.5 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert tree_cpu_seconds() - before >= 0.5 and child.poll() is None
    finally:
        child.kill()
        child.wait()
