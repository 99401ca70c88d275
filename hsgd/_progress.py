"""Progress of long command-line work (`hsgd run`, `tune`, `sweep`): a tqdm bar with an ETA when
stdout is a terminal, and otherwise the plain periodic lines the library functions print
(`progress=True`), so logs and pipes get no carriage-return bars.

Each helper returns what the library's `progress` argument takes: a callable driving a bar,
or `True` (plain lines).
"""

import shutil
import sys


def _tqdm():
    """tqdm's class when stdout is a terminal and tqdm is installed, else None."""
    if not (hasattr(sys.stdout, "isatty") and sys.stdout.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class _Bar:
    """A bar created on the first report (when the total is known), closed when complete."""

    def __init__(self, tqdm, desc, unit, bar_format=None):
        self._tqdm, self._desc, self._unit, self._format = tqdm, desc, unit, bar_format
        self._bar = None

    def move_to(self, done, total, **postfix):
        if self._bar is None:
            # An unknown terminal size reads as 0 (or -1 in tqdm, which then hides the bar).
            size = shutil.get_terminal_size((100, 24))
            self._bar = self._tqdm(total=total, desc=self._desc, unit=self._unit,
                                   file=sys.stdout, ncols=min(max(size.columns, 0) or 100, 120),
                                   nrows=max(size.lines, 0) or 24, bar_format=self._format)
        self._bar.update(done - self._bar.n)
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)
        if done >= total:
            self._bar.close()


def simulation(label: str):
    """`progress` for the SGD simulators: a bar over simulated time `t` (epochs, iterations or
    $t = k/d$) with its ETA, or True."""
    tqdm = _tqdm()
    if tqdm is None:
        return True
    bar = _Bar(tqdm, label, "t", "{desc}: {percentage:3.0f}%|{bar}| t = {n:.4g}/{total:.4g} "
               "[{elapsed}<{remaining}]")
    return lambda t, t_final: bar.move_to(t, t_final)


def sweep_chunks(label: str = "sweep"):
    """`progress` for [`sweep`][hsgd.sweep]: a bar over chunks (resumed chunks count as done),
    or True."""
    tqdm = _tqdm()
    if tqdm is None:
        return True
    bar = _Bar(tqdm, label, "chunk")
    return lambda chunk, done, total: bar.move_to(done, total)


def tuning_steps(num_steps: int, plain):
    """`progress` for [`tune`][hsgd._tune.tune.tune]: a bar over optimiser steps showing the
    objective, or `plain` (the caller's line printer)."""
    tqdm = _tqdm()
    if tqdm is None:
        return plain
    bar = _Bar(tqdm, "tune", "step")
    return lambda step, value, schedule: bar.move_to(step, num_steps, objective=f"{value:.6g}")
