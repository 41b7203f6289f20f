/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

#include <iodp/iotlb.h>

namespace iodp::iotlb {

/** The AVX2 + BMI2 build of the lookup kernels (iotlb_avx2.cc), one per size class. */
extern const Shard::LookupFn *const kLookupAvx2;

} // namespace iodp::iotlb
