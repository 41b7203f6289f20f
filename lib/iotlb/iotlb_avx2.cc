/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The lookup kernels built for AVX2 + BMI2 (this file alone is compiled with -mavx2 -mbmi2;
 * Shard::create() picks them only on a CPU that has both). One 256-bit compare covers a
 * set's four keys, and the set index is one shrx.
 */
#include <iodp/iotlb.h>

#define IODP_LOOKUP_NS avx2
#include "lookup_kernel.h"

#include "lookup_isa.h"

namespace iodp::iotlb {

const Shard::LookupFn *const kLookupAvx2 = avx2::kRuns;

} // namespace iodp::iotlb
