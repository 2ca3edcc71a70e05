#!/usr/bin/env bash
# Prediction interval x neighbour fetching for the tokenbutler selector (decode view, `butler perplexity`):
# one JSON line per (interval, neighbours) to OUT.jsonl.
# Usage: perf/eval_interval.sh BUTLER TEXT CTX BUDGET OUT.jsonl [selector [extra perplexity options...]]
# NEIGHBOURS (default "off on") and INTERVALS (default "1 2 4 8 16") pick a subset, e.g. to run the two neighbour
# settings as two processes.
set -euo pipefail
bin=$1 text=$2 ctx=$3 budget=$4 out=$5 sel=${6:-tokenbutler}
shift $(($# < 6 ? $# : 6))
: > "$out"
for n in ${NEIGHBOURS:-off on}; do
    for i in ${INTERVALS:-1 2 4 8 16}; do
        line=$("$bin" perplexity -f "$text" -c "$ctx" --chunks 1 --selector "$sel" --budget "$budget" \
               --interval "$i" --neighbours "$n" --top1 --json "$@" 2>/dev/null)
        python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d["interval"]=int(sys.argv[2]); d["neighbours"]=sys.argv[3]; print(json.dumps(d))' "$line" "$i" "$n" >> "$out"
        echo "interval $i neighbours $n done" >&2
    done
done
