/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The wrong order at exit: rte_eal_cleanup() while an engine, its devices and the context
 * still hold DPDK memory. rte_eal_cleanup() unmaps that memory; destroying them afterwards
 * used to crash in GuestRam::release(). It must say what is wrong and exit normally.
 * Its own process: the EAL cannot be started again after cleanup.
 */
#include <iodp/emul.h>
#include <iodp/engine.h>

#include <rte_eal.h>

#include <cstdio>
#include <memory>

int main()
{
	const char *args[] = {"cleanup_order_test", "--no-pci", "--no-huge", "-m", "256",
			      "--file-prefix=iodp-cleanup-order", "-l", "0-1"};
	if (rte_eal_init(8, const_cast<char **>(args)) < 0) {
		std::fprintf(stderr, "cleanup_order_test: rte_eal_init failed\n");
		return 1;
	}
	auto ctx = std::make_unique<iodp::ctl::Ctx>();
	iodp::dev::Registry reg;
	(void)reg.add(iodp::emul::driver());
	auto dev = reg.create(*ctx, "emul0,profile=nic,ws=16M");
	auto eng = iodp::engine::Engine::create(*ctx, {});
	if (!dev || !eng || !(*eng)->add_device(**dev) || !(*eng)->start().ok()) {
		std::fprintf(stderr, "cleanup_order_test: setup failed\n");
		return 1;
	}
	(*eng)->stop();
	rte_eal_cleanup(); // the wrong order, on purpose
	eng->reset();
	dev->reset();
	ctx.reset();
	std::printf("cleanup_order_test: the engine, device and context went after "
		    "rte_eal_cleanup() without a crash\n");
	return 0;
}
