#!/usr/bin/env bash
# gpu_check.sh: the one command to run on a GPU machine without network access.
#
# Runs every GPU test (pytest -m gpu: the fused CUDA kernels of the cupy backend, JAX on the GPU,
# the cupy-array backend) and the GPU benchmark (benchmarks/bench_gpu.py: bench.yaml float32,
# kernel time, the floor, end to end to HDF5), then prints a short table last. Runs gpusim from
# source. The machine has python3 with numpy, cupy, jax, h5py, click, rich, pytest; pydantic and
# array-api-compat come as wheels in WHEEL_DIR, installed with `pip --no-index --no-deps`.
# Results go to $OUT when it is set. Finishes in under 8 minutes.
#
# Make WHEEL_DIR beforehand on any machine with network access, for the GPU machine's Python
# version and platform (there: python3 -c "import sys, platform; print(sys.version, platform.machine())"),
# e.g. for Python 3.11 on x86-64 Linux:
#
#   pip download --dest .whl --only-binary=:all: --python-version 3.11 --implementation cp \
#       --platform manylinux2014_x86_64 pydantic array-api-compat
#
# pip download also fetches their dependencies (pydantic-core, annotated-types, typing-extensions,
# typing-inspection), which --no-deps needs in the folder; copy .whl to the repository root there.
#
# Usage, from the repository root:  benchmarks/gpu_check.sh [WHEEL_DIR]   (default .whl)
set -u
cd "$(dirname "$0")/.."
wheels=${1:-.whl}
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"

if compgen -G "$wheels/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --target /tmp/site "$wheels"/*.whl
fi
export PYTHONPATH=/tmp/site:.:${PYTHONPATH:-}
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-/tmp/gpusim-cache}

{
    date -u +"%Y-%m-%dT%H:%M:%SZ"
    git rev-parse --short HEAD 2>/dev/null || true
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import sys, numpy, cupy; print('python', sys.version.split()[0], 'numpy', numpy.__version__, 'cupy', cupy.__version__)"
} 2>&1 | tee "$out/machine.txt"

# the GPU tests (every test module with tests marked gpu; the others may need packages this
# machine lacks, such as matplotlib or xarray): at most 5 minutes
gpu_tests=$(grep -l "pytest.mark.gpu" tests/test_*.py)
# shellcheck disable=SC2086  # one argument per file
timeout 300 python3 -m pytest -m gpu -q -p no:cacheprovider -rs $gpu_tests 2>&1 | tee "$out/pytest_gpu.txt"
tests_status=${PIPESTATUS[0]}

# the benchmark: at most 2.5 minutes (each figure shrinks its path count to fit its budget)
timeout 150 python3 benchmarks/bench_gpu.py --json "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.txt"
bench_status=${PIPESTATUS[0]}

echo
echo "==================== gpu_check summary ===================="
head -n 4 "$out/machine.txt"
echo "pytest -m gpu (exit $tests_status): $(tail -n 1 "$out/pytest_gpu.txt")"
echo "bench_gpu.py (exit $bench_status):"
awk '/^GPU figures/ { block = "" } { block = block $0 "\n" } END { printf "%s", block }' "$out/bench_gpu.txt"
echo "results in $out"
exit $(( tests_status != 0 || bench_status != 0 ))
