#!/usr/bin/env bash
# Peak RSS of `butler generate` on the default model with a 16K-token context (issue 10's memory target:
# <= model file + KV cache + 150 MB). The prompt fills most of the context, so every KV page is written.
# Usage: perf/measure_rss.sh [BUTLER] [MODEL] > result.md
set -euo pipefail
butler=${1:-build/release/bin/butler}
model=${2:-${BUTLER_MODEL:-${XDG_CACHE_HOME:-$HOME/.cache}/butler/models/gemma-3-270m-q4_k_m.gguf}}
ctx=16384
prompt=$(mktemp)
trap 'rm -f "$prompt"' EXIT
# ~15K tokens of public-domain-licensed English text from Debian's base-files.
cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/LGPL-2.1 /usr/share/common-licenses/GPL-3 > "$prompt.all"
head -c 60000 "$prompt.all" > "$prompt"
rm -f "$prompt.all"
log=$(mktemp)
/usr/bin/time -v "$butler" generate -m "$model" -f "$prompt" -n 16 -c "$ctx" --temp 0 >/dev/null 2>"$log"
rss_kb=$(grep "Maximum resident" "$log" | awk '{print $NF}')
n_prompt=$("$butler" tokenize -m "$model" -f "$prompt" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["n_tokens"])')
model_bytes=$(stat -c %s "$model")
# KV cache: 3 global layers x ctx + 15 local layers x (512 + 512) positions, 1 KV head x 256 dims, K and V, f16.
kv_bytes=$(( (3 * ctx + 15 * 1024) * 256 * 2 * 2 ))
budget=$(( model_bytes + kv_bytes + 150 * 1024 * 1024 ))
echo "| prompt tokens | context | peak RSS | model file | KV cache | limit (model + KV + 150 MB) | within |"
echo "|---|---|---|---|---|---|---|"
printf "| %d | %d | %.1f MB | %.1f MB | %.1f MB | %.1f MB | %s |\n" "$n_prompt" "$ctx" "$(awk "BEGIN{print $rss_kb/1024}")" \
  "$(awk "BEGIN{print $model_bytes/1048576}")" "$(awk "BEGIN{print $kv_bytes/1048576}")" "$(awk "BEGIN{print $budget/1048576}")" \
  "$([ $((rss_kb * 1024)) -le $budget ] && echo yes || echo NO)"
