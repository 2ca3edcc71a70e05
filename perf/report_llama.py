#!/usr/bin/env python3
"""Turns a bench_llama JSON result into the markdown table of perf/results/, next to llama.cpp's figures.

llama.cpp's figures are REFERENCE.md section 2: llama-bench -t 2 on the development machine (2-core AMD EPYC,
Debian 12), llama.cpp built from llama-cpp-python 0.3.36, the default model (Gemma 3 270M Q4_K_M).
Usage: report_llama.py RESULT.json --commit SHA --command "CMD" > RESULT.md
"""
import argparse
import json

LLAMA_CPP = {  # tokens/s, (test, depth) -> value
    ("pp512", 0): 402, ("pp512", 1024): 369, ("pp512", 4096): 332, ("pp512", 16384): 207,
    ("tg64", 0): 67.7, ("tg64", 1024): 62.2, ("tg64", 4096): 59.6, ("tg64", 16384): 46.5,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("result")
    ap.add_argument("--commit", required=True)
    ap.add_argument("--command", required=True)
    args = ap.parse_args()
    doc = json.load(open(args.result))
    print(f"# bench_llama: Butler CPU path vs llama.cpp (llama-bench definitions)\n")
    print(f"- machine: {doc['cpu']}, {doc['n_cpus']} cpus, {doc['memory_gib']:.0f} GiB; {doc['threads']} threads")
    print(f"- model: {doc['model']}; KV {doc['kv_type']}; {doc['repetitions']} repetitions")
    print(f"- commit: {args.commit}")
    print(f"- command: `{args.command}`")
    print("- llama.cpp: REFERENCE.md §2 (llama-bench -t 2, same machine type)\n")
    print("| test | depth | Butler tok/s | ± | llama.cpp tok/s | Butler / llama.cpp |")
    print("|---|---|---|---|---|---|")
    for r in doc["results"]:
        ref = LLAMA_CPP.get((r["test"], r["depth"]))
        ratio = f"{r['tokens_per_second'] / ref:.2f}x" if ref else "n/a"
        print(f"| {r['test']} | {r['depth']} | {r['tokens_per_second']:.1f} | {r['stdev']:.1f} | "
              f"{ref if ref else 'n/a'} | {ratio} |")


if __name__ == "__main__":
    main()
