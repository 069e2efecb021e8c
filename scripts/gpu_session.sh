#!/usr/bin/env bash
# One call of the run tool on a lent GPU machine (no package index, no DALI; see
# ../shared/gpu/README.md). The device time is 15 minutes in all, at most 8 result files come
# back, and one command may run 600 s. So:
#   here:   bash ../shared/gpu/make-parts.sh
#   then:   four back-to-back calls, each carrying .gpu/p<k> and .gpu/setup.sh:
#             bash scripts/gpu_session.sh setup      (x3; each installs its part)
#             bash scripts/gpu_session.sh first      (the 4th part, then the plan below, ~6 min)
#           leaving the rest of the budget for ONE rerun of `first` (or a single stage) after a fix.
#           Give `first` timeout_s=480: the last part's install, then the plan's 345 s of limits.
#
# Everything a stage writes goes under a work folder ($WORK/<stage>); after EVERY step the
# whole folder is packed into ONE archive, $OUT/gpu-<stage>.tar.gz (replaced atomically), so a
# call killed at its limit still brings back what it had, and one file comes back, not 8+.
# Every step has its own time limit (timeout; pytest gets SIGINT so it still prints its
# summary), and a step that needs the GPU reports itself skipped where there is none: a dry run
# on a CPU machine (PYTHON=.venv/bin/python bash scripts/gpu_session.sh first) runs the doctor
# in CPU mode and leaves the archive with the step log.
#
# first (the plan; limits in seconds, 345 in all):
#   doctor 75      python -m dali_voc doctor --json: environment, every path against the reference
#   tests 70       the most telling gpu tests first (GPU_TESTS_FIRST), then a few bad-input cases
#   tree 50        a VOC-sized synthetic train split (1464 + 64 val); complete only with its manifest
#   bench 100      the rows benchmarks.targets reads (4 and 8 threads, shorter repetitions)
#   targets 10     python -m benchmarks.targets on that run
#   train 40       python -m benchmarks.train_e2e, DALI backend, 30 steps
# Other stages (each alone in a call, with its own archive): tests (every gpu test), bench
# (the full targets run), bench16, hwload, aug, datasets, train (fp32 and bf16), tune, profile.
# No CPU-only work runs on the device (label_host, reference rows, CPU-only test files).
set -uo pipefail
export PYTHONUNBUFFERED=1
stage=${1:-first}
OUT=${OUT:-out/gpu}
WORK=${WORK:-/tmp/gpu-work}/$stage
PY=${PYTHON:-python3}
ARCHIVE="$OUT/gpu-$stage.tar.gz"
tree=${TREE:-/tmp/voc-synth}
mkdir -p "$OUT" "$WORK"
: > "$WORK/steps.txt"

pack() {  # the work folder -> one archive in $OUT (rename: never a half-written archive)
    tar czf "$OUT/.gpu-$stage.partial" -C "$WORK" . 2>/dev/null && mv -f "$OUT/.gpu-$stage.partial" "$ARCHIVE"
}

log() { echo "gpu_session: $*" | tee -a "$WORK/steps.txt"; }

# step NAME LIMIT_S KIND COMMAND...: run COMMAND (an executable, not a function) into
# $WORK/NAME.txt under a time limit, show its tail, log its status, pack. KIND: gpu (skipped
# without a GPU), tree (skipped without a GPU or a complete tree) or any.
step() {
    local name=$1 limit=$2 kind=$3 start=$SECONDS rc
    shift 3
    if [ "$kind" != any ] && [ "$gpu" != 1 ]; then log "$name: skipped (no GPU here)"; pack; return 0; fi
    if [ "$kind" = tree ] && ! tree_complete; then log "$name: skipped (no complete tree at $tree)"; pack; return 0; fi
    echo "== $name (limit ${limit}s): $*"
    timeout -s INT -k 15 "$limit" "$@" > "$WORK/$name.txt" 2>&1
    rc=$?
    tail -n 12 "$WORK/$name.txt"
    [ $rc = 124 ] || [ $rc = 130 ] || [ $rc = 137 ] && log "$name: TIME LIMIT ${limit}s reached (rc $rc)" \
        || log "$name: rc $rc after $((SECONDS - start)) s (limit $limit)"
    pack
    return $rc
}

# The synthetic tree is complete only when synth wrote its manifest (its last file); a tree cut
# short by the time limit has none and synth rewrites it on the next call.
tree_complete() { [ -f "$tree/VOCdevkit/VOC2012/dali_voc_synth.json" ]; }

# setup: install the carried bundle part (four calls); on a machine without .gpu/ (a dry run) skip.
if [ -f .gpu/setup.sh ]; then
    bash .gpu/setup.sh > "$WORK/setup.txt" 2>&1
    tail -n 3 "$WORK/setup.txt"
    [ -d /tmp/site ] && export PYTHONPATH=$PWD:/tmp/site || export PYTHONPATH=$PWD
else
    log "setup: no .gpu/setup.sh here (dry run?): using $PY as it is"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
if ! "$PY" -c "import nvidia.dali" 2>/dev/null; then
    log "DALI does not import yet (carry the remaining parts)"; pack; exit 0
fi
gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    gpu=1
    nvidia-smi > "$WORK/nvidia-smi.txt" 2>&1
fi
log "stage $stage: GPU $([ $gpu = 1 ] && echo yes || echo 'no (GPU steps skip)'), python $("$PY" -c 'import sys; print(sys.version.split()[0])')"

ignore=()
"$PY" -c "import hypothesis" 2>/dev/null || ignore=(--ignore=tests/test_colors.py --ignore=tests/test_png.py --ignore=tests/test_windows.py)
pytest_args=(-q -rs --tb=short -p no:cacheprovider)

# The gpu tests that say most in least time, in order: the GPU label kernels against NumPy and
# PIL, the stream hand-off guards, the GPU paths against the reference (real JPEGs), the two
# label decoders against each other, then a few bad-input cases.
GPU_TESTS_FIRST=(
    "tests/test_gpu.py::test_kernel_matches_numpy_on_every_color_void_and_unknowns"
    "tests/test_gpu.py::test_gpu_png_decoder_matches_pil_on_synthetic_labels_and_every_filter_type"
    "tests/test_gpu.py::test_gpu_png_decoder_consumer_waits_for_a_late_producer"
    "tests/test_gpu.py::test_gpu_png_decoder_output_is_ready_on_the_callers_side_stream"
    "tests/test_gpu.py::test_gpu_pipeline_labels_equal_reference_and_images_within_tolerance"
    "tests/test_gpu.py::test_gpu_crops_sit_at_the_windows_the_cpu_pipeline_draws"
    "tests/test_gpu.py::test_gpu_images_are_cropped_at_the_reported_window"
    "tests/test_gpu.py::test_gpu_loader_with_nvcomp_labels_equals_stock_labels"
    "tests/test_gpu.py::test_gpu_png_decoder_names_labels_with_damaged_image_data"
    "tests/test_bad_input.py::test_decode_faults_raise_naming_the_file[truncated-label-dali-gpu-nvcomp]"
    "tests/test_bad_input.py::test_decode_faults_raise_naming_the_file[truncated-image-dali-gpu-stock]"
    "tests/test_bad_input.py::test_handled_inputs_decode_identically_on_every_path[cmyk-jpeg-dali-gpu-nvcomp]"
    "tests/test_bad_input.py::test_handled_inputs_decode_identically_on_every_path[rgb-label-dali-gpu-nvcomp]"
    "tests/test_gpu.py"
)
TARGET_ROWS=(dali-gpu-4t dali-gpu-8t dali-gpu-stockpng-8t jpeg-ceiling)

make_tree() { step tree "$1" gpu "$PY" -m dali_voc synth --root "$tree" --num-train 1464 --num-val 64 --workers 16; }
targets() { local r="$1/throughput.json"; [ -f "$r" ] || r="$1/throughput.partial.json"; step targets 10 tree "$PY" -m benchmarks.targets "$r"; }

case "$stage" in
    setup) log "setup done" ;;
    first)
        step doctor 75 any "$PY" -m dali_voc doctor --seconds 1.5 --no-progress --json "$WORK/doctor.json"
        step tests 70 gpu "$PY" -m pytest "${pytest_args[@]}" "${GPU_TESTS_FIRST[@]}"
        make_tree 50
        step bench 100 tree "$PY" -m benchmarks.throughput --root "$tree" --threads 4 8 --seconds 2 --repeats 3 \
            --warmup 5 --only "${TARGET_ROWS[@]}" --out "$WORK/bench" --no-progress
        targets "$WORK/bench"
        step train 40 tree "$PY" -m benchmarks.train_e2e --root "$tree" --batch-size 32 --steps 30 --backends dali \
            --out "$WORK/bench" ;;
    tests)
        step tests 540 gpu "$PY" -m pytest "${pytest_args[@]}" -s -m gpu "${ignore[@]}" ;;
    bench)
        make_tree 120
        step bench 420 tree "$PY" -m benchmarks.throughput --root "$tree" --threads 4 8 --seconds 3 --repeats 5 \
            --warmup 10 --only "${TARGET_ROWS[@]}" --out "$WORK/bench" --no-progress
        targets "$WORK/bench" ;;
    bench16)
        make_tree 120
        step bench16 400 tree "$PY" -m benchmarks.throughput --root "$tree" --threads 16 --seconds 3 --repeats 5 \
            --warmup 10 --only dali-gpu jpeg --out "$WORK/bench16" --no-progress ;;
    hwload)  # does sending every JPEG to the hardware decoder help with few CPU threads?
        make_tree 120
        for load in 0.9 1.0; do
            step "hwload-$load" 200 tree "$PY" -m benchmarks.throughput --root "$tree" --threads 4 8 --seconds 3 \
                --repeats 3 --warmup 10 --only dali-gpu-4t dali-gpu-8t jpeg-ceiling --hw-decoder-load $load \
                --out "$WORK/hwload-$load" --no-progress
        done ;;
    aug)
        make_tree 120
        step aug 420 tree "$PY" -m benchmarks.throughput --root "$tree" --threads 8 --seconds 3 --repeats 3 --warmup 5 \
            --only aug --out "$WORK/aug" --no-progress ;;
    datasets)  # what PNG images cost on the GPU path against JPEG datasets
        for dataset in ade20k cityscapes; do
            step "$dataset" 270 gpu "$PY" -m benchmarks.throughput --dataset $dataset --synth-images 128 --threads 8 \
                --seconds 3 --repeats 3 --warmup 3 --only reference-textbook dali-cpu dali-gpu-8t --out "$WORK/$dataset" \
                --no-progress
        done ;;
    train)
        make_tree 120
        step train 200 tree "$PY" -m benchmarks.train_e2e --root "$tree" --batch-size 32 --steps 50 --out "$WORK/bench"
        step train-amp 200 tree "$PY" -m benchmarks.train_e2e --root "$tree" --batch-size 32 --steps 50 --amp \
            --out "$WORK/bench-amp" ;;
    tune)
        make_tree 120
        step tune 400 tree "$PY" -m benchmarks.throughput --root "$tree" --threads 8 --seconds 3 --repeats 5 \
            --warmup 10 --only dali-gpu-8t tune --out "$WORK/tune" --no-progress ;;
    profile)
        make_tree 120
        step profile 300 tree "$PY" -m benchmarks.profile_loader --root "$tree" --row dali-gpu-8t --out "$WORK/profile" ;;
    *) echo "usage: bash scripts/gpu_session.sh setup|first|tests|bench|bench16|hwload|aug|datasets|train|tune|profile"
       exit 2 ;;
esac
pack
log "done; $ARCHIVE holds $(tar tzf "$ARCHIVE" | grep -vc '/$') files"
pack
