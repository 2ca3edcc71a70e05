// SPDX-License-Identifier: MIT
// EmulatedDevice: the device that lets the offload pipeline run, and be tested, on a CPU-only machine.
//   - "VRAM" is host memory under a hard cap (EmuOptions::capacity_bytes): alloc beyond it is Error(Oom).
//   - Each stream is a worker thread draining a fixed FIFO ring; events are sequence numbers. A missing wait is
//     a real race: the consumer may run before the copy lands.
//   - Copies are throttled to model PCIe (a virtual clock at pcie_gbps; default 0.54 x the host memcpy bandwidth
//     measured once per process at the first creation, the H100 machine's PCIe/DRAM ratio 51.4/95), cost
//     launch_us each, and with delay_us > 0 land late by a seeded random delay, to expose ordering bugs.
//   - With poison on, fresh and freed device memory is filled with kPoisonByte (NaN in f32/f16/bf16), so reading
//     never-written or freed slots shows up as NaN.
#pragma once

#include "runtime/device.h"

namespace butler {

// The host's single-thread memcpy bandwidth in GB/s (best of a few 32 MiB copies), measured once per process.
double measured_memcpy_gbps();

// The throttle an emu device with these options applies, in GB/s.
double emu_effective_pcie_gbps(const EmuOptions& options);

}  // namespace butler
