"""Run the project's CUDA kernel sources on the host, to check their arithmetic in CI.

This is not a GPU test and does not stand in for one: it compiles the exact kernel text
from :mod:`dali_voc.labels.nvcomp_decoder` / :mod:`dali_voc.labels.cupy_decoder` as C++ with host stand-ins for
the CUDA built-ins, and runs it. Each block runs alone; its threads are cooperative
coroutines (``ucontext``) that switch at ``__syncthreads()``, so barrier phases, shared
memory and the split of work across ``threadIdx`` are exercised, while memory ordering,
races between blocks, occupancy and speed are not. A ``__syncthreads()`` reached by some
threads of a block after others have exited is reported as an error (exit code 3).
CuPy's ElementwiseKernel wrapper is mimicked by a loop that binds ``i`` and ``out``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

PRELUDE = r"""
#include <ucontext.h>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

struct Dim3 { unsigned int x, y, z; };
static Dim3 threadIdx, blockIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __shared__ static  // one block runs at a time: a function-local static is its shared memory

static ucontext_t g_scheduler;
static std::vector<ucontext_t> g_threads;
static std::vector<int> g_state;  // 0 runnable, 1 waiting at the barrier, 2 exited
static int g_current;
static std::function<void()> g_body;

static void __syncthreads() {
    g_state[g_current] = 1;
    swapcontext(&g_threads[g_current], &g_scheduler);
}

static void thread_main() {
    g_body();
    g_state[g_current] = 2;
}

template <typename T>
static T atomicAdd(T* address, T value) {  // threads never interleave mid-statement here
    T old = *address;
    *address = old + value;
    return old;
}

static void launch(unsigned int blocks, unsigned int threads, std::function<void()> body) {
    g_body = body;
    blockDim = {threads, 1, 1};
    gridDim = {blocks, 1, 1};
    std::vector<std::vector<char>> stacks(threads, std::vector<char>(1 << 16));
    for (unsigned int b = 0; b < blocks; ++b) {
        blockIdx = {b, 0, 0};
        g_threads.assign(threads, ucontext_t());
        g_state.assign(threads, 0);
        for (unsigned int t = 0; t < threads; ++t) {
            getcontext(&g_threads[t]);
            g_threads[t].uc_stack.ss_sp = stacks[t].data();
            g_threads[t].uc_stack.ss_size = stacks[t].size();
            g_threads[t].uc_link = &g_scheduler;
            makecontext(&g_threads[t], thread_main, 0);
        }
        for (;;) {
            for (unsigned int t = 0; t < threads; ++t) {
                if (g_state[t] == 0) {
                    g_current = (int)t;
                    threadIdx = {t, 0, 0};
                    swapcontext(&g_scheduler, &g_threads[t]);
                }
            }
            int waiting = 0, exited = 0;
            for (int s : g_state) {
                waiting += s == 1;
                exited += s == 2;
            }
            if (exited == (int)threads) break;
            if (exited) {
                std::fprintf(stderr, "block %u: %d threads wait at __syncthreads, %d exited\n", b, waiting, exited);
                std::exit(3);
            }
            for (int& s : g_state) s = 0;
        }
    }
}

static std::string g_dir;

template <typename X>
static std::vector<X> load(const char* name) {
    std::string path = g_dir + "/" + name + ".bin";
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) { std::perror(path.c_str()); std::exit(2); }
    std::fseek(f, 0, SEEK_END);
    long bytes = std::ftell(f);
    std::fseek(f, 0, SEEK_SET);
    std::vector<X> v(bytes / sizeof(X));
    if (bytes && std::fread(v.data(), 1, bytes, f) != (size_t)bytes) std::exit(2);
    std::fclose(f);
    return v;
}

template <typename X>
static void save(const char* name, const std::vector<X>& v) {
    std::string path = g_dir + "/" + name + ".bin";
    FILE* f = std::fopen(path.c_str(), "wb");
    std::fwrite(v.data(), sizeof(X), v.size(), f);
    std::fclose(f);
}
"""


def compiler() -> str | None:
    """A C++ compiler on PATH, or None."""
    return shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")


def build(name: str, kernel_source: str, main_body: str, workdir: Path) -> Path:
    """Compile ``PRELUDE + kernel_source + int main`` (whose body is ``main_body``; ``g_dir``
    is set from argv[1]) and return the executable."""
    source = workdir / f"{name}.cpp"
    binary = workdir / name
    source.write_text(PRELUDE + kernel_source + "\nint main(int argc, char** argv) {\n    g_dir = argv[1];\n"
                      + main_body + "\n    return 0;\n}\n")
    cxx = compiler()
    assert cxx is not None
    done = subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Wno-unused-variable", "-o", str(binary),
                           str(source)], capture_output=True, text=True)
    if done.returncode:
        raise AssertionError(f"{name}: compiling the kernel source as C++ failed:\n{done.stderr}")
    return binary


def run(binary: Path, workdir: Path, inputs: dict[str, np.ndarray], outputs: dict[str, np.dtype]) -> dict:
    """Write ``inputs`` as ``<name>.bin``, run ``binary`` on ``workdir``, read ``outputs``."""
    for key, array in inputs.items():
        np.ascontiguousarray(array).tofile(workdir / f"{key}.bin")
    done = subprocess.run([str(binary), str(workdir)], capture_output=True, text=True, timeout=300)
    if done.returncode:
        raise AssertionError(f"{binary.name} exited {done.returncode}: {done.stderr}")
    return {key: np.fromfile(workdir / f"{key}.bin", dtype=dtype) for key, dtype in outputs.items()}
