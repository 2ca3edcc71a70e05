// SPDX-License-Identifier: MIT
// Runs the C99 API test program (tests/test_c_api.c) on a tiny fixture model written here.
#include <doctest/doctest.h>

#include <cstdlib>

#include "tests/fixtures.h"

using namespace butler::test;

TEST_SUITE("c_api") {
    TEST_CASE("C API from C99: errors, buffers, two sessions on two threads") {
        TempFile model;
        model.write(tiny_gemma3_gguf(make_tiny_gemma3(TinyGemma3Spec{}, 33)));
        TempFile log(".log");
        const std::string cmd =
            std::string(BUTLER_C_API_TEST_PATH) + " '" + model.path() + "' >'" + log.path() + "' 2>&1";
        const int status = std::system(cmd.c_str());
        std::FILE* f     = std::fopen(log.path().c_str(), "r");
        std::string out;
        if (f != nullptr) {
            char buf[4096];
            for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
            std::fclose(f);
        }
        CAPTURE(out);
        CHECK(status == 0);
        CHECK(out.find("all checks passed") != std::string::npos);
    }
}
