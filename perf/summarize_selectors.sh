#!/usr/bin/env bash
# Wall time and tokens/s of `butler summarize` on a >= 16K-token document (license texts from Debian's
# base-files) on the default model: dense attention on the CPU (no offload) against selectors at a 10% budget
# through the offload pipeline on the emulated device, with the summaries side by side.
# Usage: perf/summarize_selectors.sh [BUTLER] [MODEL] [SELECTOR...] > perf/results/summarize-16k-2core.md
#   Selectors default to "oracle quest"; each one adds a table row and a summary, so a later run with only
#   `tokenbutler` (for instance) prints rows that can be appended to the existing file's tables.
#   The raw --json objects go to $OUT_JSON (default perf/results/summarize-16k-2core.jsonl), appended.
set -euo pipefail
butler=${1:-build/release/bin/butler}
model=${2:-${BUTLER_MODEL:-${XDG_CACHE_HOME:-$HOME/.cache}/butler/models/gemma-3-270m-q4_k_m.gguf}}
shift $(( $# >= 2 ? 2 : $# ))
selectors=("$@")
[ ${#selectors[@]} -gt 0 ] || selectors=(dense oracle quest)
out_json=${OUT_JSON:-perf/results/summarize-16k-2core.jsonl}
ctx=20480
max_tokens=64
budget=10%
doc=$(mktemp --suffix=.txt)
trap 'rm -f "$doc" "$doc".*' EXIT
# GPL-3 + LGPL-2.1 + GFDL-1.3: about 7.6K + 5.8K + 5.0K tokens.
cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/LGPL-2.1 /usr/share/common-licenses/GFDL-1.3 > "$doc"

echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cpus; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
echo "- document: GPL-3 + LGPL-2.1 + GFDL-1.3 from /usr/share/common-licenses; -c $ctx --max-tokens $max_tokens, greedy"
echo
echo "| attention | selector | budget | tokens in | prompt tokens | tokens out | prefill s | prefill tok/s | generate s | generate tok/s | wall s | copied MiB | hit rate | load after |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
summaries=()
for sel in "${selectors[@]}"; do
    args=(summarize -m "$model" "$doc" -c "$ctx" --max-tokens "$max_tokens" --json)
    if [ "$sel" = dense ]; then
        kind="dense, CPU (plain)"
    else
        kind="offload, emu, sparse"
        args+=(--device emu --selector "$sel" --budget "$budget")
    fi
    start=$(date +%s.%N)
    nice -n 10 "$butler" "${args[@]}" > "$doc.json"
    wall=$(awk "BEGIN{print $(date +%s.%N) - $start}")
    python3 - "$doc.json" "$kind" "$sel" "$wall" "$(cut -d' ' -f1 /proc/loadavg)" "$out_json" <<'EOF' >> "$doc.rows"
import json, sys
path, kind, sel, wall, load, out_json = sys.argv[1:]
j = json.load(open(path))
o = j.get("offload") or {}
budget = j["budget"] if j["budget"] is not None else "all"
print(f"| {kind} | {j['selector']} | {budget} | {j['tokens_in']} | {j['prompt_tokens']} | {j['tokens_out']} | "
      f"{j['prefill_seconds']:.1f} | {j['prefill_tokens_per_second']:.1f} | {j['generate_seconds']:.1f} | "
      f"{j['generate_tokens_per_second']:.1f} | {float(wall):.1f} | "
      f"{o.get('bytes_copied', 0) / 2**20:.1f} | {o['hit_rate'] if o else '-'} | {load} |")
j["wall_seconds"] = float(wall)
with open(out_json, "a") as f:
    f.write(json.dumps(j) + "\n")
with open(path + ".summary", "w") as f:
    f.write(j["summary"])
EOF
    cat "$doc.rows"; rm -f "$doc.rows"
    summaries+=("$sel" "$(cat "$doc.json.summary")")
done
echo
echo "| selector | summary |"
echo "|---|---|"
for ((i = 0; i < ${#summaries[@]}; i += 2)); do
    printf '| %s | %s |\n' "${summaries[i]}" "$(printf '%s' "${summaries[i+1]}" | tr '\n' ' ' | sed 's/|/\\|/g')"
done
