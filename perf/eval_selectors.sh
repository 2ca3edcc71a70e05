#!/usr/bin/env bash
# Runtime-view (decode) quality of every selector at several budgets on one text: `butler perplexity` with the
# offload pipeline (emulated device), the second half of each window fed as sparse decode steps, --top1 against
# dense. Writes one JSON line per (selector, budget) to OUT.jsonl.
# Usage: perf/eval_selectors.sh BUTLER TEXT CTX CHUNKS "budgets" "selectors" OUT.jsonl [extra perplexity flags]
set -euo pipefail
bin=$1 text=$2 ctx=$3 chunks=$4 budgets=$5 selectors=$6 out=$7
shift 7
: > "$out"
for b in $budgets; do
    for s in $selectors; do
        start=$(date +%s.%N)
        line=$("$bin" perplexity -f "$text" -c "$ctx" --chunks "$chunks" --selector "$s" --budget "$b" --top1 --json "$@" 2>/dev/null)
        end=$(date +%s.%N)
        python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["selector_arg"]=sys.argv[2]; d["budget_arg"]=sys.argv[3]; d["wall_s"]=float(sys.argv[4]); print(json.dumps(d))' "$line" "$s" "$b" "$(echo "$end - $start" | bc)" >> "$out"
        echo "$b $s done" >&2
    done
done
