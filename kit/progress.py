"""Progress bars for every long loop: tqdm on a terminal; on a log (Kaggle, CI, a file) a whole line every 30 s."""
from __future__ import annotations

import sys
import time

from tqdm import tqdm

LOG_INTERVAL_S = 30.0


class LineProgress(tqdm):
    """tqdm that writes one plain line per refresh (no \\r), at most every `mininterval` seconds."""

    _wrote = False
    _last = float("-inf")

    def close(self):
        self._last = float("-inf")  # the final line is always written
        super().close()

    def display(self, msg=None, pos=None):
        # set_postfix() and refresh() redraw at will on a terminal; on a log only every mininterval
        now = time.monotonic()
        if self._wrote and now - self._last < self.mininterval:
            return True
        self._last = now
        line = (self.__str__() if msg is None else msg).strip()
        if line:  # newline first: tqdm's close() ends the last line itself
            self.fp.write(("\n" if self._wrote else "") + line)
            self.fp.flush()
            self._wrote = True
        return True


def progress(iterable=None, **kw) -> tqdm:
    """A tqdm bar, or LineProgress when stderr is not a terminal (tqdm's arguments either way)."""
    if kw.get("disable") or getattr(kw.get("file") or sys.stderr, "isatty", lambda: False)():
        return tqdm(iterable, **kw)
    low = max(float(kw.get("mininterval") or 0), LOG_INTERVAL_S)
    kw.update(mininterval=low, maxinterval=max(float(kw.get("maxinterval") or 0), low), leave=True)
    return LineProgress(iterable, **kw)
