/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * iodp-pmd's configuration parser and the devargs every driver takes. A parsed
 * configuration's device sections become devargs and go through DevArgs::parse and every
 * getter a driver calls; raw input is also tried as a --device string. Every failure has an
 * errno and a message, and no message carries a control character (they reach terminals).
 */
#include "../../apps/iodp-pmd/config.h"

#include <iodp/emul.h>
#include <iodp/ipc.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace iodp;

namespace {

void check(const Status &s)
{
	if (s.ok())
		return;
	if (s.code() >= 0 || s.message().empty())
		std::abort();
	for (const char c : s.message())
		if ((static_cast<unsigned char>(c) < 0x20) || c == 0x7f)
			std::abort(); // printable() missed something
}

/** What a driver's probe does with its arguments, without creating the device. */
void exercise(Result<dev::DevArgs> a, const dev::Driver &drv)
{
	check(a.status());
	if (!a)
		return;
	static const char *const kChoices[] = {"nic", "nvme", "vtd", "4k", nullptr};
	for (const char *const *k = drv.keys; *k != nullptr; k++) {
		check(a->get_uint(*k, 1, 1, 1000).status());
		check(a->get_size(*k, 4096, 4096, 1ull << 36).status());
		check(a->get_bool(*k, false).status());
		check(a->get_choice(*k, kChoices, 0).status());
	}
	check(a->blame(a->blamed(), -EINVAL, "{}: {}", a->name(), a->blamed()));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const dev::Registry *reg = [] {
		auto *r = new dev::Registry;
		if (!r->add(emul::driver()).ok() || !r->add(ipc::driver()).ok())
			std::abort();
		return r;
	}();
	const std::string_view text(reinterpret_cast<const char *>(data), size);
	Result<pmd::Config> c = pmd::parse_config(text, "fuzz.conf", *reg);
	check(c.status());
	if (c)
		for (const pmd::DeviceConf &d : c->devices) {
			const dev::Driver *drv = reg->driver_of(d.name);
			if (drv == nullptr)
				std::abort(); // the parser promised a driver
			// A config section's pairs, as iodp-pmd creates the device from them.
			std::string bad_key;
			exercise(dev::DevArgs::make(d.name, d.pairs(), drv->keys, &bad_key), *drv);
			check(Status::error(-EINVAL, "{}", d.locate("fuzz.conf", bad_key, "x")));
		}
	// The same bytes as --device DEVARGS.
	if (const dev::Driver *drv = reg->driver_of(text.substr(0, text.find(','))))
		exercise(dev::DevArgs::parse(text, drv->keys), *drv);
	return 0;
}
