"""``python -m dali_voc doctor``: does dali_voc work on this machine, and which path is fast here?

Three parts, printed and (``--json``) written:

1. **Environment**: Python, torch (and its CUDA), DALI, CuPy, nvCOMP, torchvision, the GPU
   (name, memory, driver), CPU cores; what ``load_data_voc(64, (320, 480))`` resolves to here
   and, where a faster path exists, why it is not used and what to install.
2. **Agreement**: on a small generated tree (:func:`make_doctor_tree`: JPEG images above, at
   and below the crop, palette labels and class-index labels, a grayscale and a CMYK JPEG, an
   RGB label and a label with a short palette), every path available here (:data:`PATHS`)
   runs one epoch of each :data:`CHECKS` entry with ``return_meta=True``, and every sample is
   re-created on the reference path at the parameters the path drew (:func:`recreate`).
   Labels must match pixel for pixel; images must stay within the path's bound
   (:func:`image_bound`). The reference path is checked against itself (its ``DataLoader``
   batches against the sample-by-sample re-creation).
3. **Speed**: a few seconds of the textbook crop per path, images/s, on the same tree: a
   first look at which path is fast here (``python -m benchmarks.throughput`` measures).

Exit code 0 only when every path that runs here agrees (:func:`run_doctor`).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..config import IMAGENET_STD, LoaderConfig
from ..progress import progress_bar

#: Batch size of the agreement checks and the speed runs (small: the tree is small).
BATCH_SIZE = 4
CROP = (320, 480)

#: Image bounds in uint8 levels of the de-normalized image, ``(max, mean)`` per kind of path.
#: CPU paths decode JPEG with libjpeg-turbo as PIL does, so crops differ by float rounding of
#: the normalization (``tests/test_dali_cpu.py`` allows 1e-5 in normalized units, 0.0006
#: levels; measured 4.8e-7). DALI's CPU resize against PIL's (augmentation): 1.5 levels
#: (``tests/test_augment.py``, measured 1.0). GPU JPEG decoders (nvJPEG, the hardware
#: decoder) round differently from libjpeg-turbo: the bounds of ``tests/helpers.py``, not yet
#: measured on a GPU.
CPU_LEVELS = (0.001, 0.001)
CPU_RESIZE_LEVELS = (1.5, 1.5)
GPU_LEVELS = (64.0, 2.0)


@dataclass(frozen=True)
class PathSpec:
    """One way of loading: a name, words, and the config fields that select it."""

    name: str
    description: str
    options: dict

    @property
    def gpu(self) -> bool:
        return self.options.get("device") == "gpu"


PATHS: tuple[PathSpec, ...] = (
    PathSpec("reference", "PIL + NumPy on the CPU (the oracle)", dict(backend="reference", num_workers=0)),
    PathSpec("dali-cpu", "DALI CPU operators, labels inflated by zlib on CPU threads (the nvCOMP path's plan)",
             dict(backend="dali", device="cpu", label_decoder="zlib")),
    PathSpec("dali-cpu-stock", "DALI CPU operators, labels by DALI's PNG decoder + NumPy",
             dict(backend="dali", device="cpu", label_decoder="dali")),
    PathSpec("dali-gpu", "DALI on the GPU, labels by DALI's PNG decoder + CuPy",
             dict(backend="dali", device="gpu", label_decoder="dali")),
    PathSpec("dali-gpu-nvcomp", "DALI on the GPU, labels inflated by nvCOMP + CuPy kernels",
             dict(backend="dali", device="gpu", label_decoder="nvcomp")),
    # the same with libjpeg-turbo's chroma upsampling on the GPU: its speed and image difference
    # against the line above decide that option's default
    PathSpec("dali-gpu-nvcomp-fancy", "as dali-gpu-nvcomp, with jpeg_fancy_upsampling=True",
             dict(backend="dali", device="gpu", label_decoder="nvcomp", jpeg_fancy_upsampling=True)),
)


@dataclass(frozen=True)
class CheckSpec:
    """One agreement check: a dataset layout, a split, config fields and whole-image mode."""

    name: str
    dataset: str
    split: str
    options: dict
    whole: bool = False


CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec("crop, palette labels", "voc", "train", dict(small_images="pad")),
    CheckSpec("crop, class-index labels", "voc_aug", "train_aug", dict(small_images="pad")),
    CheckSpec("augment='torchvision'", "voc", "train", dict(augment="torchvision")),
    CheckSpec("whole-image validation", "voc", "val", {}, whole=True),
)


@dataclass
class CheckResult:
    """One path x check: samples compared, label pixels that differ, image difference in
    uint8 levels (max and mean over samples of the per-sample mean), the bound, the verdict."""

    check: str
    samples: int = 0
    label_pixels_differ: int = 0
    max_image_levels: float = 0.0
    mean_image_levels: float = 0.0
    bound_levels: tuple[float, float] = (0.0, 0.0)
    error: Optional[str] = None
    trace: Optional[str] = None  # the traceback behind ``error`` (JSON only)

    @property
    def agrees(self) -> bool:
        return (self.error is None and self.samples > 0 and self.label_pixels_differ == 0
                and self.max_image_levels <= self.bound_levels[0] and self.mean_image_levels <= self.bound_levels[1])

    @property
    def verdict(self) -> str:
        if self.error is not None:
            return "ERROR"
        if self.samples == 0:
            return "NO SAMPLES"
        return "agrees" if self.agrees else "DIFFERS"


@dataclass
class PathResult:
    """One path: whether it runs here (and why not), its checks and its speed."""

    name: str
    description: str
    available: bool
    reason: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    images_per_s: Optional[float] = None
    speed_error: Optional[str] = None

    @property
    def agrees(self) -> bool:
        return all(c.agrees for c in self.checks)


# -- environment ----------------------------------------------------------------------------------


def _version(module: str) -> Optional[str]:
    try:
        mod = __import__(module, fromlist=["__version__"])
    except Exception as err:  # an installed but broken package is worth reporting, not a crash
        return None if isinstance(err, ImportError) else f"import fails: {type(err).__name__}: {err}"
    return str(getattr(mod, "__version__", "installed"))


def _driver() -> Optional[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def environment() -> dict[str, Any]:
    """What this machine has: versions (``None`` when not installed), GPUs, cores."""
    import torch
    gpus = []
    if torch.cuda.is_available():
        for k in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(k)
            gpus.append({"index": k, "name": props.name, "memory_gib": round(props.total_memory / 2 ** 30, 1),
                         "capability": f"{props.major}.{props.minor}"})
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "dali": _version("nvidia.dali"),
        "cupy": _version("cupy"),
        "nvcomp": _version("nvidia.nvcomp"),
        "torchvision": _version("torchvision"),
        "driver": _driver() if gpus else None,
        "gpus": gpus,
        "cpu_cores": os.cpu_count(),
    }


def default_resolution() -> dict[str, Any]:
    """What ``load_data_voc(64, (320, 480))`` resolves to here (backend, device, label path,
    threads), or the error it raises."""
    from ..errors import DaliVocError
    from ..resolve import resolve
    try:
        r = resolve(LoaderConfig(root=".", batch_size=64, crop_size=CROP, verbose=False))
    except DaliVocError as err:
        return {"error": str(err)}
    return {"backend": r.backend, "device": r.device_name, "label_path": r.label_path, "threads": r.workers,
            "prefetch": r.prefetch, "hw_decoder_load": r.hw_decoder_load}


def faster_path_hints(env: dict[str, Any]) -> list[str]:
    """Why a faster path than the one resolved is not used here, each with what to install."""
    from ..resolve import gpu_package
    if env["dali"] is None:
        return ["DALI is not installed, so the reference path (PIL on CPU workers) loads: "
                "pip install 'dali-voc[cuda13]' (or [cuda12]) for DALI"]
    if not env["gpus"]:
        return [f"torch {env['torch']} sees no CUDA device (its CUDA: {env['torch_cuda'] or 'none, a CPU build'}), "
                "so DALI runs its CPU operators; on a GPU machine install a CUDA build of torch"]
    hints = []
    if env["cupy"] is None:
        hints.append(f"CuPy is not installed, so the GPU loader cannot map labels: pip install {gpu_package('cupy')}")
    if env["nvcomp"] is None:
        hints.append("nvCOMP is not installed, so label PNGs are decoded by DALI on CPU threads: "
                     f"pip install {gpu_package('nvcomp')} to inflate them on the GPU")
    return hints


def path_availability(spec: PathSpec, env: dict[str, Any]) -> str:
    """Why ``spec`` cannot run here, or ``""`` when it can."""
    from ..resolve import gpu_package
    if spec.options["backend"] == "reference":
        return ""
    if env["dali"] is None:
        return "DALI is not installed"
    if spec.gpu and not env["gpus"]:
        return "no CUDA device"
    if spec.gpu and env["cupy"] is None:
        return f"CuPy is not installed ({gpu_package('cupy')})"
    if spec.options.get("label_decoder") == "nvcomp" and env["nvcomp"] is None:
        return f"nvCOMP is not installed ({gpu_package('nvcomp')})"
    return ""


# -- the tree -------------------------------------------------------------------------------------


def _rewrite_image(path: Path, mode: str, box: Optional[tuple[int, int, int, int]] = None) -> None:
    from PIL import Image
    with Image.open(path) as img:
        img = img.convert("RGB")
        if box:
            img = img.crop(box)
        buf = io.BytesIO()
        img.convert(mode).save(buf, format="JPEG", quality=95)
    path.write_bytes(buf.getvalue())


def _rewrite_label(path: Path, edit: Callable) -> None:
    from PIL import Image
    with Image.open(path) as img:
        img.load()
        out = edit(img)
    out.save(path, format="PNG")


def _short_palette(img):
    """The same indices with a palette of 21 entries: void (index 255) has no color."""
    out = img.copy()
    out.putpalette(img.getpalette()[:3 * 21])
    return out


def make_doctor_tree(root: Path) -> dict[str, Any]:
    """Write the doctor's tree under ``root``: a synthetic VOC2012 + SBD tree (palette labels in
    ``SegmentationClass``, class-index labels in ``SegmentationClassAug``, JPEG images) of 12
    train and 6 val images, with awkward cases in the train split: a grayscale JPEG, a CMYK
    JPEG, an RGB label (same colors), a palette label whose palette has 21 entries (void is
    then an unknown color), one sample cut below the crop and one cut to exactly the crop.

    Returns what the tree holds (for the report)."""
    from PIL import Image
    from ..datasets.voc import AUG_LABEL_DIR, IMAGE_DIR, LABEL_DIR, SPLIT_DIR
    from .synth import SynthSpec, VocAugSpec, synthesize
    voc = synthesize(root, "voc_aug", VocAugSpec(SynthSpec(num_train=12, num_val=6, seed=0), num_extra=4),
                     workers=1, progress=False)
    names = (voc / SPLIT_DIR / "train.txt").read_text().split()
    image = lambda k: voc / IMAGE_DIR / f"{names[k]}.jpg"  # noqa: E731
    label = lambda k: voc / LABEL_DIR / f"{names[k]}.png"  # noqa: E731
    _rewrite_image(image(0), "L")
    _rewrite_image(image(1), "CMYK")
    _rewrite_label(label(2), lambda img: img.convert("RGB"))
    _rewrite_label(label(3), _short_palette)
    cases = {"grayscale JPEG": names[0], "CMYK JPEG": names[1], "RGB label": names[2], "21-entry palette": names[3]}
    for k, (h, w), what in ((4, (300, 400), "below the crop"), (5, CROP, "exactly the crop")):
        with Image.open(image(k)) as img:
            width, height = img.size
        h, w = min(h, height), min(w, width)  # synthetic images are VOC-sized: at most 500 wide
        if (h, w) == CROP or h < CROP[0]:
            box = (0, 0, w, h)
            _rewrite_image(image(k), "RGB", box)
            _rewrite_label(label(k), lambda img: img.crop(box))
            _rewrite_label(voc / AUG_LABEL_DIR / f"{names[k]}.png", lambda img: img.crop(box))
            cases[f"{h}x{w} ({what})"] = names[k]
    shapes = []
    for name in names:
        with Image.open(voc / IMAGE_DIR / f"{name}.jpg") as img:
            shapes.append((img.size[1], img.size[0]))
    below = sum(1 for h, w in shapes if h < CROP[0] or w < CROP[1])
    return {"root": str(root), "train": len(names), "val": len((voc / SPLIT_DIR / "val.txt").read_text().split()),
            "train_below_crop": below, "train_at_or_above_crop": len(names) - below, "awkward": cases}


# -- agreement ------------------------------------------------------------------------------------


def check_config(root: Path, path: PathSpec, check: CheckSpec, **extra: Any) -> LoaderConfig:
    """The config of ``path`` running ``check`` on the tree at ``root`` (quiet, with meta)."""
    options = {**path.options, **check.options, **extra}
    if options.get("backend") == "dali":
        options.setdefault("num_workers", min(4, os.cpu_count() or 1))
    config = LoaderConfig(root=root, dataset=check.dataset, batch_size=BATCH_SIZE, crop_size=CROP, seed=0,
                          void_label="ignore", verbose=False, return_meta=True, **options)
    return config.whole_image() if check.whole else config


def image_bound(path: PathSpec, config: LoaderConfig) -> tuple[float, float]:
    """``(max, mean)`` image difference allowed, in uint8 levels (see the module's bounds)."""
    if path.options["backend"] == "reference":
        return (0.0, 0.0)  # its batches ARE its re-creations: bit for bit
    if path.gpu:
        return GPU_LEVELS
    return CPU_RESIZE_LEVELS if config.augmentation.scale_range is not None else CPU_LEVELS


def recreate(reference, position: dict[int, int], batch, k: int):
    """Sample ``k`` of ``batch`` (a :class:`~dali_voc.batch.Batch`) re-created on the
    reference path (``reference``: a :class:`~dali_voc.loaders.reference.SegmentationDataset`)
    at the scale, window, flip and jitter the batch reports. Returns CPU ``(X, Y)``."""
    import torch
    from ..geometry.windows import CropWindow, source_pixels
    from ..loaders.photometric import apply_jitter
    x, y = reference.load(position[int(batch.ids[k])], CropWindow(*batch.windows[k].tolist()),
                          tuple(batch.scaled[k].tolist()), bool(batch.flips[k]))
    if reference.config.augmentation.jitter is None:
        return x, y
    scaled = batch.scaled[k:k + 1].cpu().numpy()
    _, _, row_ok, col_ok = source_pixels(batch.windows[k:k + 1].cpu().numpy(), scaled, reference.config.crop_size,
                                         scaled, batch.flips[k:k + 1].cpu().numpy())
    return apply_jitter(x[None], batch.jitter[k:k + 1].cpu().numpy(), row_ok, col_ok)[0], torch.as_tensor(y)


def _levels(diff):
    """|difference| of normalized images ``[3, h, w]`` (torch) in uint8 levels."""
    import torch
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None] * 255
    return diff.abs() * std


def check_path(root: Path, path: PathSpec, check: CheckSpec) -> CheckResult:
    """Run one epoch of ``check`` on ``path`` and compare every sample with its re-creation."""
    import torch
    from ..loaders.factory import make_loader
    from ..loaders.reference import SegmentationDataset
    result = CheckResult(check.name)
    try:
        config = check_config(root, path, check)
        result.bound_levels = image_bound(path, config)
        with make_loader(config, check.split, shuffle=not check.whole) as loader:
            reference = SegmentationDataset(config, check.split, loader.selection)
            position = {s.index: i for i, s in enumerate(loader.selection.samples)}
            means = []
            for batch in loader:
                images, labels = batch.images.cpu(), batch.labels.cpu()
                for k in range(len(batch.ids)):
                    x_ref, y_ref = recreate(reference, position, batch, k)
                    result.label_pixels_differ += int((labels[k].to(torch.int64) != y_ref.to(torch.int64)).sum())
                    levels = _levels(images[k] - x_ref)
                    result.max_image_levels = max(result.max_image_levels, float(levels.max()))
                    means.append(float(levels.mean()))
                    result.samples += 1
            result.mean_image_levels = float(np.mean(means)) if means else 0.0
    except Exception as err:  # a path that crashes is a finding to report, not a reason to stop
        result.error = f"{type(err).__name__}: {err}"
        result.trace = traceback.format_exc(limit=8)
    return result


def measure_speed(root: Path, path: PathSpec, seconds: float) -> float:
    """Images/s of ``path`` on the textbook crop of the tree's train split, over about
    ``seconds`` after one warm-up batch (whole epochs; on the GPU, synchronized at the end)."""
    import torch
    from ..loaders.factory import make_loader
    config = dataclasses.replace(check_config(root, path, CHECKS[0]), return_meta=False)
    with make_loader(config, "train", shuffle=True) as loader:
        for _ in loader:  # warm-up: the first epoch (pipelines start, kernels compile)
            pass
        images, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for x, _ in loader:
                images += x.shape[0]
        if path.gpu:
            torch.cuda.synchronize()
        return images / (time.perf_counter() - start)


# -- the whole run --------------------------------------------------------------------------------


@dataclass
class DoctorReport:
    environment: dict[str, Any]
    default_loader: dict[str, Any]
    hints: list[str]
    tree: dict[str, Any]
    paths: list[PathResult]

    @property
    def agrees(self) -> bool:
        ran = [p for p in self.paths if p.available]
        return bool(ran) and all(p.agrees for p in ran)

    def to_json(self) -> dict[str, Any]:
        def path_json(p: PathResult) -> dict[str, Any]:
            out = {k: v for k, v in dataclasses.asdict(p).items() if k != "checks"}
            out["agrees"] = p.agrees if p.available else None
            out["checks"] = [{**dataclasses.asdict(c), "verdict": c.verdict, "agrees": c.agrees} for c in p.checks]
            return out
        return {"environment": self.environment, "default_loader": self.default_loader, "hints": self.hints,
                "tree": self.tree, "paths": [path_json(p) for p in self.paths], "agrees": self.agrees}


def run_doctor(tree_root: Path, seconds: float = 3.0, only: Optional[Sequence[str]] = None,
               progress: bool = True) -> DoctorReport:
    """Everything :mod:`dali_voc.tools.doctor` describes, on a tree written at ``tree_root``.

    ``only``: path names to run (default: every path available here); ``seconds``: speed run
    per path (0 skips it)."""
    env = environment()
    report = DoctorReport(env, default_resolution(), faster_path_hints(env), {}, [])
    for spec in PATHS:
        if only and spec.name not in only:
            continue
        reason = path_availability(spec, env)
        report.paths.append(PathResult(spec.name, spec.description, not reason, reason))
    report.tree = make_doctor_tree(tree_root)
    specs = {s.name: s for s in PATHS}
    jobs = [(p, c) for p in report.paths if p.available for c in (*CHECKS, None) if c is not None or seconds > 0]
    bar = progress_bar(jobs, desc="doctor", unit="check", disable=not progress, leave=False)
    for result, check in bar:
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(f"{result.name}: {check.name if check else 'speed'}")
        if check is not None:
            result.checks.append(check_path(tree_root, specs[result.name], check))
            continue
        try:
            result.images_per_s = measure_speed(tree_root, specs[result.name], seconds)
        except Exception as err:
            result.speed_error = f"{type(err).__name__}: {err}"
    return report


def format_report(report: DoctorReport) -> str:
    """The report as text: environment, default loader and hints, then one table per path."""
    env = report.environment
    lines = ["dali_voc doctor", "", "Environment"]
    gpu = "; ".join(f"{g['index']}: {g['name']} ({g['memory_gib']} GiB, sm {g['capability']})"
                    for g in env["gpus"]) or "none"
    for key, value in (("Python", env["python"]), ("platform", env["platform"]),
                       ("torch", f"{env['torch']} (CUDA {env['torch_cuda'] or 'none'})"), ("DALI", env["dali"]),
                       ("CuPy", env["cupy"]), ("nvCOMP", env["nvcomp"]), ("torchvision", env["torchvision"]),
                       ("GPU", gpu), ("driver", env["driver"] or "-"), ("CPU cores", env["cpu_cores"])):
        lines.append(f"  {key:<12} {value if value is not None else 'not installed'}")
    d = report.default_loader
    lines += ["", "load_data_voc(64, (320, 480)) here"]
    if "error" in d:
        lines.append(f"  refused: {d['error']}")
    else:
        hw_load = f", hw JPEG load {d['hw_decoder_load']}" if d["device"] != "cpu" else ""
        lines.append(f"  backend {d['backend']}, device {d['device']}, labels via {d['label_path']}, "
                     f"{d['threads']} CPU threads, {d['prefetch']} batch(es) prefetched{hw_load}")
    lines += [f"  faster path not used: {h}" for h in report.hints] or ["  (the fastest path this library has)"]
    t = report.tree
    lines += ["", f"Agreement on a generated tree ({t.get('train')} train images, {t.get('train_below_crop')} below "
                  f"the crop; {t.get('val')} val; awkward: {', '.join(t.get('awkward', {}))})"]
    for p in report.paths:
        lines += ["", f"[{p.name}] {p.description}"]
        if not p.available:
            lines.append(f"  not run: {p.reason}")
            continue
        lines.append(f"  {'check':<28} {'samples':>7} {'label px differ':>15} {'max img diff':>12} "
                     f"{'mean':>6} {'bound (max/mean)':>17}  verdict")
        for c in p.checks:
            lines.append(f"  {c.check:<28} {c.samples:>7} {c.label_pixels_differ:>15} {c.max_image_levels:>12.4f} "
                         f"{c.mean_image_levels:>6.3f} {c.bound_levels[0]:>8g}/{c.bound_levels[1]:<8g}  {c.verdict}")
            if c.error:
                lines.append(f"    {c.error}")
        if p.images_per_s is not None:
            lines.append(f"  speed: {p.images_per_s:.1f} images/s (textbook crop, batch {BATCH_SIZE}, this small tree)")
        elif p.speed_error:
            lines.append(f"  speed: failed: {p.speed_error}")
    lines += ["", "image differences in uint8 levels; labels must match exactly",
              "verdict: every path agrees" if report.agrees else "verdict: SOME PATH DISAGREES OR FAILED (exit 1)"]
    return "\n".join(lines)


def main(tree: Optional[Path], seconds: float, only: Optional[Sequence[str]], json_path: Optional[Path],
         progress: bool = True) -> int:
    """The ``doctor`` subcommand: print the report, write it as JSON, exit 0 iff all agree."""
    owned = tree is None
    root = Path(tempfile.mkdtemp(prefix="dali_voc_doctor_")) if owned else Path(tree)
    try:
        report = run_doctor(root, seconds, only, progress)
    finally:
        if owned:
            shutil.rmtree(root, ignore_errors=True)
    print(format_report(report), flush=True)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report.to_json(), indent=2, default=str))
        print(f"wrote {json_path}")
    return 0 if report.agrees else 1
