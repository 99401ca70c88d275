"""Shared helpers for the benchmark scripts: timing after warm-up and atomic JSON output."""

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", default=None, help="folder for the JSON (default: next to script)")
    p.add_argument("--float32", action="store_true", help="run in float32 (default float64)")
    return p


def setup(args):
    if not args.float32:
        jax.config.update("jax_enable_x64", True)


def timed(fn, repeats: int = 3):
    """(first-call seconds, best-of-`repeats` seconds after warm-up, result)."""
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return first, best, out


def write(args, script: str, payload: dict) -> Path:
    folder = Path(args.out) if args.out else Path(script).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (Path(script).stem + ".json")
    payload = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "jax": jax.__version__, "backend": jax.default_backend(),
                           "x64": bool(jax.config.jax_enable_x64)}, **payload}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
    return path


def run_parts(args, script: str, hsgd, parts) -> Path:
    """Run each `(name, fn)` of `parts` not named in `args.skip` as `fn(hsgd)` and write their
    results, keyed by name, to the script's JSON."""
    payload = {}
    for name, fn in parts:
        if name not in args.skip:
            print(f"--- {name}", flush=True)
            payload[name] = fn(hsgd)
    return write(args, script, payload)
