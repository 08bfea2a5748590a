#!/usr/bin/env bash
# One prepared GPU session (issue 25): install, the GPU tests, both GPU benchmarks, raw output to $OUT.
# Sized for about 12 minutes on one GPU; run it from the repository root on the device machine:
#     OUT=/some/folder bash benchmarks/gpu_session.sh
# Every stage has its own time limit and the script goes on after a failed stage, so one broken stage
# still leaves the others' output. Record what it printed in docs/gpu.md (measured figures only).
set -u
OUT=${OUT:-out/gpu_session}
mkdir -p "$OUT"
PY=${PY:-python3}
log() { echo "=== $(date -u +%H:%M:%S) $*" | tee -a "$OUT/summary.txt"; }
stage() {  # stage NAME SECONDS CMD...: run CMD under a time limit, output to $OUT/NAME.txt
    local name=$1 secs=$2; shift 2
    log "$name: $*"
    timeout "$secs" "$@" > "$OUT/$name.txt" 2>&1
    log "$name: exit $?"
    tail -n 25 "$OUT/$name.txt" >> "$OUT/summary.txt"
}
{ nvidia-smi; $PY -c "import torch, cupy; print(torch.__version__, torch.version.cuda, cupy.__version__)"; } \
    > "$OUT/machine.txt" 2>&1
git log -1 --format='commit %H' >> "$OUT/machine.txt" 2>/dev/null
# carried wheels (e.g. netCDF4, absent from the image): pip download them into .whl/ beforehand
if compgen -G ".whl/*.whl" > /dev/null; then $PY -m pip install -q --no-deps .whl/*.whl >> "$OUT/machine.txt" 2>&1; fi
stage install 240 $PY -m pip install -q --no-deps --no-build-isolation -e .
stage tests 330 $PY -m pytest -q -p no:cacheprovider --maxfail=25 tests/test_gpu.py tests/test_cuda_source.py \
    tests/test_genmodel_gpu.py tests/test_drift_adjoint.py tests/test_fused_run_loop.py
stage gpu_step 120 $PY benchmarks/gpu_step.py --json "$OUT/gpu_step.json"
stage generative 300 $PY benchmarks/generative.py --device cuda --size 32 --repeats 3 --block 5 --n 32 \
    --json "$OUT/generative.json"
log "done"
