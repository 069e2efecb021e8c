#!/bin/sh
# Runs the throughput benchmark. With a VOC tree mounted at /data (holding VOCdevkit/VOC2012
# or being VOC2012 itself) it uses that; otherwise a synthetic tree is generated in /app/data.
# Extra arguments go to the benchmark, e.g. --threads 4 8 16 --only dali-gpu.
set -e
if [ -d /data/VOCdevkit/VOC2012 ] || [ -d /data/JPEGImages ]; then
    exec python -m benchmarks.throughput --root /data --out /app/out "$@"
fi
echo "no VOC tree mounted at /data: benchmarking a synthetic VOC-like tree" >&2
exec python -m benchmarks.throughput --out /app/out "$@"
