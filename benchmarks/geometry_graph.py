"""``python -m benchmarks.geometry_graph``: what drawing each sample's geometry costs in the
DALI graph (the scale, the integer crop anchor shared by image and label, the flip).

Two CPU pipelines over the same JPEG files, on the same threads, timed against each other in
one run: ``base`` reads the files and peeks their headers; ``geometry`` adds
:func:`dali_voc.loaders.pipeline.geometry_in_graph` and the outputs :func:`dali_voc.loaders.pipeline.geometry_outputs`
makes of it, exactly as :func:`dali_voc.loaders.pipeline.build_pipeline` does (with scaling, also the
image resize's region-of-interest inputs). Their difference per
batch (medians of the repetitions) is the graph's price for the geometry, paid on the CPU
whatever device decodes. Also prints how many operators each graph holds.

    python -m benchmarks.geometry_graph --root data/voc-synth [--augment textbook mmseg] \
        [--batch-size 64] [--threads 1] [--batches 50] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Optional, Sequence

from dali_voc.config import LoaderConfig

from .micro import micro_parser, train_samples
from .report import machine_info


def graph_operators(pipe) -> list[tuple[str, str, dict]]:
    """(schema name, device, init arguments) of every operator in a defined DALI graph
    (``pipe._build_graph()`` called). Reads DALI's private graph objects: no public API lists
    operators without CUDA (``Pipeline.serialize`` and ``save_graph_to_dot_file`` create the
    backend, which refuses a GPU pipeline on a machine without CUDA)."""
    found, seen, stack = [], set(), list(pipe._graph_outputs)
    while stack:
        node = stack.pop()
        instance = node.source
        if instance is None or id(instance) in seen:
            continue
        seen.add(id(instance))
        found.append((instance._op.schema_name, instance._op.device, dict(instance._op._init_args)))
        stack.extend(instance.inputs)
    return found


def _pipeline(files: list[str], config: LoaderConfig, threads: int, with_geometry: bool):
    from nvidia.dali import fn, pipeline_def, types

    from dali_voc.loaders.pipeline import geometry_in_graph, geometry_outputs

    @pipeline_def(batch_size=config.batch_size, num_threads=threads, device_id=None, seed=config.seed,
                  prefetch_queue_depth=2)
    def graph():
        jpegs, _ = fn.readers.file(files=files, random_shuffle=False)
        shape = fn.peek_image_shape(jpegs, dtype=types.INT32, adjust_orientation=False)
        if not with_geometry:
            return (shape,)
        geometry = geometry_in_graph(shape, config)
        roi = () if geometry.roi is None else geometry.roi[:3] + geometry.roi.crop_pos  # the resize's inputs
        return geometry_outputs(geometry, config) + roi

    return graph()


def _time(pipe, batches: int) -> float:
    """Milliseconds per batch over ``batches`` runs."""
    start = time.perf_counter()
    for _ in range(batches):
        pipe.run()
    return 1e3 * (time.perf_counter() - start) / batches


def build_parser() -> argparse.ArgumentParser:
    p = micro_parser("python -m benchmarks.geometry_graph", __doc__, batches=50, repeats=7)
    p.add_argument("--augment", nargs="+", default=["textbook", "mmseg"], help="augmentation presets to time")
    p.add_argument("--threads", type=int, default=1)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    samples = train_samples(args.root, args.batch_size)
    if samples is None:
        return 2
    files = [str(s.image) for s in samples]
    result: dict = {"machine": machine_info(), "batch_size": args.batch_size, "threads": args.threads, "presets": {}}
    for preset in args.augment:
        config = LoaderConfig(root=args.root, backend="dali", device="cpu", batch_size=args.batch_size,
                              augment=preset, verbose=False)
        pipes = {kind: _pipeline(files, config, args.threads, kind == "geometry") for kind in ("base", "geometry")}
        operators = {}
        for kind, pipe in pipes.items():
            pipe._build_graph()  # private, as graph_operators says
            operators[kind] = len(graph_operators(pipe))
            pipe.build()
            _time(pipe, 5)  # warm-up
        per_batch: dict[str, list[float]] = {"base": [], "geometry": []}
        for _ in range(args.repeats):  # alternate, so drifts of a shared machine hit both alike
            for kind, pipe in pipes.items():
                per_batch[kind].append(_time(pipe, args.batches))
        medians = {kind: statistics.median(v) for kind, v in per_batch.items()}
        cost = medians["geometry"] - medians["base"]
        result["presets"][preset] = {"operators": operators, "per_batch_ms": per_batch, "median_ms": medians,
                                     "geometry_ms_per_batch": cost}
        print(f"{preset}: {operators['geometry'] - operators['base']} geometry operators "
              f"({operators['geometry']} in all), {cost:.2f} ms per batch of {args.batch_size} on "
              f"{args.threads} thread(s) (base {medians['base']:.2f} ms, with geometry {medians['geometry']:.2f} ms)")
    print(f"({result['machine']['cpu']})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
