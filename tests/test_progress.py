"""Progress of `hsgd run`, `tune`, `sweep`: a tqdm bar with ETA on a terminal, the plain periodic
lines otherwise (the library's `progress=True`)."""

import io

import pytest

from hsgd import _progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_when_stdout_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert _progress.simulation("sgd") is True
    assert _progress.sweep_chunks() is True
    plain = object()
    assert _progress.tuning_steps(10, plain) is plain


def test_bars_on_a_terminal(monkeypatch):
    pytest.importorskip("tqdm")
    out = _Terminal()
    monkeypatch.setattr("sys.stdout", out)
    report = _progress.simulation("sgd")
    for t in (0.0, 2.5, 5.0, 10.0):
        report(t, 10.0)
    chunks = _progress.sweep_chunks()
    for done in (3, 4):  # a resumed sweep: 2 chunks were already done
        chunks(done - 1, done, 4)
    steps = _progress.tuning_steps(3, None)
    for step in (1, 2, 3):
        steps(step, 1.0 / step, None)
    text = out.getvalue()
    assert "sgd: 100%" in text and "t = 10/10" in text and "<" in text  # elapsed<remaining
    assert "sweep: 100%" in text and "4/4" in text
    assert "tune: 100%" in text and "objective=0.333333" in text
