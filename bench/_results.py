"""What every bench script shares: the machine description and appending rows to bench/out/results.csv."""
from __future__ import annotations
import csv, os, platform
from pathlib import Path

OUT = Path(__file__).resolve().parent / 'out'
RESULT_COLS = ['figure', 'ours_s', 'reference', 'reference_s', 'ratio', 'goal', 'size', 'machine']


def machine() -> str:
    "CPU model, cores, torch version (and GPU, if any): the ledger's machine column."
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'): cpu = line.split(':', 1)[1].strip(); break
    except OSError: pass
    try:
        import torch
        tv = f"torch {torch.__version__}"
        if torch.cuda.is_available(): tv += f", {torch.cuda.get_device_name(0)}"
    except Exception: tv = 'torch not importable'
    return f"{cpu}, {os.cpu_count()} cores, {tv}, python {platform.python_version()}"


def append_results(rows: list[list], size: str, out: Path = OUT) -> Path:
    "Append rows [figure, ours_s, reference, reference_s, ratio, goal] (size and machine added) to results.csv."
    out.mkdir(parents=True, exist_ok=True)
    path = out / 'results.csv'; new = not path.exists(); mach = machine()
    with open(path, 'a', newline='') as f:
        w = csv.writer(f)
        if new: w.writerow(RESULT_COLS)
        for r in rows: w.writerow([*r, size, mach])
    return path


def write_growth(name: str, rows: list[dict], out: Path = OUT) -> Path:
    "Write a cost-growth table (one dict per measured size) to growth_<name>.csv; run_all.py puts it in the ledger."
    out.mkdir(parents=True, exist_ok=True)
    path = out / f'growth_{name}.csv'
    with open(path, 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
    return path
