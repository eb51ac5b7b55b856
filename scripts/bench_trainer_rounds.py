#!/usr/bin/env python3
"""Side-by-side rounds of the burn trainer bench and its PyTorch + PEFT reference.

Each round runs, one after the other: the burn bench with the micro-batch packed, the burn bench
with the micro-batch as plain rows, and scripts/bench_trainer_torch.py — all with the same
BENCH_TOKENS, BENCH_RUNS and thread count. Around each run it records the 1-minute load average,
the CPU time the rest of the machine used while it ran (all busy time in /proc/stat minus the
run's own) and the time the run spent stopped (SIGSTOP from another benchmark's quiet window). A
disturbed run (stopped > 0.5 s, or other work > 10 % of a core) is run again, up to --tries
times. Before a run it waits (up to --wait seconds) until the machine uses less than --quiet
cores over 5 seconds.

Usage: python3 scripts/bench_trainer_rounds.py --burn target/release/deps/train_step-HASH
           [--rounds 3] [--threads 2] [--out target/bench/trainer_rounds.json]
(build the bench first: cargo bench --locked -p debias-guard-trainer --bench train_step --no-run)
"""
import argparse
import json
import os
import re
import resource
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(reference pass|train micro-batch).*?median\s+([\d.]+) ms")


def busy_seconds():
    """CPU seconds the whole machine spent busy since boot (user+nice+system+irq+softirq+steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def load1():
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_quiet(threshold, limit):
    """Waits until the machine's busy CPU over 5 s is below `threshold` cores (or `limit` s)."""
    start = time.time()
    while time.time() - start < limit:
        busy = busy_seconds()
        time.sleep(5)
        if (busy_seconds() - busy) / 5 < threshold:
            break
    return time.time() - start


def stopped(pid):
    """Whether process `pid` is stopped (SIGSTOP), from /proc."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "tT"
    except (OSError, IndexError):
        return False


def run(name, cmd, env):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy0, load0, t0 = busy_seconds(), load1(), time.time()
    child = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    # Time spent stopped: the child seen stopped, or this process itself stopped (a poll gap).
    paused, last = 0.0, time.time()
    while child.poll() is None:
        time.sleep(0.2)
        now = time.time()
        if now - last > 1.0:
            paused += now - last - 0.2
        elif stopped(child.pid):
            paused += now - last
        last = now
    out = child.stdout.read()
    if child.returncode != 0:
        raise SystemExit(f"{name} failed with exit code {child.returncode}")
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    foreign = busy_seconds() - busy0 - own
    medians = {m.group(1): float(m.group(2)) for m in map(LINE.match, out.splitlines()) if m}
    record = {
        "name": name,
        "reference_ms": medians.get("reference pass"),
        "train_ms": medians.get("train micro-batch"),
        "wall_s": wall,
        "own_cpu_s": own,
        "foreign_cpu_s": max(foreign, 0.0),
        "paused_s": paused,
        "load_before": load0,
        "load_after": load1(),
    }
    print(json.dumps(record), flush=True)
    return record


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--burn", required=True, help="the built train_step bench binary")
    p.add_argument("--python", default=str(ROOT / ".venv-train-ref/bin/python"))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quiet", type=float, default=0.3, help="busy cores to wait for")
    p.add_argument("--wait", type=float, default=300, help="longest wait for a quiet machine, s")
    p.add_argument("--tries", type=int, default=3, help="runs of a disturbed measurement")
    p.add_argument("--out", default=str(ROOT / "target/bench/trainer_rounds.json"))
    args = p.parse_args()

    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    torch_cmd = [args.python, "scripts/bench_trainer_torch.py", "--threads", str(args.threads)]
    plan = [
        ("burn packed", [args.burn], dict(env, BENCH_LAYOUT="packed")),
        ("burn rows", [args.burn], dict(env, BENCH_LAYOUT="rows")),
        ("torch rows", torch_cmd, dict(env, TQDM_DISABLE="1")),
    ]
    records = []
    for r in range(args.rounds):
        for name, cmd, run_env in plan:
            for attempt in range(1, args.tries + 1):
                waited = wait_quiet(args.quiet, args.wait)
                record = run(name, cmd, run_env)
                record.update(round=r + 1, attempt=attempt, waited_s=waited)
                disturbed = (
                    record["paused_s"] > 0.5 or record["foreign_cpu_s"] > 0.1 * record["wall_s"]
                )
                if not disturbed:
                    break
                print(f"{name}: disturbed (paused or other work), running it again", flush=True)
            records.append(record)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
