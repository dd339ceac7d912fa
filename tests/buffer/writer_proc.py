"""A real edge-side writer process for the kill -9 and disk-full tests.

    python -m tests.buffer.writer_proc DB START COUNT [--batch N] [--fsize BYTES] [--cap-mb MB]

Appends `mixed(START, COUNT)` in batches, flushing after each and printing
``committed <last index>`` once the flush returned; prints ``stats <json>`` at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys

from buffer import LineBuffer
from config.models import BufferConfig, LineIdentity
from tests.buffer.records import mixed


async def main(args: argparse.Namespace) -> None:
    cfg = BufferConfig(path=args.db, max_size_mb=args.cap_mb, memory_bound_records=args.memory_bound)
    ident = LineIdentity(site="dossenheim", area="packaging", id="line3", machine="cartoner")
    buf = await LineBuffer.open(cfg, ident)
    print("ready", flush=True)
    end = args.start + args.count
    for i in range(args.start, end, args.batch):
        n = min(args.batch, end - i)
        await buf.append(mixed(i, n))
        await buf.flush()
        if buf.stats()["held_in_memory"] == 0:
            print(f"committed {i + n - 1}", flush=True)
    await buf.close()
    print("stats " + json.dumps(buf.stats()), flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("db")
    p.add_argument("start", type=int)
    p.add_argument("count", type=int)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--fsize", type=int, default=0)
    p.add_argument("--cap-mb", type=float, default=1024.0)
    p.add_argument("--memory-bound", type=int, default=100_000)
    a = p.parse_args()
    if a.fsize:
        # A write past the limit fails with EFBIG instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (a.fsize, a.fsize))
    asyncio.run(main(a))
    sys.exit(0)
