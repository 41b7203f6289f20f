/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * The device interface: what ethdev is to NICs, for devices that ask for translations.
 *
 * A driver is a name, the devargs keys it takes, a probe function and a const ops table.
 * Drivers are added to a Registry explicitly (no constructor-order tricks); a device is
 * created from a devargs string such as "emul0,profile=nic,queues=2,ws=256M" (the name's
 * leading letters pick the driver; the rest is parsed with DPDK rte_kvargs, and unknown or
 * malformed arguments are refused with a message naming them).
 *
 * The hot path never goes through the ops table: a started device publishes a FastPath
 * (rx_burst / tx_burst and one opaque pointer per queue) that workers call directly. Each
 * device also has an invalidation queue: commands its driver posts (the guest's
 * invalidation descriptors, DMA-API unmaps) that a control thread carries out through
 * lib/ctl, completing each once no worker can still use what it removed.
 */

#include <iodp/ctl.h>
#include <iodp/request.h>
#include <iodp/status.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct rte_ring;

namespace iodp::dev {

using Request = iodp_request;
using Completion = iodp_completion;
using Command = iodp_dev_cmd;
using CommandDone = iodp_dev_cmd_done;

static_assert(sizeof(Request) == 32 && sizeof(Completion) == 32,
	      "requests and completions are half a cache line");

inline constexpr unsigned kMaxQueues = 16;

/** Take up to @p n requests from @p queue (a FastPath::queue pointer). */
using RxBurst = uint16_t (*)(void *queue, Request *reqs, uint16_t n);
/** Hand @p n completions to @p queue; returns how many it took (the rest are lost). */
using TxBurst = uint16_t (*)(void *queue, const Completion *cpls, uint16_t n);

/** The fast-path table: written by the driver before start, read-only while started. */
struct FastPath {
	RxBurst rx_burst = nullptr;
	TxBurst tx_burst = nullptr;
	void *queue[kMaxQueues] = {};
};

struct DevInfo {
	std::string driver;
	std::string name;
	std::string description; ///< the driver's one-line summary of this device
	uint16_t queues = 0;
	uint32_t ctl_device = 0; ///< the lib/ctl device id
	uint32_t group = 0;      ///< its IOMMU group
	int numa_node = -1;      ///< where its queues' memory is (-1: unknown)
	/** How it is attached: the HWPT its requests use, under which PASID (or none). */
	uint32_t hwpt = 0;
	uint32_t pasid = IODP_PASID_NONE;
	uint32_t ioas = 0;
	uint16_t asid = 0;       ///< SMMUv3 stage-1 ASID in its CD (0: none)
};

struct DevStats {
	uint64_t requests = 0;      ///< posted by the device
	uint64_t completions = 0;   ///< requests answered (last completion received)
	uint64_t faults = 0;        ///< requests answered with a fault
	uint64_t expected_faults = 0; ///< of those, ones the device meant to cause
	uint64_t mismatches = 0;    ///< verify: answers that disagree with the device's truth
	uint64_t commands = 0;      ///< invalidation-queue commands completed
	uint64_t dma_bytes = 0;     ///< bytes really copied (dma=1)
	/**
	 * The device knows the right answers (emulated devices): expected_faults and
	 * mismatches are measured. Otherwise they are 0 because nobody counted them (an ipc
	 * driver checks its own answers and reports them itself).
	 */
	bool checks_answers = false;
	/**
	 * Control passes that left some of its work (commands, maps its service hook made) for
	 * a later pass because it had used its share (EngineConfig::command_budget): filled in
	 * by the engine, not the driver.
	 */
	uint64_t throttled = 0;
	/** The driver's own counters by name (vfio: kernel calls, maps, ...); reported as is. */
	std::vector<std::pair<std::string, uint64_t>> driver_counters;
};

/**
 * A driver's counter with one writer (the worker polling its queue) and readers anywhere
 * (stats, telemetry): a plain add, no read-modify-write on the hot path.
 */
struct StatCounter {
	std::atomic<uint64_t> v{0};
	void add(uint64_t n)
	{
		v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
	}
	uint64_t get() const { return v.load(std::memory_order_relaxed); }
	void reset() { v.store(0, std::memory_order_relaxed); }
};

class Device;
class DevArgs;

/** A driver's operations; every entry is required unless marked optional. */
struct DevOps {
	/** Set up queues and guest memory, create and attach the lib/ctl device. */
	Status (*configure)(Device &dev);
	/** Fill dev.fast_path() and begin producing. */
	Status (*start)(Device &dev);
	void (*stop)(Device &dev);
	/**
	 * Release everything (the lib/ctl objects included); the device is not used again.
	 * Also called when configure fails, so it must undo a partial configure.
	 */
	void (*close)(Device &dev);
	void (*info)(const Device &dev, DevInfo *info);
	void (*stats)(const Device &dev, DevStats *stats);
	void (*stats_reset)(Device &dev);
	/** Optional: work the driver does on the control thread (polled by the engine). */
	void (*service)(Device &dev);
};

struct Driver {
	const char *name;        ///< "emul": devices are called emul0, emul1, ...
	const char *summary;
	const char *const *keys; ///< devargs keys it takes, nullptr-terminated
	const DevOps *ops;
	/** Make a device from parsed devargs (keys already checked against @p keys). */
	Result<std::unique_ptr<Device>> (*probe)(ctl::Ctx &ctx, const DevArgs &args);

	bool takes(std::string_view key) const;
	/** Its keys, ", "-separated (for messages). */
	std::string key_list() const;
};

/** "1", "yes", "on", "true" / "0", "no", "off", "false": what devargs and configs accept. */
bool parse_bool(std::string_view text, bool *out);

/** A requester ID no other device of this process has (drivers' lib/ctl devices). */
uint32_t next_rid();

/** A parsed devargs string: the device name and its key=value pairs, in order. */
class DevArgs {
public:
	/** Parse "name,key=value,..." with rte_kvargs; every key must be in @p keys. */
	static Result<DevArgs> parse(std::string_view devargs, const char *const *keys);
	/**
	 * Arguments already split (a config file's [device NAME] section): the same checks
	 * as parse() — the name's characters, every key in @p keys, a value for each, no key
	 * twice. On a failure about one key, *bad_key (when given) is that key.
	 */
	static Result<DevArgs> make(std::string name,
				    std::vector<std::pair<std::string, std::string>> pairs,
				    const char *const *keys, std::string *bad_key = nullptr);

	const std::string &name() const { return name_; }
	const std::vector<std::pair<std::string, std::string>> &pairs() const { return pairs_; }
	/** The value of @p key, or nullptr when not given. */
	const std::string *find(std::string_view key) const;

	/** Typed getters: @p def when absent, an error naming the device and key when bad. */
	Result<uint64_t> get_uint(std::string_view key, uint64_t def, uint64_t min,
				  uint64_t max) const
	{
		return get_number(key, def, min, max, false);
	}
	/** A size with an optional K/M/G suffix (powers of 1024). */
	Result<uint64_t> get_size(std::string_view key, uint64_t def, uint64_t min,
				  uint64_t max) const
	{
		return get_number(key, def, min, max, true);
	}
	Result<bool> get_bool(std::string_view key, bool def) const;
	/** One of @p choices (nullptr-terminated); returns its index. */
	Result<unsigned> get_choice(std::string_view key, const char *const *choices,
				    unsigned def) const;

	/**
	 * An error about @p key (a driver's check of a value, or of values together, names
	 * the key it blames): the getters use it too. blamed() then says which key, so a
	 * config file can point at its line without reading the message.
	 */
	template <class... Args>
	Status blame(std::string_view key, int code, fmt::format_string<Args...> format,
		     Args &&...args) const
	{
		if (blamed_.empty()) // the first error is the one a probe returns
			blamed_ = key;
		return Status::error(code, format, std::forward<Args>(args)...);
	}
	/** The key of the first blame() (or failed getter); empty when none. */
	const std::string &blamed() const { return blamed_; }

private:
	Result<uint64_t> get_number(std::string_view key, uint64_t def, uint64_t min,
				    uint64_t max, bool sizes) const;

	std::string name_;
	std::vector<std::pair<std::string, std::string>> pairs_;
	mutable std::string blamed_;
};

/**
 * A device: made by a driver's probe, owned by whoever created it. A device with 0 queues
 * (drivers/vfio: the hardware translates for it) is a port the engine lists and reports but
 * never polls; it needs no burst functions.
 */
class Device {
public:
	Device(const Driver &driver, std::string name, ctl::Ctx &ctx, uint16_t queues);
	~Device();
	Device(const Device &) = delete;
	Device &operator=(const Device &) = delete;

	const Driver &driver() const { return driver_; }
	const std::string &name() const { return name_; }
	ctl::Ctx &ctx() const { return ctx_; }
	uint16_t queues() const { return queues_; }

	/* Lifecycle (control thread) ------------------------------------------------------ */
	Status configure();
	Status start();
	void stop();
	void close();
	bool started() const { return state_ == State::started; }
	DevInfo info() const;
	DevStats stats() const;
	void reset_stats();
	void service();

	/** The driver's table; workers copy it when they take the device's queues. */
	const FastPath &fast_path() const { return fast_path_; }
	FastPath &fast_path() { return fast_path_; }

	/**
	 * The device went away (hot unplug, a dead driver): set by its driver from any thread;
	 * the engine stops polling it and reports it.
	 */
	void mark_gone(const char *why);
	bool gone() const { return gone_.load(std::memory_order_acquire); }
	const std::string &gone_reason() const { return gone_reason_; }

	/* Invalidation queue -------------------------------------------------------------- */
	/** Device side: post a command (false when the queue is full). */
	bool post_command(const Command &cmd);
	/** Device side: take completed commands. */
	unsigned take_done(CommandDone *done, unsigned n);
	/** Control side: take posted commands. */
	unsigned take_commands(Command *cmds, unsigned n);
	/** Control side: commands posted and not taken yet. */
	unsigned commands_pending() const;
	/** Control side: complete one (false when the completion queue is full). */
	bool complete(const CommandDone &done);

	/* Control work per pass (control thread) ------------------------------------------ */
	/**
	 * Control side: the units of control work this device may still have done in this
	 * control pass (each map its service hook makes, each command carried out), set by
	 * the engine before the pass; unlimited until an engine sets it.
	 */
	void set_pass_budget(unsigned n)
	{
		budget_ = n;
		budget_short_ = false;
	}
	unsigned pass_budget() const { return budget_; }
	/**
	 * Take @p n units of the pass's budget. The driver calls it in its service hook before
	 * control work it does itself (a map); the engine for the commands it carries out.
	 * False, taking nothing, when fewer are left: the work waits for a later pass, and
	 * the pass counts as throttled for this device.
	 */
	bool spend_budget(unsigned n = 1)
	{
		if (n > budget_) {
			budget_short_ = true;
			return false;
		}
		budget_ -= n;
		return true;
	}
	/** Whether spend_budget() refused something since set_pass_budget(). */
	bool budget_short() const { return budget_short_; }

	/** lib/ctl device id, set by the driver at configure. */
	uint32_t ctl_id = 0;
	/** The driver's own state. */
	void *priv = nullptr;

private:
	enum class State : uint8_t { created, configured, started, stopped, closed };

	const Driver &driver_;
	std::string name_;
	ctl::Ctx &ctx_;
	uint16_t queues_;
	State state_ = State::created;
	FastPath fast_path_;
	std::atomic<bool> gone_{false};
	std::atomic<bool> gone_claimed_{false};
	std::string gone_reason_;
	rte_ring *cmds_ = nullptr;
	rte_ring *done_ = nullptr;
	unsigned budget_ = ~0u;
	bool budget_short_ = false;
};

/**
 * The NUMA node holding [addr, addr + len) (hwloc), or -1 when unknown or the machine has
 * one node: what drivers report as DevInfo::numa_node.
 */
int memory_node(const void *addr, size_t len);
/** The NUMA node of CPU @p cpu (hwloc), or -1 when unknown or the machine has one node. */
int cpu_node(unsigned cpu);

/** Drivers by name. */
class Registry {
public:
	/** EEXIST for a name already taken, EINVAL for an incomplete driver. */
	Status add(const Driver &driver);
	const Driver *find(std::string_view name) const;
	/** The driver of device @p device_name: its leading letters ("emul0" -> emul). */
	const Driver *driver_of(std::string_view device_name) const;
	/** Registered drivers' names, ", "-separated (for messages). */
	std::string names() const;
	const std::vector<const Driver *> &drivers() const { return drivers_; }

	/**
	 * Create (and configure) a device from @p devargs. The driver is the name's leading
	 * letters ("emul0" -> "emul"). Every failure names the device and the reason.
	 */
	Result<std::unique_ptr<Device>> create(ctl::Ctx &ctx, std::string_view devargs) const;
	/**
	 * Create (and configure) a device from arguments already parsed (DevArgs::make with
	 * keys(name)); on a failure about one key, @p args.blamed() names it.
	 */
	Result<std::unique_ptr<Device>> create(ctl::Ctx &ctx, const DevArgs &args) const;
	/** The driver of @p device_name, or ENOENT naming the known drivers. */
	Result<const Driver *> driver_for(std::string_view device_name) const;

private:
	std::vector<const Driver *> drivers_;
};

} // namespace iodp::dev
