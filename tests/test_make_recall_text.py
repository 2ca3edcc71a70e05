#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""scripts/make-recall-text: the source text passes through whole and in order; every added line repeats one
earlier source sentence, once, from 2,400..14,800 characters back; the same seed gives the same bytes.
Usage: test_make_recall_text.py SCRIPT"""
import os
import random
import subprocess
import sys
import tempfile

WORDS = "river stone lantern orchard harbor mill copper meadow tower ledger candle bridge".split()


def source_text(rng, n_para):
    paras, sentences = [], []
    for p in range(n_para):
        lines = []
        for s in range(rng.randint(1, 4)):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 20)))
            sent = f"Paragraph {p} line {s} speaks of the {words}."
            sentences.append(sent)
            lines.append(sent)
        paras.append(" ".join(lines))
    return "\n\n".join(paras) + "\n", set(sentences)


def main():
    script = sys.argv[1]
    rng = random.Random(3)
    text, sentences = source_text(rng, 900)
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "src.txt")
        with open(src, "w") as f:
            f.write(text)
        outs = []
        for seed in (1, 1, 2):
            out = os.path.join(d, f"out{len(outs)}.txt")
            subprocess.run([sys.executable, script, out, src, "--seed", str(seed)], check=True, capture_output=True)
            with open(out) as f:
                outs.append(f.read())
    assert outs[0] == outs[1], "same seed, different output"
    assert outs[0] != outs[2], "the seed changes nothing"

    out = outs[0]
    src_lines = [l for l in text.splitlines() if l]
    n_kept, recalls, pos, seen = 0, 0, 0, set()
    for line in out.splitlines(keepends=True):
        body = line.rstrip("\n")
        if not body:
            pass
        elif n_kept < len(src_lines) and body == src_lines[n_kept]:  # the source, in order
            n_kept += 1
        else:  # an added line (a bare repetition of an earlier source line too)
            hits = [s for s in sentences if s in body]
            assert len(hits) == 1, f"an added line repeats no single source sentence: {body!r}"
            s = hits[0]
            assert s not in seen, f"recalled twice: {s!r}"
            seen.add(s)
            first = out.find(s)
            assert 2400 <= pos - first <= 14800, f"recalled from {pos - first} characters back: {s!r}"
            recalls += 1
        pos += len(line)
    assert n_kept == len(src_lines), "the source text did not pass through whole and in order"
    assert recalls > 100, f"only {recalls} recalls"
    print(f"ok: {recalls} recalls, {len(out)} characters")


if __name__ == "__main__":
    main()
