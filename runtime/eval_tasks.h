// SPDX-License-Identifier: MIT
// Synthetic retrieval tasks for `butler eval`, generated offline and deterministically from a seed.
//
// A sample is a document, a question after it and the expected answer. The decode view (DESIGN.md) prefills the
// document densely and feeds question + answer token by token as sparse decode steps; the simulate view runs one
// masked prefill over document + question + answer. Both score the answer by teacher forcing: a sample is right
// when the argmax at every answer position is the answer's next token.
//   needle  A haystack cut from a text (whole sentences), with one needle sentence "The secret code of <Name> is
//           <5 digits>." inserted at a depth drawn in [min_depth, max_depth] of the document; the question asks
//           for the code; the answer is " <digits>".
//   coref   The paper's co-reference format (TOKENBUTLER.md §5.1): blocks "{intro} {name}. {philosophy}. {food}.
//           {math}." each introducing an invented place name; the question is the tie-back question of the FIRST
//           block followed by "? The place is:" (the paper ends it with ":" alone; repeating the intro's cue makes it
//           a retrieval test a small base model can pass densely), the answer " {name}" of that block. Later blocks (other names) push the first
//           one back, so with enough blocks the answer lies beyond a 512-token sliding window. Names, intros,
//           tie-backs and filler sentences are generated here from syllable and template lists (no external data).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace butler {

struct TaskSample {
    std::string document;  // the context (prefilled densely in the decode view)
    std::string question;  // follows the document directly (begins with its own separator/whitespace)
    std::string answer;    // the expected continuation, begins with a space (" 48371", " Velmora")
    size_t target_offset;  // byte offset in `document` of the needle / the first block (to measure its distance)
};

// n_samples needle samples from `haystack` (UTF-8 text, at least doc_chars long, else Error(InvalidArg)). Each
// document is doc_chars (+- one sentence) of consecutive whole sentences starting at a seeded offset, with the needle
// at a seeded depth in [min_depth, max_depth] (fractions of the document). Names and codes differ between samples.
std::vector<TaskSample> make_needle_samples(const std::string& haystack, int n_samples, size_t doc_chars,
                                            double min_depth, double max_depth, uint64_t seed);

// n_samples co-reference samples of n_blocks blocks each (n_blocks >= 1); every name in a sample is distinct and
// made-up (not an English word), and no two blocks of a sample share an intro or tie-back question.
std::vector<TaskSample> make_coref_samples(int n_samples, int n_blocks, uint64_t seed);

}  // namespace butler
