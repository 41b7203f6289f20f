/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The device interface without an EAL (suite unit): devargs parsing and checking, a
 * driver's argument errors naming the device and the key, and which port a library-mode
 * worker's request may name. (The engine on EAL lcores: engine_test.cc.)
 */
#include "../ctl/ctl_fixture.h"

#include <iodp/dev.h>
#include <iodp/emul.h>
#include <iodp/engine.h>

#include <gtest/gtest.h>

namespace iodp {
namespace {

using dev::Completion;
using dev::Request;
using engine::Worker;

using ctl::test::ok;
using ctl::test::status_of;

struct DevTest : testing::Test {
	ctl::Ctx ctx;
	dev::Registry reg;
	void SetUp() override { ASSERT_TRUE(reg.add(emul::driver()).ok()); }
};

const char *const kKeys[] = {"queues", "ws", "verify", "format", nullptr};
const char *const kFormats[] = {"vtd", "smmu", nullptr};

TEST(DevArgs, ParsesNameAndPairsInOrderAndTypedValues)
{
	const dev::DevArgs a = ok(dev::DevArgs::parse("emul7,ws=2M,queues=0x10,verify=on", kKeys));
	EXPECT_EQ(a.name(), "emul7");
	ASSERT_EQ(a.pairs().size(), 3u);
	EXPECT_EQ(a.pairs()[0].first, "ws");
	EXPECT_EQ(a.pairs()[2].second, "on");
	EXPECT_EQ(ok(a.get_size("ws", 0, 0, UINT64_MAX)), 2u << 20);
	EXPECT_EQ(ok(a.get_uint("queues", 1, 1, 16)), 16u) << "0x is hexadecimal";
	EXPECT_TRUE(ok(a.get_bool("verify", false)));
	EXPECT_EQ(ok(a.get_choice("format", kFormats, 1)), 1u) << "absent: the default";
	EXPECT_EQ(a.find("format"), nullptr);

	const dev::DevArgs z = ok(dev::DevArgs::parse("emul0,queues=010", kKeys));
	EXPECT_EQ(ok(z.get_uint("queues", 1, 1, 16)), 10u) << "decimal unless 0x, never octal";
	EXPECT_EQ(ok(dev::DevArgs::parse("emul0", kKeys)).pairs().size(), 0u);
}

TEST(DevArgs, BadTextIsRefusedNamingTheDeviceAndTheKey)
{
	EXPECT_FAILS(dev::DevArgs::parse("emul0,wss=1M", kKeys), EINVAL,
		     "emul0: unknown argument 'wss' (known: queues, ws, verify, format)");
	EXPECT_FAILS(dev::DevArgs::parse("emul0,ws=1M,ws=2M", kKeys), EINVAL, "'ws' is given twice");
	EXPECT_FAILS(dev::DevArgs::parse("emul0,ws", kKeys), EINVAL, "argument 'ws' needs a value");
	EXPECT_FAILS(dev::DevArgs::parse(",ws=1M", kKeys), EINVAL, "no device name");
	const dev::DevArgs a = ok(dev::DevArgs::parse("emul1,queues=17,ws=3X,verify=2,format=amd", kKeys));
	EXPECT_FAILS(a.get_uint("queues", 1, 1, 16), EINVAL, "emul1: queues=17 is outside [1, 16]");
	EXPECT_FAILS(a.get_size("ws", 0, 0, UINT64_MAX), EINVAL, "emul1: ws='3X' has trailing");
	EXPECT_FAILS(a.get_bool("verify", false), EINVAL, "emul1: verify='2' is not 0/1");
	EXPECT_FAILS(a.get_choice("format", kFormats, 0), EINVAL,
		     "emul1: format='amd' is not one of vtd, smmu");
}

TEST(DevArgs, MadeFromPairsWithTheSameChecksAndTheBlamedKey)
{
	static const char *const kKeys[] = {"queues", "ws", "format", nullptr};
	std::string bad;
	dev::DevArgs a = ok(dev::DevArgs::make("emul1", {{"queues", "3"}, {"ws", "8M"}}, kKeys));
	EXPECT_EQ(ok(a.get_uint("queues", 1, 1, 16)), 3u);
	EXPECT_TRUE(a.blamed().empty());
	EXPECT_FAILS(dev::DevArgs::make("emul1", {{"ws", "8M"}, {"qeues", "3"}}, kKeys, &bad),
		     EINVAL, "emul1: unknown argument 'qeues' (known: queues, ws, format)");
	EXPECT_EQ(bad, "qeues");
	EXPECT_FAILS(dev::DevArgs::make("emul1", {{"ws", "8M"}, {"ws", "9M"}}, kKeys, &bad),
		     EINVAL, "'ws' is given twice");
	EXPECT_EQ(bad, "ws");
	EXPECT_FAILS(dev::DevArgs::make("emul1", {{"format", ""}}, kKeys, &bad), EINVAL,
		     "argument 'format' needs a value");
	EXPECT_FAILS(dev::DevArgs::make("emul 1", {}, kKeys), EINVAL, "may only hold letters");
	// A failed getter, or a driver's own check, says which key it is about: the first.
	dev::DevArgs b = ok(dev::DevArgs::make("emul1", {{"queues", "99"}, {"ws", "3X"}}, kKeys));
	EXPECT_FALSE(b.get_uint("queues", 1, 1, 16).ok());
	EXPECT_FALSE(b.get_size("ws", 0, 0, UINT64_MAX).ok());
	EXPECT_EQ(b.blamed(), "queues");
	dev::DevArgs c = ok(dev::DevArgs::make("emul1", {{"ws", "8M"}}, kKeys));
	EXPECT_FAILS(c.blame("ws", -EINVAL, "{}: ws={} is odd", c.name(), 8), EINVAL,
		     "emul1: ws=8 is odd");
	EXPECT_EQ(c.blamed(), "ws");
}

TEST_F(DevTest, DevargsAreCheckedAndNamed)
{
	EXPECT_FAILS(reg.create(ctx, "emul0,profle=nic"), EINVAL,
		     "emul0: unknown argument 'profle' (known: profile, format");
	EXPECT_FAILS(reg.create(ctx, "emul0,profile=disk"), EINVAL,
		     "emul0: profile='disk' is not one of nic, nvme, random, zipf, stream, strict");
	EXPECT_FAILS(reg.create(ctx, "emul0,queues=0"), EINVAL, "emul0: queues=0 is outside [1, 16]");
	EXPECT_FAILS(reg.create(ctx, "emul0,ws=12Q"), EINVAL, "emul0: ws='12Q' has trailing");
	EXPECT_FAILS(reg.create(ctx, "emul0,ws=1M"), EINVAL, "ws=1M is outside");
	EXPECT_FAILS(reg.create(ctx, "emul0,verify=maybe"), EINVAL, "verify='maybe' is not 0/1");
	EXPECT_FAILS(reg.create(ctx, "emul0,dma=1,dma=0"), EINVAL, "'dma' is given twice");
	EXPECT_FAILS(reg.create(ctx, "emul0,dma"), EINVAL, "argument 'dma' needs a value");
	EXPECT_FAILS(reg.create(ctx, "nic0,profile=nic"), ENOENT, "no driver 'nic' (known: emul)");
	EXPECT_FAILS(reg.create(ctx, ",x=1"), EINVAL, "no device name");
	// Parsed pairs take the same path; the key a refusal is about is named apart.
	dev::DevArgs pairs = ok(dev::DevArgs::make(
		"emul0", {{"format", "vtd"}, {"ws", "64G"}}, ok(reg.driver_for("emul0"))->keys));
	EXPECT_FAILS(reg.create(ctx, pairs), EINVAL, "needs 131360 KiB of page tables");
	EXPECT_EQ(pairs.blamed(), "ws");
	EXPECT_FAILS(reg.driver_for("nic0"), ENOENT, "no driver 'nic' (known: emul)");
	EXPECT_EQ(reg.add(emul::driver()).code(), -EEXIST);
	EXPECT_EQ(ctx.object_count(), 0u) << "a refused device leaves nothing behind";

	std::unique_ptr<dev::Device> d =
		ok(reg.create(ctx, "emul3,profile=nvme,queues=2,ws=8M,format=smmu-nested"));
	ASSERT_NE(d, nullptr);
	const dev::DevInfo info = d->info();
	EXPECT_EQ(info.driver, "emul");
	EXPECT_EQ(info.queues, 2);
	EXPECT_NE(info.description.find("nvme traffic, smmu-nested tables"), std::string::npos);
	EXPECT_EQ(ok(ctx.device_id("emul3")), d->ctl_id);
	d.reset();
	EXPECT_EQ(ctx.object_count(), 0u) << "close releases the device's lib/ctl objects";
}

/*
 * A library-mode request names a port (its port field): a port past the table or one
 * no device was set on is a bad request, answered BAD_REQUEST and not reported to lib/ctl
 * (there is no device to report it for). A port whose device is not attached is a
 * translation fault: PASID not attached.
 */
TEST_F(DevTest, LibraryModeRequestsNamingAPortWithoutADeviceAreBad)
{
	Result<GuestRam> ram = GuestRam::allocate(2u << 20);
	ASSERT_TRUE(ram.ok());
	ctl::DeviceSpec spec;
	spec.name = "lib0";
	spec.rid = 1;
	const uint32_t dev = ok(ctx.device_create(spec));
	spec.name = "lib1";
	spec.rid = 2;
	const uint32_t idle = ok(ctx.device_create(spec));
	const uint32_t ioas = ok(ctx.ioas_alloc());
	const uint32_t rw = IODP_IOAS_MAP_FIXED_IOVA | IODP_IOAS_MAP_READABLE | IODP_IOAS_MAP_WRITEABLE;
	ASSERT_TRUE(ctx.ioas_map(ioas, rw, 0x10000, ram->data(), 0x1000).ok());
	ASSERT_TRUE(ctx.device_attach(dev, std::nullopt, ioas).ok());
	engine::WorkerConfig wc;
	wc.report_faults_inline = true;
	std::unique_ptr<Worker> w = ok(Worker::create(ctx, wc));
	ASSERT_TRUE(w->set_port(2, dev).ok());
	ASSERT_TRUE(w->set_port(4, idle).ok());
	ASSERT_TRUE(w->set_port(6, dev).ok());
	ASSERT_TRUE(w->set_port(6, 0).ok()); // and taken away again
	const auto R = IODP_ACCESS_READ;
	const Request reqs[] = {
		{0x10000, 1, 8, IODP_PASID_NONE, 2, 0, R, {}},   // the device
		{0x10000, 2, 8, IODP_PASID_NONE, 0, 0, R, {}},   // never set
		{0x10000, 3, 8, IODP_PASID_NONE, 6, 0, R, {}},   // set, then cleared
		{0x10000, 4, 8, IODP_PASID_NONE, 4, 0, R, {}},   // a device, not attached
		{0x10000, 5, 8, IODP_PASID_NONE, 256, 0, R, {}}, // past the table
		{0x10008, 6, 8, IODP_PASID_NONE, 2, 0, R, {}},   // the device again
	};
	Completion c[8];
	size_t used = 0;
	ASSERT_EQ(w->translate_burst(reqs, 6, c, 8, &used), 6u);
	EXPECT_EQ(used, 6u);
	const uint64_t base = reinterpret_cast<uint64_t>(ram->data());
	EXPECT_EQ(c[0].fault, 0);
	EXPECT_EQ(c[0].host, base);
	for (int i : {1, 2, 4}) {
		EXPECT_EQ(c[i].cookie, reqs[i].cookie);
		EXPECT_EQ(c[i].fault, IODP_FAULT_BAD_REQUEST) << "port " << reqs[i].port;
		EXPECT_EQ(c[i].host, 0u);
		EXPECT_EQ(c[i].flags, IODP_CPL_LAST);
	}
	EXPECT_EQ(c[3].fault, IODP_FAULT_PASID_NOT_ATTACHED);
	EXPECT_EQ(c[5].fault, 0);
	EXPECT_EQ(c[5].host, base + 8);
	const engine::WorkerStats st = w->stats();
	EXPECT_EQ(st.faults_by_kind[IODP_FAULT_BAD_REQUEST], 3u);
	EXPECT_EQ(st.faults_by_kind[IODP_FAULT_PASID_NOT_ATTACHED], 1u);
	uint64_t lost = 0;
	const std::vector<ctl::FaultEvent> ev = ctx.fault_events(8, &lost);
	ASSERT_EQ(ev.size(), 1u) << "only the attach fault has a device to be reported for";
	EXPECT_EQ(ev[0].dev_id, idle);
}

} // namespace
} // namespace iodp
