#!/usr/bin/env bash
# On a lent GPU machine (no package index, no DALI; see ../shared/gpu/README.md):
#   here:  bash ../shared/gpu/make-parts.sh
#   then four back-to-back `run` calls, each carrying .gpu/p<k> and .gpu/setup.sh, each running
#          bash scripts/gpu_session.sh STAGE
#   with STAGE = setup, setup, setup, first; then, while device time lasts, `tests`, `bench`,
#   `train` with their full settings (the machine forgets everything after ~30 s idle, so keep
#   the calls back to back).
# Results go under $OUT (the run tool's output folder).
#   first:   what issue #12's "done means" needs, in ONE call of about 8 minutes (a session may
#            have 15 minutes of device time, machine start included): the gpu tests, the label
#            host figure, the throughput rows the targets compare (4 and 8 threads, shorter
#            repetitions), the targets verdict, the tune rows, a short training run. Each part
#            has its own time limit, so a slow part cannot take the later ones with it; where a
#            target is missed, a torch.profiler run of the 8-thread row (benchmarks.profile_loader).
#   profile: that profile alone, with its full settings
#   tests:   the gpu tests (and the CPU-mode DALI tests) with their output
#   bench:   a VOC-sized synthetic train split, then python -m benchmarks.throughput with 4 and 8
#            threads: the rows issue #5's targets compare, in one run (~5 min)
#   bench16: the GPU rows again with 16 threads, and torchvision's decoder (~3 min)
#   hwload:  the 4- and 8-thread GPU rows with the hardware JPEG decoder load at 0.9 and 1.0
#   aug:     the "torchvision" augmentation preset: our GPU loader (8 threads), the CPU loaders
#            and the peer (torchvision v2 transforms in a DataLoader), issue #15 (~4 min)
#   datasets: GPU rows on synthetic ADE20K (JPEG) and Cityscapes (PNG images) trees, issue #17 (~6 min)
#   train:   python -m benchmarks.train_e2e, fp32 and bf16
#   tune:    the 8-thread GPU row against itself with prefetch 3 and with nvCOMP sized from the
#            PNG headers (nvcomp_known_sizes), in one run (~2 min): which default to keep
# Each benchmark writes throughput.partial.json after every row, so a call that hits its
# time limit still brings back the rows it finished.
set -uo pipefail
stage=${1:-tests}
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
bash .gpu/setup.sh || exit 1
if ! PYTHONPATH=/tmp/site python3 -c "import nvidia.dali, nvidia.nvcomp" 2>/dev/null; then
    echo "gpu_session: DALI not installed yet (carry the remaining parts)"; exit 0
fi
export PYTHONPATH=$PWD:/tmp/site
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
ignore=()
python3 -c "import hypothesis" 2>/dev/null || ignore=(--ignore=tests/test_colors.py --ignore=tests/test_png.py --ignore=tests/test_windows.py)
tree=/tmp/voc-synth
# VOC's train split size; the benchmarks read train only, so val is kept small (faster synth)
make_tree() { [ -d $tree/VOCdevkit ] || python3 -m dali_voc synth --root $tree --num-train 1464 --num-val 64 --workers 16; }
case "$stage" in
    setup) echo "gpu_session: setup done" ;;
    tests)
        python3 -m pytest -q -rs -s -m gpu "${ignore[@]}" -p no:cacheprovider 2>&1 | tee "$OUT/gpu-tests.txt"
        python3 -m pytest -q -rs "${ignore[@]}" -p no:cacheprovider tests/test_dali_cpu.py tests/test_label_plan.py tests/test_kernel_sources.py tests/test_loader_api.py \
            tests/test_bad_input.py 2>&1 | tail -5 | tee "$OUT/cpu-mode-tests.txt" ;;
    bench)
        make_tree
        python3 -m benchmarks.label_host --root $tree --json "$OUT/label_host.json" 2>&1 | tee "$OUT/label_host.txt"
        python3 -m benchmarks.throughput --root $tree --threads 4 8 --seconds 3 --repeats 5 --warmup 10 \
            --only reference dali-gpu jpeg-ceiling --out "$OUT/bench" --no-progress 2>&1 | tee "$OUT/bench.txt"
        result="$OUT/bench/throughput.json"; [ -f "$result" ] || result="$OUT/bench/throughput.partial.json"
        python3 -m benchmarks.targets "$result" 2>&1 | tee "$OUT/targets.txt" ;;
    bench16)
        make_tree
        python3 -m benchmarks.throughput --root $tree --threads 16 --seconds 3 --repeats 5 --warmup 10 \
            --only dali-gpu jpeg --out "$OUT/bench16" --no-progress 2>&1 | tee "$OUT/bench16.txt" ;;
    hwload)  # does sending every JPEG to the hardware decoder help with few CPU threads?
        make_tree
        for load in 0.9 1.0; do
            python3 -m benchmarks.throughput --root $tree --threads 4 8 --seconds 3 --repeats 3 --warmup 10 \
                --only dali-gpu-4t dali-gpu-8t jpeg-ceiling --hw-decoder-load $load --out "$OUT/hwload-$load" \
                --no-progress 2>&1 | tee "$OUT/hwload-$load.txt"
        done ;;
    aug)
        make_tree
        python3 -m benchmarks.throughput --root $tree --threads 8 --seconds 3 --repeats 3 --warmup 5 \
            --only aug --out "$OUT/aug" --no-progress 2>&1 | tee "$OUT/aug.txt" ;;
    datasets)  # what PNG images cost on the GPU path against JPEG datasets
        for dataset in ade20k cityscapes; do
            python3 -m benchmarks.throughput --dataset $dataset --synth-images 128 --threads 8 --seconds 3 \
                --repeats 3 --warmup 3 --only reference-textbook dali-cpu dali-gpu-8t --out "$OUT/$dataset" \
                --no-progress 2>&1 | tee "$OUT/$dataset.txt"
        done ;;
    train)
        make_tree
        python3 -m benchmarks.train_e2e --root $tree --batch-size 32 --steps 50 --out "$OUT/bench" 2>&1 | tee "$OUT/train.txt"
        python3 -m benchmarks.train_e2e --root $tree --batch-size 32 --steps 50 --amp --out "$OUT/bench-amp" 2>&1 \
            | tee "$OUT/train-amp.txt" ;;
    first)
        make_tree
        # SIGINT, not SIGTERM: pytest then still prints its summary with the failures' tracebacks.
        # test_gpu.py first (the GPU paths themselves), then the rest of the gpu tests but the soak.
        timeout -s INT -k 15 90 python3 -m pytest -q -rs -s --tb=short -p no:cacheprovider tests/test_gpu.py 2>&1 \
            | tee "$OUT/gpu-tests.txt"
        timeout -s INT -k 15 100 python3 -m pytest -q -rs --tb=short -m "gpu and not slow" "${ignore[@]}" \
            -p no:cacheprovider --ignore=tests/test_gpu.py 2>&1 | tee "$OUT/gpu-tests-rest.txt"
        timeout 45 python3 -m benchmarks.label_host --root $tree --json "$OUT/label_host.json" 2>&1 | tee "$OUT/label_host.txt"
        # the rows the targets compare come first; the tune rows run last (rows.py orders them)
        timeout 190 python3 -m benchmarks.throughput --root $tree --threads 4 8 --seconds 2 --repeats 3 --warmup 5 \
            --only reference-textbook dali-gpu-4t dali-gpu-8t dali-gpu-stockpng-8t jpeg-ceiling tune \
            --out "$OUT/bench" --no-progress 2>&1 | tee "$OUT/bench.txt"
        result="$OUT/bench/throughput.json"; [ -f "$result" ] || result="$OUT/bench/throughput.partial.json"
        python3 -m benchmarks.targets "$result" 2>&1 | tee "$OUT/targets.txt"
        if grep -q "NOT MET" "$OUT/targets.txt"; then  # a missed target needs a profile saying where the time goes
            timeout 50 python3 -m benchmarks.profile_loader --root $tree --row dali-gpu-8t --batches 20 --warmup 5 \
                --out "$OUT/profile" 2>&1 | tee "$OUT/profile.txt"
        fi
        timeout 75 python3 -m benchmarks.train_e2e --root $tree --batch-size 32 --steps 30 --backends dali \
            --out "$OUT/bench" 2>&1 | tee "$OUT/train.txt" ;;
    profile)
        make_tree
        python3 -m benchmarks.profile_loader --root $tree --row dali-gpu-8t --out "$OUT/profile" 2>&1 \
            | tee "$OUT/profile.txt" ;;
    tune)
        make_tree
        python3 -m benchmarks.throughput --root $tree --threads 8 --seconds 3 --repeats 5 --warmup 10 \
            --only dali-gpu-8t tune --out "$OUT/tune" --no-progress 2>&1 | tee "$OUT/tune.txt" ;;
    *) echo "usage: bash scripts/gpu_session.sh setup|first|tests|bench|bench16|hwload|aug|datasets|train|tune|profile"
       exit 2 ;;
esac
