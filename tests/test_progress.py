"""kit.progress: plain, sparse lines when the output is a log rather than a terminal."""
from __future__ import annotations

import io

from kit.progress import LineProgress, progress


def test_log_output_is_sparse_whole_lines():
    buf = io.StringIO()
    for _ in progress(range(10_000), desc="work", file=buf, leave=False):
        pass
    text = buf.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert 1 <= len(lines) <= 3                 # start and end, never one per step
    assert lines[-1].startswith("work: 100%") and "10000/10000" in lines[-1]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_terminal_gets_a_normal_bar():
    bar = progress(range(3), file=Terminal())
    assert not isinstance(bar, LineProgress)
    list(bar)
