#!/usr/bin/env python3
"""Turns the libFuzzer logs of a long scripts/fuzz run into perf/results/fuzz-DATE.{md,json}.

Per target: executions, executions/s, coverage (libFuzzer's cov = edges, ft = features) at the end, corpus size,
peak RSS and crashes (a run that stopped on a crash, leak, sanitizer report or timeout counts one: scripts/fuzz
stops at the first).
Usage: report_fuzz.py LOG_DIR --commit SHA --command "CMD" --out perf/results/fuzz-DATE
"""
import argparse
import json
import os
import platform
import re


def parse(path):
    text = open(path, errors="replace").read()
    r = {"target": os.path.basename(path)[:-4]}
    stats = dict(re.findall(r"^stat::(\w+):\s+(\d+)", text, re.M))
    r["executions"] = int(stats.get("number_of_executed_units", 0))
    r["exec_per_s"] = int(stats.get("average_exec_per_sec", 0))
    r["peak_rss_mb"] = int(stats.get("peak_rss_mb", 0))
    r["new_units"] = int(stats.get("new_units_added", 0))
    status = re.findall(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", text, re.M)
    if status:
        _, cov, ft, corp = status[-1]
        r.update(cov=int(cov), ft=int(ft), corpus=int(corp))
    m = re.search(r"Done (\d+) runs in (\d+) second", text)
    r["seconds"] = int(m.group(2)) if m else None
    r["crashes"] = len(re.findall(r"^==\d+== ?ERROR|^SUMMARY: \w+Sanitizer|deadly signal|fuzz invariant failed"
                                  r"|ALARM: working on the last Unit", text, re.M))
    return r


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("logs")
    ap.add_argument("--commit", required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rows = [parse(os.path.join(args.logs, f)) for f in sorted(os.listdir(args.logs)) if f.endswith(".log")]
    machine = f"{cpu_name()}, {os.cpu_count()} cpus (shared with other builds), {platform.system()}"
    doc = {"machine": machine, "commit": args.commit, "command": args.command,
           "fuzzer": "libFuzzer (clang-14), -fsanitize=fuzzer,address,undefined", "targets": rows}
    json.dump(doc, open(args.out + ".json", "w"), indent=2)
    with open(args.out + ".md", "w") as f:
        f.write("# Fuzzing: long runs of the libFuzzer targets\n\n")
        f.write(f"- machine: {machine}\n- commit: {args.commit}\n- command: `{args.command}`\n")
        f.write(f"- fuzzer: {doc['fuzzer']}; one target at a time, one process each\n\n")
        f.write("| target | seconds | executions | exec/s | cov | ft | corpus | peak RSS MB | crashes |\n")
        f.write("|---|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            f.write(f"| {r['target']} | {r['seconds']} | {r['executions']:,} | {r['exec_per_s']:,} | {r.get('cov')} "
                    f"| {r.get('ft')} | {r.get('corpus')} | {r['peak_rss_mb']} | {r['crashes']} |\n")


if __name__ == "__main__":
    main()
