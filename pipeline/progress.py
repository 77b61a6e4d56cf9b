"""Progress of a long step: rows done, rate and time left, as a bar in a terminal and as a line every
`LOG_EVERY_S` seconds in a log file (a bar's carriage returns make a log file unreadable)."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator

import pyarrow as pa

log = logging.getLogger("pairforge.progress")
LOG_EVERY_S = 15.0


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def line(label: str, done: int, total: int, elapsed: float) -> str:
    """`EmbedBatch: 4,096 / 6,292 rows (65%), 36.1 rows/s, 1m01s left`."""
    rate = done / elapsed if elapsed > 0 else 0.0
    left = f", {_duration((total - done) / rate)} left" if rate and done < total else ""
    return f"{label}: {done:,} / {total:,} rows ({done / max(1, total):.0%}), {rate:.1f} rows/s{left}"


def tracked(results: Iterator[pa.Table], label: str, total: int) -> Iterator[pa.Table]:
    """`results`, passed through, counting their rows against `total`."""
    started = last = time.monotonic()
    done = 0
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, desc=label, unit=" rows", unit_scale=True, leave=False, file=sys.stderr)
    try:
        for table in results:
            done += table.num_rows
            if bar is not None:
                bar.update(table.num_rows)
            elif time.monotonic() - last >= LOG_EVERY_S and done < total:
                last = time.monotonic()
                log.info("%s", line(label, done, total, last - started))
            yield table
    finally:
        if bar is not None:
            bar.close()
