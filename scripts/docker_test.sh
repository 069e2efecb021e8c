#!/usr/bin/env bash
# make docker-test: build docker/Dockerfile with the container engine at hand and smoke-test the
# image as its non-root user, in CPU mode:
#   1. python -c "import dali_voc"   2. the CLI's help   3. the default command (the benchmark)
#   on a small synthetic tree, its JSON and chart coming back through a mounted folder;
# then print the image size and the build times, and remove what the build left behind.
#
# Engine: Docker when its daemon answers, else podman. Base image: $CUDA_IMAGE when it can be
# pulled, else (no registry reachable) a local Debian base made with mmdebstrap and imported;
# a host behind a TLS-inspecting proxy gets its extra CA certificates
# (/usr/local/share/ca-certificates/*.crt) added to that local base only. Podman on a locked-down
# host: resource limits it may set and the runc runtime come from a containers.conf
# ($CONTAINERS_CONF), networking is the host's (no iptables needed).
# DOCKER_TEST_REBUILD=1 also measures a rebuild after a code change (a copy of the context with
# one Python file touched): the dependency layer must come from the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
CUDA_IMAGE=${CUDA_IMAGE:-nvidia/cuda:13.0.0-base-ubuntu24.04}
TAG=${DOCKER_TEST_TAG:-localhost/dali-voc:test}
LOCAL_BASE=localhost/dali-voc-base:bookworm
work=$(mktemp -d /tmp/dali_voc_docker.XXXXXX)
log() { echo "docker-test: $*"; }

if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
    engine=docker
elif command -v podman >/dev/null 2>&1; then
    engine=podman
    cat > "$work/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
    export CONTAINERS_CONF=${CONTAINERS_CONF:-$work/containers.conf}
else
    echo "docker-test: no container engine: install Docker, or podman (apt-get install podman mmdebstrap)" >&2
    exit 2
fi
log "engine: $engine ($($engine --version))"

made=()
cleanup() {
    for image in "${made[@]}"; do $engine rmi -f "$image" >/dev/null 2>&1 || true; done
    $engine image prune -f >/dev/null 2>&1 || true          # the build stage's dangling images
    [ "$engine" = docker ] && docker builder prune -af >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

base=$CUDA_IMAGE
if ! timeout 120 $engine pull -q "$CUDA_IMAGE" >/dev/null 2>&1; then
    log "cannot pull $CUDA_IMAGE (no registry reachable): building a local Debian base with mmdebstrap"
    command -v mmdebstrap >/dev/null || { echo "docker-test: mmdebstrap is missing (apt-get install mmdebstrap)" >&2; exit 2; }
    hooks=()
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        hooks=(--customize-hook='copy-in /usr/local/share/ca-certificates /usr/local/share'
               --customize-hook='chroot "$1" update-ca-certificates')
    fi
    mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates "${hooks[@]}" \
        bookworm "$work/base.tar" http://deb.debian.org/debian
    $engine import -q "$work/base.tar" "$LOCAL_BASE" >/dev/null
    made+=("$LOCAL_BASE")
    base=$LOCAL_BASE
fi

build() {  # build CONTEXT LOG: prints the seconds it took; the engine's step-by-step output goes to LOG
    local start=$SECONDS
    local progress=()
    [ "$engine" = docker ] && progress=(--progress=plain)
    $engine build --network host "${progress[@]}" -f "$1/docker/Dockerfile" --build-arg CUDA_IMAGE="$base" \
        -t "$TAG" "$1" > "$2" 2>&1 || { tail -40 "$2" >&2; return 1; }
    echo $((SECONDS - start))
}
cold=$(build . "$work/build-cold.log")
made+=("$TAG")
size=$($engine image inspect "$TAG" --format '{{.Size}}')
log "built $TAG on $base in ${cold} s; image size $((size / 1000000)) MB"

run() { $engine run --rm --network host "$@"; }
user=$(run --entrypoint id "$TAG" -un)
[ "$user" = dali ] || { echo "docker-test: the image runs as '$user', not the non-root user dali" >&2; exit 1; }
run --entrypoint python "$TAG" -c "import dali_voc; print('import dali_voc: ok,', dali_voc.__file__)"
run --entrypoint python "$TAG" -m dali_voc --help >/dev/null && log "python -m dali_voc --help: ok"
out="$work/out"
mkdir -p "$out" && chmod 0777 "$out"   # written by the container's uid 1000
run -v "$out:/app/out" "$TAG" --synth-images 24 --batch-size 4 --seconds 0.5 --repeats 1 --warmup 1 \
    --only reference-textbook dali-cpu
python3 - "$out/throughput.json" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
ok = {r["name"] for r in result["rows"] if r["status"] == "ok"}
assert {"reference-textbook", "dali-cpu"} <= ok, result["rows"]
print("docker-test: benchmark in the container:", ", ".join(
    f"{r['name']} {r['figures']['images_per_s_median']:.0f} images/s" for r in result["rows"] if r["status"] == "ok"))
PY
[ -s "$out/throughput.png" ] || { echo "docker-test: no chart came back" >&2; exit 1; }

if [ "${DOCKER_TEST_REBUILD:-0}" = 1 ]; then
    copy="$work/context"
    mkdir -p "$copy"
    git ls-files -z | xargs -0 cp --parents -t "$copy"
    echo "# touched by docker-test" >> "$copy/dali_voc/__init__.py"
    again=$(build "$copy" "$work/build-again.log")
    # The step that downloads the dependencies must come from the cache (podman: "--> Using
    # cache" after its STEP line; Docker BuildKit: "#N CACHED" for its step number).
    python3 - "$work/build-again.log" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
at = next((i for i, line in enumerate(lines) if "pip install -c constraints.txt -r requirements.txt" in line), None)
assert at is not None, "docker-test: the dependency step is not in the rebuild's output"
step = re.match(r"#(\d+) ", lines[at])
cached = (any(line.strip() == f"#{step.group(1)} CACHED" for line in lines) if step
          else any("Using cache" in line for line in lines[at + 1:at + 4]))
assert cached, "docker-test: the rebuild after a Python change ran the dependency download again"
print("docker-test: rebuild after a Python change: the dependency layer came from the cache")
PY
    grep -E "^STEP|Using cache|^#[0-9]+ (CACHED|\[)" "$work/build-again.log" | cut -c1-140 | sed 's/^/  rebuild: /' || true
    log "rebuild after a Python change: ${again} s (cold build: ${cold} s)"
fi
log "ok: base $base, image $((size / 1000000)) MB, cold build ${cold} s"
