"""Synthetic dataset throughput: render and write N frames with all ground truth (issue 3).

Acceptance: 2,000 frames at 256x512 in under 60 s on the 2-core development machine.

Usage::

    python benchmarks/synth_speed.py                 # 2000 frames, 256x512, all cores
    python benchmarks/synth_speed.py --n 200 --workers 1 --keep out_dir

Prints one JSON line: frames, seconds, frames/s, ms/frame, the time 2,000 frames take at that rate
(the measured time when --n is 2000), CPU ms per frame (all processes), workers, bytes written and
the 1-minute load average before and after the run (the machine is shared: note it with any figure).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from perception.data.synthetic import SynthConfig, parse_size, write_dataset  # noqa: E402
from perception.data.synthetic.sequence import default_workers  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", default="256x512")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", help="write here and keep the dataset (default: a temporary folder)")
    args = parser.parse_args(argv)
    height, width = parse_size(args.size)
    workers = args.workers or default_workers()
    tmp = Path(tempfile.mkdtemp(prefix="synth_speed_"))
    out = Path(args.keep) if args.keep else tmp / "ds"
    load_before = os.getloadavg()[0]
    try:
        start = time.perf_counter()
        cpu0 = os.times()
        write_dataset(out, args.n, seed=args.seed, config=SynthConfig(height=height, width=width),
                      workers=workers, progress=sys.stderr.isatty())
        seconds = time.perf_counter() - start
        cpu1 = os.times()
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system) + (cpu1.children_user - cpu0.children_user) \
        + (cpu1.children_system - cpu0.children_system)
    print(json.dumps({
        "frames": args.n, "size": f"{height}x{width}", "workers": workers, "seconds": round(seconds, 2),
        "frames_per_s": round(args.n / seconds, 1), "ms_per_frame": round(1000 * seconds / args.n, 2),
        "seconds_per_2000_frames": round(2000 * seconds / args.n, 1),
        "cpu_ms_per_frame": round(1000 * cpu / args.n, 2), "bytes": size,
        "load_avg_1min_before": round(load_before, 2), "load_avg_1min_after": round(os.getloadavg()[0], 2),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
