// SPDX-License-Identifier: MIT
// The needle and co-reference generators (runtime/eval_tasks.h): deterministic for a seed, the needle where the
// contract puts it, whole sentences, distinct invented names, the question pointing at the first block, clear errors;
// with the default model's tokenizer, 10 co-reference blocks put the answer beyond a 512-token window.
#include <doctest/doctest.h>

#include <set>

#include "runtime/eval_tasks.h"
#include "runtime/model.h"
#include "runtime/status.h"
#include "tests/fixtures.h"

using namespace butler;
using namespace butler::test;

namespace {

std::string sentences(int n) {
    std::string t;
    for (int i = 0; i < n; ++i) t += "Sentence number " + std::to_string(i) + " talks about the weather today. ";
    return t;
}

}  // namespace

TEST_SUITE("eval_tasks") {
    TEST_CASE("needle: deterministic, at the asked depth, between whole sentences, distinct names and codes") {
        const std::string hay = sentences(400);
        const auto a = make_needle_samples(hay, 6, 2000, 0.2, 0.6, 7);
        const auto b = make_needle_samples(hay, 6, 2000, 0.2, 0.6, 7);
        const auto c = make_needle_samples(hay, 6, 2000, 0.2, 0.6, 8);
        REQUIRE(a.size() == 6);
        std::set<std::string> answers, names;
        for (size_t i = 0; i < a.size(); ++i) {
            const TaskSample& s = a[i];
            CHECK(s.document == b[i].document);
            CHECK(s.answer == b[i].answer);
            CHECK(s.document.substr(0, 9) == "Sentence ");  // starts at a sentence
            const std::string needle = "The secret code of ";
            REQUIRE(s.document.compare(s.target_offset, needle.size(), needle) == 0);
            const size_t body = s.document.size() - (needle.size() + 6 + 4 + 2);  // length without the needle (approx.)
            CHECK(double(s.target_offset) >= 0.2 * double(body) - 1);
            CHECK(double(s.target_offset) <= 0.6 * double(body) + 60);  // the next sentence start after the depth
            CHECK(s.document[s.target_offset - 2] == '.');              // right after a sentence end
            CHECK(s.document.size() >= 2000);
            CHECK(s.document.size() < 2000 + 120);
            CHECK(s.answer.size() == 6);
            CHECK(s.answer[0] == ' ');
            const std::string code = s.answer.substr(1);
            CHECK(s.document.find("is " + code + ".") != std::string::npos);
            const size_t name_at = s.target_offset + needle.size();
            const std::string name = s.document.substr(name_at, s.document.find(' ', name_at) - name_at);
            CHECK(s.question.find(name) != std::string::npos);
            CHECK(hay.find(name) == std::string::npos);
            names.insert(name);
            answers.insert(s.answer);
        }
        CHECK(names.size() == 6);
        CHECK(answers.size() >= 5);
        CHECK(c[0].document + c[0].answer != a[0].document + a[0].answer);
        CHECK_THROWS_AS(make_needle_samples(sentences(10), 1, 2000, 0.2, 0.6, 1), Error);
        CHECK_THROWS_AS(make_needle_samples(hay, 1, 2000, 0.7, 0.6, 1), Error);
    }

    TEST_CASE("coref: blocks in the paper's format, distinct names, the question asks for the first block") {
        const auto a = make_coref_samples(5, 8, 3);
        const auto b = make_coref_samples(5, 8, 3);
        REQUIRE(a.size() == 5);
        for (size_t i = 0; i < a.size(); ++i) {
            const TaskSample& s = a[i];
            CHECK(s.document == b[i].document);
            CHECK(s.target_offset == 0);
            // 8 blocks, one per line, each with one "The place is: <Name>."
            std::set<std::string> names;
            size_t at = 0, blocks = 0;
            while ((at = s.document.find("The place is: ", at)) != std::string::npos) {
                at += 14;
                names.insert(s.document.substr(at, s.document.find('.', at) - at));
                ++blocks;
            }
            CHECK(blocks == 8);
            CHECK(names.size() == 8);
            const size_t first = s.document.find("The place is: ") + 14;
            const std::string first_name = s.document.substr(first, s.document.find('.', first) - first);
            CHECK(s.answer.substr(1) == first_name);
            CHECK(s.answer[0] == ' ');
            CHECK(s.question.substr(0, 7) == "\nWhich ");
            CHECK(s.question.size() > 20);
            CHECK(s.question.substr(s.question.size() - 13) == "The place is:");
        }
        CHECK(make_coref_samples(1, 8, 4)[0].document != a[0].document);
        CHECK_THROWS_AS(make_coref_samples(1, 0, 1), Error);
        CHECK_THROWS_AS(make_coref_samples(1, 31, 1), Error);
    }
}

TEST_SUITE("model") {
    TEST_CASE("coref with 10 blocks puts the answer more than 512 tokens before the question (default tokenizer)") {
        const std::string path = default_model_or_skip();
        if (path.empty()) return;
        auto model = Model::load(path);
        for (const TaskSample& s : make_coref_samples(4, 10, 42)) {
            const auto doc = model->tokenizer().encode(s.document, false, false);
            CHECK(doc.size() > 512);
            CHECK(doc.size() < 1200);
        }
    }
}
