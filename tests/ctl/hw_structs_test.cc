/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The hardware structures (lib/model) against raw words written from the architecture
 * documents, so an encoder and decoder that agree with each other but not with the
 * hardware are caught.
 */
#include <iodp/inval.h>
#include <iodp/smmuv3.h>
#include <iodp/vtd.h>

#include <gtest/gtest.h>

namespace iodp {
namespace {

TEST(HwStructs, SteWordsAreTheArchitecturesBits)
{
	// V, Config 0b101 (S1), S1Fmt 0 (linear), S1ContextPtr 0x40100000, S1CDMax 3; S1DSS 2.
	const uint64_t raw[2] = {0x180000004010000bull, 0x2};
	const smmuv3::Ste s = smmuv3::Ste::decode(raw);
	EXPECT_TRUE(s.valid);
	EXPECT_EQ(s.config, smmuv3::kConfigS1);
	EXPECT_EQ(s.s1_fmt, smmuv3::kS1FmtLinear);
	EXPECT_EQ(s.s1_context_ptr, 0x40100000u);
	EXPECT_EQ(s.s1_cd_max, 3u);
	EXPECT_EQ(s.s1dss, smmuv3::kS1dssSsid0);
	uint64_t w[2];
	s.encode(w);
	EXPECT_EQ(w[0], raw[0]);
	EXPECT_EQ(w[1], raw[1]);
	// S1ContextPtr is bits 51:6: the low bits of an address are not the pointer's.
	const uint64_t odd[2] = {0x0000000040100031ull | (2ull << 4), 0};
	EXPECT_EQ(smmuv3::Ste::decode(odd).s1_context_ptr, 0x40100000u);
	EXPECT_EQ(smmuv3::Ste::decode(odd).s1_fmt, 3u);
	// Every bit a guest may set survives a decode and encode; no other bit is kept.
	const uint64_t all[2] = {smmuv3::kSte0GuestBits, 3};
	smmuv3::Ste::decode(all).encode(w);
	EXPECT_EQ(w[0], smmuv3::kSte0GuestBits);
}

TEST(HwStructs, CdWordsAreTheArchitecturesBits)
{
	// T0SZ 16, TG0 4K, V (31), AA64 (41), ASID 2 (63:48); TTB0 0x40200000.
	const uint64_t raw[2] = {0x0002020080000010ull, 0x40200000};
	const smmuv3::Cd c = smmuv3::Cd::decode(raw);
	EXPECT_EQ(c.t0sz, 16u);
	EXPECT_EQ(c.granule_shift(), 12);
	EXPECT_TRUE(c.valid);
	EXPECT_TRUE(c.aa64);
	EXPECT_FALSE(c.epd0);
	EXPECT_FALSE(c.ha);
	EXPECT_EQ(c.asid, 2u);
	EXPECT_EQ(c.ttb0, 0x40200000u);
	uint64_t w[2];
	c.encode(w);
	EXPECT_EQ(w[0], raw[0]);
	EXPECT_EQ(w[1], raw[1]);
	// TG0 is 0 4K, 1 64K, 2 16K, 3 reserved; EPD0 is bit 14, HA bit 43.
	const uint64_t tg[4][2] = {{0x00, 0}, {0x40, 0}, {0x80, 0}, {0xc0, 0}};
	EXPECT_EQ(smmuv3::Cd::decode(tg[1]).granule_shift(), 16);
	EXPECT_EQ(smmuv3::Cd::decode(tg[2]).granule_shift(), 14);
	EXPECT_EQ(smmuv3::Cd::decode(tg[3]).granule_shift(), -1);
	const uint64_t flags[2] = {(1ull << 14) | (1ull << 43), 0};
	EXPECT_TRUE(smmuv3::Cd::decode(flags).epd0);
	EXPECT_TRUE(smmuv3::Cd::decode(flags).ha);
}

TEST(HwStructs, L1CdAndOpcodes)
{
	const smmuv3::L1Cd d = smmuv3::L1Cd::decode(0x0000000012345001ull);
	EXPECT_TRUE(d.valid);
	EXPECT_EQ(d.l2_ptr, 0x12345000u);
	EXPECT_FALSE(smmuv3::L1Cd::decode(0x12345000).valid);
	// lib/inval names the same constants (one definition).
	EXPECT_EQ(inval::smmuv3::kCmdSync, 0x46);
	EXPECT_EQ(&inval::smmuv3::kCfgiCd, &smmuv3::kCfgiCd);
	EXPECT_EQ(&inval::vtd::kInvWait, &vtd::kInvWait);
	EXPECT_EQ(vtd::kS1KnownFlags, 7u);
}

} // namespace
} // namespace iodp
