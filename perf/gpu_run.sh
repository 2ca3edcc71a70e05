#!/usr/bin/env bash
# Runs on the GPU machine (device tool, carry [".device"], after scripts/gpu-pack here) and writes under $OUT:
#   1. the cuda, device and offload test suites (the CUDA kernels against their CPU references);
#   2. bench_copy: the gather kernel vs one cudaMemcpyAsync per run vs one contiguous copy; bench_select: one
#      TokenButler selection (scores + top-k) per (layer, KV head) on the GPU at 8K..128K candidates;
#   3. butler bench on a random Llama-3.1-8B-shape Q4_K file (with an untrained predictor beside it, so the
#      tokenbutler selector runs, scoring and picking on the GPU) under an 8 GiB cap, synthetic K/V, 32K and 128K;
#   4. ../shared/anchors/hf_offload_bench.py at the same contexts, in the same run (the peer);
#   5. (STEPS=prefill, not in the default) time to first token at 8K with a real prefill: the chunk's matrix products
#      on the GPU (cuBLAS) and the global layers' attention there too, the context streamed from the host store
#      through the copy engine block by block (chunked prefill).
# STEPS (default "tests copy bench hf") picks a subset; each step's log is $OUT/<step>.log.
set -uo pipefail
OUT=${OUT:-/tmp/butler-out}
mkdir -p "$OUT"
tar xJf .device/butler-run.tar.xz -C /tmp
# cuBLAS comes from the machine's CUDA toolkit (scripts/gpu-pack leaves it out of the pack).
cuda_lib=/usr/local/cuda/lib64
command -v nvcc >/dev/null && cuda_lib=$(dirname "$(readlink -f "$(command -v nvcc)")")/../lib64
export LD_LIBRARY_PATH=/tmp/butler-run/lib:$cuda_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if ldd /tmp/butler-run/bin/butler | grep -q "not found"; then
    echo "gpu_run: libraries not found:" >&2; ldd /tmp/butler-run/bin/butler | grep "not found" >&2; exit 1
fi
B=/tmp/butler-run/bin
steps=${STEPS:-tests copy bench hf}
ctx=${CTX:-32K,128K}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; echo "commit $(cat .device/commit)"; } \
    | tee "$OUT/machine.txt"
status=0
for s in $steps; do
    echo "== $s"
    case $s in
        tests) "$B/butler_tests" -ts=cuda,device,offload ;;
        copy) "$B/bench_copy" --device cuda --json "$OUT/bench_copy.json" &&
                "$B/bench_select" --device cuda --json "$OUT/bench_select.json" ;;
        bench)
            [ -f /tmp/l8b.gguf ] || "$B/butler" make-random-model --like llama-3.1-8b --type Q4_K --predictor --out /tmp/l8b.gguf
            "$B/butler" bench -m /tmp/l8b.gguf -c "$ctx" --budget 5%,10% --device cuda:mem=8GiB --synthetic-kv \
                --interval 4 --neighbours on --json "$OUT/bench-8b.json" ;;
        prefill)
            [ -f /tmp/l8b.gguf ] || "$B/butler" make-random-model --like llama-3.1-8b --type Q4_K --predictor --out /tmp/l8b.gguf
            "$B/butler" bench -m /tmp/l8b.gguf -c 8K --budget 10% --modes sparse --device cuda:mem=8GiB \
                -f .device/kjv-john.txt --json "$OUT/bench-8b-prefill.json" ;;
        hf) python3 .device/anchors/hf_offload_bench.py "$(echo "$ctx" | sed 's/K/*1024/g' | tr ',' '\n' |
                                                           while read -r e; do echo $((e)); done | paste -sd,)" ;;
        *) echo "gpu_run: unknown step '$s'" >&2; false ;;
    esac > >(tee "$OUT/$s.log") 2>&1 || { echo "== $s FAILED"; status=1; }
done
exit $status
