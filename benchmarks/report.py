"""Machine description, the comparison table, and the PNG bar chart of a benchmark run."""

from __future__ import annotations

import datetime
import importlib
import os
import platform
from typing import Optional

from PIL import Image, ImageDraw

from dali_voc.config import usable_cpu_count


def _version(module: str) -> Optional[str]:
    try:
        return getattr(importlib.import_module(module), "__version__", "?")
    except Exception:
        return None


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """GPU, CPU and library versions, for printing next to the figures."""
    import torch
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "gpu": gpu,
        "cuda": torch.version.cuda if gpu else None,
        "cpu": _cpu_model(),
        "cpu_cores_usable": usable_cpu_count(),
        # other work on the machine (1, 5, 15 minutes) when the figures were taken: on a shared
        # machine, compare rows of one run only
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "versions": {name: _version(mod) for name, mod in (
            ("torch", "torch"), ("nvidia-dali", "nvidia.dali"), ("cupy", "cupy"),
            ("torchvision", "torchvision"), ("numpy", "numpy"), ("pillow", "PIL"), ("dali_voc", "dali_voc"))},
    }


def format_table(result: dict) -> str:
    """The comparison table as text: one line per row, skipped rows with their reason."""
    m = result["machine"]
    lines = [
        f"machine: GPU {m['gpu'] or 'none'}; CPU {m['cpu']} ({m['cpu_cores_usable']} usable cores); "
        f"Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v),
        f"settings: batch {result['settings']['batch_size']}, crop {result['settings']['crop']}, "
        f"{result['settings']['repeats']} x >= {result['settings']['seconds']} s timed after "
        f"{result['settings']['warmup_batches']} warm-up batches; tree {result['settings']['root']} "
        f"({result['settings']['train_images']} train images kept); hardware JPEG decoder load "
        f"{result['settings'].get('hw_decoder_load', 'default')} (GPU rows)",
        "",
        f"{'row':<30} {'images/s median [min-max]':>28} {'vs textbook':>11} {'1st batch':>9} "
        f"{'RSS MiB':>8} {'PSS MiB':>8} {'all MiB':>8} {'GPU MiB':>8} {'threads':>7} {'busy':>5} {'CPU ms/img':>10}",
    ]
    for row in result["rows"]:
        if row["status"] != "ok":
            lines.append(f"{row['name']:<30} {row['status'].upper()}: {row['reason']}")
            continue
        f = row["figures"]
        rate = f"{f['images_per_s_median']:,.0f} [{f['images_per_s_min']:,.0f}-{f['images_per_s_max']:,.0f}]"
        speed = f"{row['speedup']:.2f}x" if row.get("speedup") else "-"
        gpu = f"{f['peak_gpu_mb']:,.0f}" if f["peak_gpu_mb"] is not None else "-"
        lines.append(f"{row['name']:<30} {rate:>28} {speed:>11} {f['first_batch_s']:>8.2f}s "
                     f"{f['peak_rss_mb']:>8,.0f} {f.get('peak_tree_pss_mb', 0.0):>8,.0f} "
                     f"{f.get('peak_tree_footprint_mb', 0.0):>8,.0f} {gpu:>8} "
                     f"{f['cpu_threads']:>7} {f['cpu_busy_cores']:>5.1f} {f.get('cpu_ms_per_image', 0.0):>10.2f}")
    lines.append("")
    lines += [f"  {row['name']}: {row['what']}" for row in result["rows"]]
    return "\n".join(lines)


def save_chart(result: dict, path) -> None:
    """Horizontal bars of median images/s with min-max whiskers; skipped rows are listed."""
    rows = [r for r in result["rows"] if r["status"] == "ok"]
    skipped = [r for r in result["rows"] if r["status"] != "ok"]
    label_w, bar_w, row_h, top = 200, 520, 28, 40
    height = top + row_h * (len(rows) + len(skipped)) + 40
    img = Image.new("RGB", (label_w + bar_w + 120, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 10), f"images/s, batch {result['settings']['batch_size']}, crop {result['settings']['crop']}; "
                        f"GPU: {result['machine']['gpu'] or 'none'}", fill="black")
    peak = max([r["figures"]["images_per_s_max"] for r in rows] + [1.0])
    for i, r in enumerate(rows):
        f = r["figures"]
        y = top + i * row_h
        scale = bar_w / peak
        draw.text((10, y + 7), r["name"], fill="black")
        draw.rectangle([label_w, y + 4, label_w + f["images_per_s_median"] * scale, y + row_h - 4],
                       fill=(70, 130, 180))
        lo, hi = label_w + f["images_per_s_min"] * scale, label_w + f["images_per_s_max"] * scale
        draw.line([lo, y + row_h // 2, hi, y + row_h // 2], fill="black", width=2)
        draw.text((max(hi, label_w + f["images_per_s_median"] * scale) + 8, y + 7), f"{f['images_per_s_median']:,.0f}",
                  fill="black")
    for j, r in enumerate(skipped):
        y = top + (len(rows) + j) * row_h
        draw.text((10, y + 7), f"{r['name']}: {r['status']} ({r['reason']})", fill=(150, 60, 60))
    img.save(path)
