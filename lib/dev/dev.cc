/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/dev.h>
#include <iodp/text.h>
#include <iodp/number.h>
#include <iodp/ring.h>

#include <rte_kvargs.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace iodp::dev {

namespace {

std::string known_keys(const char *const *keys)
{
	std::string s;
	for (const char *const *k = keys; k != nullptr && *k != nullptr; k++)
		s += (s.empty() ? "" : ", ") + std::string(*k);
	return s.empty() ? "none" : s;
}

bool key_known(const char *const *keys, std::string_view key)
{
	for (const char *const *k = keys; k != nullptr && *k != nullptr; k++)
		if (key == *k)
			return true;
	return false;
}

/** How much of a device name is its driver's: the leading letters and '_'. */
size_t driver_letters(std::string_view name)
{
	size_t n = 0;
	while (n < name.size() && (std::isalpha(static_cast<unsigned char>(name[n])) || name[n] == '_'))
		n++;
	return n;
}

} // namespace

bool Driver::takes(std::string_view key) const
{
	return key_known(keys, key);
}

std::string Driver::key_list() const
{
	return known_keys(keys);
}

bool parse_bool(std::string_view text, bool *out)
{
	for (const char *t : {"1", "yes", "on", "true"})
		if (text == t)
			return *out = true, true;
	for (const char *f : {"0", "no", "off", "false"})
		if (text == f)
			return *out = false, true;
	return false;
}

uint32_t next_rid()
{
	static std::atomic<uint32_t> rid{0x100};
	return rid.fetch_add(1, std::memory_order_relaxed);
}

/* DevArgs ----------------------------------------------------------------------------- */

Result<DevArgs> DevArgs::parse(std::string_view devargs, const char *const *keys)
{
	DevArgs a;
	const size_t comma = devargs.find(',');
	a.name_ = std::string(devargs.substr(0, comma));
	// Devargs come from a command line or a file: what they say is quoted printable().
	const std::string shown = printable(devargs);
	if (a.name_.empty())
		return Status::error(-EINVAL, "devargs '{}': no device name", shown);
	for (char c : a.name_)
		if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-')
			return Status::error(-EINVAL, "devargs '{}': device name '{}' may only "
					     "hold letters, digits, '_' and '-'", shown,
					     printable(a.name_).c_str());
	if (comma == std::string_view::npos)
		return a;
	const std::string rest(devargs.substr(comma + 1));
	// rte_kvargs reads a C string: a NUL would silently cut the arguments short.
	if (rest.find('\0') != std::string::npos)
		return Status::error(-EINVAL, "{}: arguments '{}' hold a NUL byte", a.name_,
				     printable(rest).c_str());
	// No valid-key list for rte_kvargs: it would refuse unknown keys without naming them.
	rte_kvargs *kv = rte_kvargs_parse(rest.c_str(), nullptr);
	if (kv == nullptr)
		return Status::error(-EINVAL, "{}: cannot parse arguments '{}' (expected "
				     "key=value,key=value)", a.name_,
				     printable(rest).c_str());
	std::vector<std::pair<std::string, std::string>> pairs;
	for (unsigned i = 0; i < kv->count; i++)
		pairs.emplace_back(kv->pairs[i].key != nullptr ? kv->pairs[i].key : "",
				   kv->pairs[i].value != nullptr ? kv->pairs[i].value : "");
	rte_kvargs_free(kv);
	return make(std::move(a.name_), std::move(pairs), keys);
}

Result<DevArgs> DevArgs::make(std::string name,
			      std::vector<std::pair<std::string, std::string>> pairs,
			      const char *const *keys, std::string *bad_key)
{
	DevArgs a;
	a.name_ = std::move(name);
	if (a.name_.empty())
		return Status::error(-EINVAL, "devargs: no device name");
	for (char c : a.name_)
		if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_' && c != '-')
			return Status::error(-EINVAL, "device name '{}' may only hold letters, "
					     "digits, '_' and '-'", printable(a.name_));
	for (auto &[key, value] : pairs) {
		Status bad;
		if (!key_known(keys, key))
			bad = Status::error(-EINVAL, "{}: unknown argument '{}' (known: {})",
					    a.name_, printable(key), known_keys(keys));
		else if (value.empty())
			bad = Status::error(-EINVAL, "{}: argument '{}' needs a value", a.name_,
					    key);
		else if (a.find(key) != nullptr)
			bad = Status::error(-EINVAL, "{}: argument '{}' is given twice", a.name_,
					    key);
		if (!bad.ok()) {
			if (bad_key != nullptr)
				*bad_key = key;
			return bad;
		}
		a.pairs_.emplace_back(std::move(key), std::move(value));
	}
	return a;
}

const std::string *DevArgs::find(std::string_view key) const
{
	for (const auto &[k, v] : pairs_)
		if (k == key)
			return &v;
	return nullptr;
}

/**
 * A number as people write it: decimal, or hexadecimal after 0x (never octal: "010" is
 * ten), with K/M/G for sizes.
 */
static Result<uint64_t> parse_number(const std::string &dev, std::string_view key,
				     const std::string &text, bool suffixes)
{
	uint64_t v = 0;
	switch (parse_u64(text, &v, {.hex = true, .sizes = suffixes})) {
	case NumberError::none:
		return v;
	case NumberError::not_a_number:
		return Status::error(-EINVAL, "{}: {}='{}' is not a number", dev, key,
				     printable(text));
	case NumberError::too_large:
		return Status::error(-EINVAL, "{}: {}='{}' is too large", dev, key, printable(text));
	case NumberError::trailing:
		break;
	}
	return Status::error(-EINVAL, "{}: {}='{}' has trailing characters{}", dev, key,
			     printable(text), suffixes ? " (sizes take K, M or G)" : "");
}

Result<uint64_t> DevArgs::get_number(std::string_view key, uint64_t def, uint64_t min,
				     uint64_t max, bool sizes) const
{
	const std::string *v = find(key);
	if (v == nullptr)
		return def;
	Result<uint64_t> n = parse_number(name_, key, *v, sizes);
	if (!n && blamed_.empty())
		blamed_ = key;
	if (n && (*n < min || *n > max))
		return blame(key, -EINVAL, "{}: {}={} is outside [{}, {}]{}", name_, key,
			     printable(*v), min, max, sizes ? " bytes" : "");
	return n;
}

Result<bool> DevArgs::get_bool(std::string_view key, bool def) const
{
	const std::string *v = find(key);
	if (v == nullptr)
		return def;
	bool b = false;
	if (parse_bool(*v, &b))
		return b;
	return blame(key, -EINVAL, "{}: {}='{}' is not 0/1, yes/no, on/off", name_, key,
		     printable(*v));
}

Result<unsigned> DevArgs::get_choice(std::string_view key, const char *const *choices,
				     unsigned def) const
{
	const std::string *v = find(key);
	if (v == nullptr)
		return def;
	for (unsigned i = 0; choices[i] != nullptr; i++)
		if (*v == choices[i])
			return i;
	return blame(key, -EINVAL, "{}: {}='{}' is not one of {}", name_, key, printable(*v),
		     known_keys(choices));
}

/* Device ------------------------------------------------------------------------------ */

Device::Device(const Driver &driver, std::string name, ctl::Ctx &ctx, uint16_t queues)
	: driver_(driver), name_(std::move(name)), ctx_(ctx), queues_(queues)
{
}

Device::~Device()
{
	close();
	std::free(cmds_);
	std::free(done_);
}

Status Device::configure()
{
	if (state_ != State::created)
		return Status::error(-EBUSY, "{}: already configured", name_);
	if (queues_ > kMaxQueues)
		return Status::error(-EINVAL, "{}: {} queues (0 to {})", name_, queues_,
				     kMaxQueues);
	constexpr unsigned kCmdEntries = 1024;
	// Multi-producer, multi-consumer: a device's queues may sit on several workers.
	Result<rte_ring *> cmds = mem::ring_alloc("cmd_" + name_, sizeof(Command), kCmdEntries, 0);
	Result<rte_ring *> done = mem::ring_alloc("done_" + name_, sizeof(CommandDone),
						  kCmdEntries, 0);
	cmds_ = cmds ? *cmds : nullptr;
	done_ = done ? *done : nullptr;
	if (cmds_ == nullptr || done_ == nullptr)
		return Status::error(-ENOMEM, "{}: no memory for the invalidation queue",
				     name_);
	Status s = driver_.ops->configure(*this);
	if (!s.ok()) {
		// Drivers' close() takes a half-configured device apart: nothing is left behind.
		driver_.ops->close(*this);
		state_ = State::closed;
		return s;
	}
	state_ = State::configured;
	return {};
}

Status Device::start()
{
	if (state_ != State::configured && state_ != State::stopped)
		return Status::error(-EINVAL, "{}: start needs a configured, stopped device",
				     name_);
	if (gone())
		return Status::error(-ENODEV, "{}: the device is gone ({})", name_,
				     gone_reason_);
	Status s = driver_.ops->start(*this);
	if (!s.ok())
		return s;
	if (queues_ > 0 && (fast_path_.rx_burst == nullptr || fast_path_.tx_burst == nullptr))
		return Status::error(-EINVAL, "{}: driver {} left no burst functions",
				     name_, driver_.name);
	for (unsigned q = 0; q < queues_; q++)
		if (fast_path_.queue[q] == nullptr)
			return Status::error(-EINVAL, "{}: driver {} left queue {} unset",
					     name_, driver_.name, q);
	state_ = State::started;
	return {};
}

void Device::stop()
{
	if (state_ != State::started)
		return;
	driver_.ops->stop(*this);
	state_ = State::stopped;
}

void Device::close()
{
	if (state_ == State::closed)
		return;
	stop();
	if (state_ != State::created)
		driver_.ops->close(*this);
	state_ = State::closed;
}

DevInfo Device::info() const
{
	DevInfo i;
	i.driver = driver_.name;
	i.name = name_;
	i.queues = queues_;
	i.ctl_device = ctl_id;
	if (state_ != State::created && state_ != State::closed)
		driver_.ops->info(*this, &i);
	return i;
}

DevStats Device::stats() const
{
	DevStats s;
	if (state_ != State::created && state_ != State::closed)
		driver_.ops->stats(*this, &s);
	return s;
}

void Device::reset_stats()
{
	if (state_ != State::created && state_ != State::closed)
		driver_.ops->stats_reset(*this);
}

void Device::service()
{
	if (state_ == State::started && driver_.ops->service != nullptr)
		driver_.ops->service(*this);
}

void Device::mark_gone(const char *why)
{
	// The first reason wins; it is written before the flag is published.
	if (gone_claimed_.exchange(true))
		return;
	gone_reason_ = why;
	gone_.store(true, std::memory_order_release);
}

bool Device::post_command(const Command &cmd)
{
	return cmds_ != nullptr &&
	       rte_ring_mp_enqueue_elem(cmds_, const_cast<Command *>(&cmd), sizeof(cmd)) == 0;
}

unsigned Device::take_done(CommandDone *done, unsigned n)
{
	return done_ == nullptr ? 0
				: rte_ring_mc_dequeue_burst_elem(done_, done, sizeof(*done), n,
								 nullptr);
}

unsigned Device::take_commands(Command *cmds, unsigned n)
{
	return cmds_ == nullptr ? 0
				: rte_ring_mc_dequeue_burst_elem(cmds_, cmds, sizeof(*cmds), n,
								 nullptr);
}

unsigned Device::commands_pending() const
{
	return cmds_ == nullptr ? 0 : rte_ring_count(cmds_);
}

bool Device::complete(const CommandDone &done)
{
	return done_ != nullptr && rte_ring_mp_enqueue_elem(done_, const_cast<CommandDone *>(&done),
							    sizeof(done)) == 0;
}

/* Registry ---------------------------------------------------------------------------- */

Status Registry::add(const Driver &driver)
{
	if (driver.name == nullptr || *driver.name == '\0' || driver.ops == nullptr ||
	    driver.probe == nullptr)
		return Status::error(-EINVAL, "driver registry: a driver needs a name, ops and a "
				     "probe function");
	const DevOps &o = *driver.ops;
	if (o.configure == nullptr || o.start == nullptr || o.stop == nullptr ||
	    o.close == nullptr || o.info == nullptr || o.stats == nullptr ||
	    o.stats_reset == nullptr)
		return Status::error(-EINVAL, "driver {}: its ops table is missing a required "
				     "operation", driver.name);
	for (const char *c = driver.name; *c != '\0'; c++)
		if (!std::isalpha(static_cast<unsigned char>(*c)) && *c != '_')
			return Status::error(-EINVAL, "driver {}: names are letters and '_' "
					     "(devices add a number)", driver.name);
	if (find(driver.name) != nullptr)
		return Status::error(-EEXIST, "driver {}: already registered", driver.name);
	drivers_.push_back(&driver);
	return {};
}

const Driver *Registry::find(std::string_view name) const
{
	for (const Driver *d : drivers_)
		if (name == d->name)
			return d;
	return nullptr;
}

const Driver *Registry::driver_of(std::string_view device_name) const
{
	return find(device_name.substr(0, driver_letters(device_name)));
}

std::string Registry::names() const
{
	std::string s;
	for (const Driver *d : drivers_)
		s += (s.empty() ? "" : ", ") + std::string(d->name);
	return s.empty() ? "none" : s;
}

Result<std::unique_ptr<Device>> Registry::create(ctl::Ctx &ctx, std::string_view devargs) const
{
	const std::string_view name = devargs.substr(0, devargs.find(','));
	if (name.empty())
		return Status::error(-EINVAL, "devargs '{}': no device name",
				     printable(devargs).c_str());
	Result<const Driver *> drv = driver_for(name);
	if (!drv)
		return drv.status();
	Result<DevArgs> args = DevArgs::parse(devargs, (*drv)->keys);
	if (!args)
		return args.status();
	return create(ctx, *args);
}

Result<const Driver *> Registry::driver_for(std::string_view name) const
{
	const Driver *drv = driver_of(name);
	if (drv == nullptr)
		return Status::error(-ENOENT, "device '{}': no driver '{}' (known: {})",
				     printable(name),
				     printable(name.substr(0, driver_letters(name))), names());
	return drv;
}

Result<std::unique_ptr<Device>> Registry::create(ctl::Ctx &ctx, const DevArgs &args) const
{
	Result<const Driver *> drv = driver_for(args.name());
	if (!drv)
		return drv.status();
	Result<std::unique_ptr<Device>> dev = (*drv)->probe(ctx, args);
	if (!dev)
		return dev.status();
	Status s = (*dev)->configure();
	if (!s.ok())
		return s;
	return dev;
}

} // namespace iodp::dev
