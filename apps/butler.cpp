// SPDX-License-Identifier: MIT
#include <cstdio>
int main() { std::puts("butler"); return 0; }
