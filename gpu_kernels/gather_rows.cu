// SPDX-License-Identifier: MIT
// The row gather: copies a list of pieces (CopyPiece: dst in device memory, src in mapped pinned host memory) in one
// launch. One cudaMemcpyAsync per short run is bound by the per-call cost, not by PCIe (REFERENCE.md §4); loads from
// mapped memory issued by many warps at once keep enough requests in flight to fill the link.
// Work mapping: one warp per piece (a grid-stride loop over pieces); lane 0 reads the descriptor (itself in mapped
// pinned memory) and broadcasts it; lanes copy 16-byte words when the piece allows, else 4-byte words, else bytes.
#include <cuda_runtime.h>

#include <algorithm>

#include "gpu_kernels/cuda_check.h"
#include "gpu_kernels/cuda_device.h"

namespace butler::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int kMaxBlocks = 2048;

template <typename Word>
__device__ void copy_words(uint8_t* dst, const uint8_t* src, uint64_t n_bytes, int lane) {
    const uint64_t n = n_bytes / sizeof(Word);
    auto* d = reinterpret_cast<Word*>(dst);
    const auto* s = reinterpret_cast<const Word*>(src);
    for (uint64_t i = lane; i < n; i += 32) d[i] = s[i];
}

__global__ void gather_kernel(const CopyPiece* pieces, uint64_t n_pieces) {
    const int lane = threadIdx.x % 32;
    const uint64_t first_warp = uint64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
    const uint64_t n_warps = uint64_t(gridDim.x) * kWarpsPerBlock;
    for (uint64_t p = first_warp; p < n_pieces; p += n_warps) {
        unsigned long long dst = 0, src = 0, n = 0;
        if (lane == 0) {
            dst = reinterpret_cast<unsigned long long>(pieces[p].dst);
            src = reinterpret_cast<unsigned long long>(pieces[p].src);
            n = pieces[p].n_bytes;
        }
        dst = __shfl_sync(0xffffffffu, dst, 0);
        src = __shfl_sync(0xffffffffu, src, 0);
        n = __shfl_sync(0xffffffffu, n, 0);
        auto* d = reinterpret_cast<uint8_t*>(dst);
        const auto* s = reinterpret_cast<const uint8_t*>(src);
        const unsigned long long align = dst | src | n;
        if (align % 16 == 0) copy_words<int4>(d, s, n, lane);
        else if (align % 4 == 0) copy_words<int>(d, s, n, lane);
        else copy_words<uint8_t>(d, s, n, lane);
    }
}

}  // namespace

void launch_gather(const CopyPiece* pieces, size_t n_pieces, void* stream) {
    if (n_pieces == 0) return;
    const uint64_t blocks = std::min<uint64_t>((n_pieces + kWarpsPerBlock - 1) / kWarpsPerBlock, kMaxBlocks);
    gather_kernel<<<unsigned(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(pieces, n_pieces);
    BUTLER_CUDA_CHECK(cudaGetLastError());
}

}  // namespace butler::cuda
