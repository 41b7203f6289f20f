/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * iodp-pmd: the standalone poll-mode app. EAL arguments, "--", then its own; devices from a
 * configuration file (or a built-in default); workers on the EAL's worker lcores; a line
 * of rates every second; a summary (and --json) when it stops.
 */
#include "config.h"
#include "report.h"

#include <iodp/emul.h>
#include <iodp/engine.h>
#include <iodp/ipc.h>
#include <iodp/text.h>
#include <iodp/vfio_driver.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>
#include <string>
#include <vector>

namespace iodp::pmd {

namespace {

const char kUsage[] =
	"Usage: iodp-pmd [EAL options] -- [--config FILE] [--device DEVARGS ...]\n"
	"                [--duration SECONDS] [--json FILE] [--stats-interval SECONDS]\n"
	"       iodp-pmd -- --print-config | --help\n"
	"\n"
	"Serve devices' translation requests on the EAL's worker lcores until --duration\n"
	"passes or SIGINT / SIGTERM, printing a line of rates every interval and a summary at\n"
	"the end. Without --config or --device it runs its built-in default (--print-config\n"
	"shows it): emulated devices of several traffic profiles and table layouts.\n"
	"\n"
	"  --config FILE           devices and engine settings (doc/user-guide.md)\n"
	"  --device DEVARGS        a device, such as emul0,profile=nic,format=vtd or\n"
	"                          ipc0,path=/tmp/ipc0.sock (repeatable; adds to --config)\n"
	"  --duration SECONDS      stop after this long (default: run until a signal)\n"
	"  --json FILE             write the summary as JSON ('-': standard output)\n"
	"  --stats-interval SECONDS  the live line's period (default 1; 0: no live line)\n"
	"  --print-config          print the built-in default configuration and exit\n"
	"  --help                  this text\n"
	"\n"
	"EAL defaults added unless given: --no-pci, --file-prefix=iodp-pmd, and --no-huge -m\n"
	"1024 when no hugepages are free.\n"
	"Exit status: 0 done, 1 wrong answers (mismatches) or a runtime failure, 2 bad usage\n"
	"or configuration.\n";

std::atomic<int> g_signal{0};

void on_signal(int sig)
{
	g_signal.store(sig, std::memory_order_relaxed);
}

struct Options {
	std::string config;
	std::vector<std::string> devices;
	double duration = 0;
	std::string json;
	/** --json's file, opened before the run so that a bad path costs no run. */
	FILE *json_file = nullptr;
	double interval = 1.0;
	bool print_config = false;
	bool help = false;
};

int usage_error(const std::string &msg)
{
	std::fprintf(stderr, "iodp-pmd: %s\n(iodp-pmd -- --help for usage)\n",
		     printable(msg).c_str());
	return 2;
}

bool parse_seconds(const char *s, double *out)
{
	char *end = nullptr;
	errno = 0;
	const double v = std::strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= 0) || v > 1e9)
		return false;
	*out = v;
	return true;
}

bool has_option(const std::vector<std::string> &args, std::initializer_list<const char *> opts)
{
	for (const std::string &a : args)
		for (const char *o : opts) {
			const size_t n = std::strlen(o);
			if (a.compare(0, n, o) == 0 && (a.size() == n || a[n] == '=' || o[1] != '-'))
				return true;
		}
	return false;
}

/** The app's own arguments (after "--"); returns an exit status on error, else -1. */
int parse_options(const std::vector<std::string> &args, Options *o)
{
	for (size_t i = 0; i < args.size(); i++) {
		const std::string &a = args[i];
		auto value = [&](const char *what) -> const char * {
			if (i + 1 >= args.size())
				return nullptr;
			(void)what;
			return args[++i].c_str();
		};
		const char *v = nullptr;
		if (a == "--help" || a == "-h") {
			o->help = true;
		} else if (a == "--print-config") {
			o->print_config = true;
		} else if (a == "--config") {
			if ((v = value("FILE")) == nullptr)
				return usage_error("--config needs a FILE");
			o->config = v;
		} else if (a == "--device") {
			if ((v = value("DEVARGS")) == nullptr)
				return usage_error("--device needs DEVARGS such as emul0,profile=nic");
			o->devices.push_back(v);
		} else if (a == "--duration") {
			if ((v = value("SECONDS")) == nullptr || !parse_seconds(v, &o->duration) ||
			    o->duration == 0)
				return usage_error("--duration needs a positive number of seconds");
		} else if (a == "--json") {
			if ((v = value("FILE")) == nullptr)
				return usage_error("--json needs a FILE (or - for standard output)");
			o->json = v;
		} else if (a == "--stats-interval") {
			if ((v = value("SECONDS")) == nullptr || !parse_seconds(v, &o->interval))
				return usage_error("--stats-interval needs a number of seconds (0: off)");
		} else {
			const bool eal_like = has_option({a}, {"-l", "-c", "-n", "-m", "-a", "--lcores",
							       "--no-huge", "--no-pci", "--file-prefix",
							       "--vdev", "--log-level", "--socket-mem"});
			return usage_error("unknown option '" + printable(a) + "'" +
					   (eal_like ? " (EAL options go before '--')" : ""));
		}
	}
	return -1;
}

struct Hugepages {
	bool usable = false;
	uint64_t free_pages = 0;
	uint64_t page_kib = 0;
	std::string mount;
};

/** Free default-size hugepages and a hugetlbfs mount: what the EAL needs to use them. */
Hugepages probe_hugepages()
{
	Hugepages h;
	std::ifstream meminfo("/proc/meminfo");
	std::string key;
	uint64_t val = 0;
	while (meminfo >> key >> val) {
		if (key == "HugePages_Free:")
			h.free_pages = val;
		else if (key == "Hugepagesize:")
			h.page_kib = val;
		meminfo.ignore(256, '\n');
	}
	std::ifstream mounts("/proc/mounts");
	std::string dev, dir, type, rest;
	while (mounts >> dev >> dir >> type && std::getline(mounts, rest))
		if (type == "hugetlbfs") {
			h.mount = dir;
			break;
		}
	h.usable = h.free_pages > 0 && !h.mount.empty();
	return h;
}

unsigned cpus_available()
{
	cpu_set_t set;
	return sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
}

/** The worker lcores the configuration asks for, or an error naming what is missing. */
Result<std::vector<unsigned>> worker_lcores(const Config &c)
{
	std::vector<unsigned> all;
	unsigned lc;
	RTE_LCORE_FOREACH_WORKER(lc)
	all.push_back(lc);
	if (!c.lcores.empty())
		return c.lcores; // the engine checks each one
	if (all.empty())
		return Status::error(-EINVAL, "the EAL gave no worker lcore (the main lcore runs "
				     "control): give it two or more, e.g. -l 0-1");
	if (c.workers == 0)
		return all;
	if (c.workers > all.size())
		return Status::error(-EINVAL, "{}: [engine] workers = {}, but the EAL has {} "
				     "worker lcore(s); give it more (-l / --lcores)",
				     c.source, c.workers, all.size());
	all.resize(c.workers);
	return all;
}

/** The configuration: --config's file, else the built-in default unless --device is given. */
Result<Config> load(const Options &opt, const dev::Registry &drivers)
{
	Result<Config> c = Config{};
	if (!opt.config.empty())
		c = load_config(opt.config, drivers);
	else if (opt.devices.empty())
		c = parse_config(kDefaultConfig, "built-in default", drivers);
	else
		c->source = "--device";
	if (!c)
		return c;
	for (const std::string &d : opt.devices) {
		// The name is checked when the device is created; a repeated one is a usage
		// error now, like a repeated [device NAME] section.
		const std::string name = d.substr(0, d.find(','));
		for (const DeviceConf &other : c->devices)
			if (other.name.substr(0, other.name.find(',')) == name)
				return Status::error(-EINVAL, "--device {}: a device named {} is "
						     "already {}", printable(d).c_str(),
						     printable(name).c_str(),
						     other.line == 0 ? "given by --device"
								     : "in the configuration file");
		DeviceConf dc;
		dc.name = d; // line 0: created from the devargs as given
		c->devices.push_back(std::move(dc));
	}
	if (c->devices.size() > engine::kMaxPorts)
		return Status::error(-EINVAL, "{} devices: the engine serves at most {}",
				     c->devices.size(), engine::kMaxPorts);
	return c;
}

/** The --file-prefix the EAL will use (the last one given, else DPDK's default). */
std::string file_prefix(const std::vector<std::string> &eal)
{
	std::string prefix = "rte";
	for (size_t i = 1; i < eal.size(); i++) {
		if (eal[i].rfind("--file-prefix=", 0) == 0)
			prefix = eal[i].substr(std::strlen("--file-prefix="));
		else if (eal[i] == "--file-prefix" && i + 1 < eal.size())
			prefix = eal[i + 1];
	}
	return prefix;
}

/**
 * The pid of another process holding @p prefix's EAL lock, or 0. The EAL write-locks its
 * runtime directory's `config` file for as long as a primary process runs; a second
 * primary with the same prefix fails in rte_eal_init() with rte_errno still 0.
 */
pid_t prefix_holder(const std::string &prefix)
{
	std::string dir = getuid() == 0 ? "/var/run" : "/tmp";
	if (const char *xdg = std::getenv("XDG_RUNTIME_DIR"); getuid() != 0 && xdg != nullptr)
		dir = xdg;
	const std::string path = dir + "/dpdk/" + prefix + "/config";
	const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	struct flock lk {};
	lk.l_type = F_WRLCK;
	lk.l_whence = SEEK_SET; // l_start = l_len = 0: the whole file
	const bool held = fcntl(fd, F_GETLK, &lk) == 0 && lk.l_type != F_UNLCK;
	close(fd);
	return held ? lk.l_pid : 0;
}

/** The user's EAL arguments plus the defaults they did not override; says which memory. */
std::vector<std::string> eal_arguments(const char *argv0, const std::vector<std::string> &user,
				       bool *huge)
{
	std::vector<std::string> eal = {argv0};
	eal.insert(eal.end(), user.begin(), user.end());
	std::vector<std::string> added; // what the user did not ask for, said at start
	auto add = [&](std::initializer_list<const char *> args) {
		std::string shown;
		for (const char *a : args) {
			eal.push_back(a);
			shown += shown.empty() ? a : std::string(" ") + a;
		}
		added.push_back(shown);
	};
	if (!has_option(user, {"--no-pci", "-a", "--allow", "-b", "--block"}))
		add({"--no-pci"});
	if (!has_option(user, {"--file-prefix"}))
		add({"--file-prefix=iodp-pmd"});
	if (!has_option(user, {"-l", "-c", "--lcores"}) && cpus_available() == 1)
		add({"--lcores=0@0,1@0"}); // one CPU: the worker shares it with control
	const Hugepages hp = probe_hugepages();
	*huge = false;
	if (has_option(user, {"--no-huge"})) {
		std::printf("iodp-pmd: --no-huge given: DPDK memory and guest RAM on 4 KiB pages\n");
	} else if (hp.usable) {
		*huge = true;
		std::printf("iodp-pmd: hugepages: %llu x %llu KiB free at %s; DPDK memory, rings "
			    "and guest RAM use them\n", static_cast<unsigned long long>(hp.free_pages),
			    static_cast<unsigned long long>(hp.page_kib), hp.mount.c_str());
	} else {
		if (!has_option(user, {"-m", "--socket-mem"}))
			add({"--no-huge", "-m", "1024"});
		else
			add({"--no-huge"});
		std::printf("iodp-pmd: no free hugepages (%s): running with --no-huge -m 1024. "
			    "Rings, IOTLB shards and guest RAM sit on 4 KiB pages: translation alone "
			    "measures the same, but devices that copy data (dma=1) miss the CPU's TLB "
			    "more, about 20-25%% fewer requests/s (doc/user-guide.md). tools/setup.sh "
			    "reserves hugepages when run as root.\n",
			    hp.mount.empty() ? "no hugetlbfs mounted" : "HugePages_Free is 0");
	}
	if (!added.empty()) {
		std::string list;
		for (const std::string &a : added)
			list += " " + a;
		std::printf("iodp-pmd: EAL options added:%s (give your own before '--' to change "
			    "them)\n", list.c_str());
	}
	std::fflush(stdout);
	return eal;
}

/**
 * Warn when the control thread shares a CPU with a worker: a sync then waits for the
 * worker's time slice (measured: sync p99 ~14 ms under `taskset -c 0`, and --duration 1
 * ran 1.3 s), which nothing else would show.
 */
void warn_shared_cpus(const engine::Engine &e)
{
	const unsigned main = rte_get_main_lcore();
	const rte_cpuset_t control = rte_lcore_cpuset(main);
	for (unsigned w = 0; w < e.workers(); w++) {
		const unsigned lc = e.worker_lcore(w);
		rte_cpuset_t worker = rte_lcore_cpuset(lc), both;
		CPU_AND(&both, &control, &worker);
		if (CPU_COUNT(&both) == 0)
			continue;
		unsigned cpu = 0;
		while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &both))
			cpu++;
		std::printf("iodp-pmd: warning: the control thread (lcore %u) shares CPU %u with "
			    "worker lcore %u: invalidation syncs wait for the worker's time slice "
			    "(milliseconds, not microseconds) and the run ends late; give each its "
			    "own CPU, e.g. -l 0-%u\n", main, cpu, lc, e.workers());
	}
}

/** Create the configured devices and give them to @p e; an exit status on failure, else -1. */
int add_devices(const Config &config, const dev::Registry &drivers, ctl::Ctx &ctx,
		engine::Engine &e, std::vector<std::unique_ptr<dev::Device>> *devices)
{
	for (const DeviceConf &dc : config.devices) {
		// --device gives a devargs string; a config section gives its pairs, parsed once.
		Result<std::unique_ptr<dev::Device>> d = Status{};
		std::string blamed; // the key a failure is about: its line in the file
		if (dc.line == 0) {
			d = drivers.create(ctx, dc.name);
		} else {
			Result<const dev::Driver *> drv = drivers.driver_for(dc.name);
			Result<dev::DevArgs> args =
				drv ? dev::DevArgs::make(dc.name, dc.pairs(), (*drv)->keys, &blamed)
				    : Result<dev::DevArgs>(drv.status());
			d = args ? drivers.create(ctx, *args) : Result<std::unique_ptr<dev::Device>>(
									args.status());
			if (args)
				blamed = args->blamed();
		}
		if (!d) {
			const std::string msg =
				dc.line == 0 ? "--device " + d.status().message()
					     : dc.locate(config.source, blamed, d.status().message());
			std::fprintf(stderr, "iodp-pmd: %s\n", printable(msg).c_str());
			// A value the driver refuses is a configuration error, like a bad key.
			const int err = -d.status().code();
			return err == EINVAL || err == ENOENT || err == EEXIST || err == ERANGE ? 2 : 1;
		}
		Result<uint16_t> port = e.add_device(**d);
		if (!port) {
			std::fprintf(stderr, "iodp-pmd: %s\n", port.status().message().c_str());
			return 1;
		}
		devices->push_back(std::move(*d));
	}
	std::printf("iodp-pmd: config %s: %zu device(s) on %u worker(s) (lcores",
		    config.source.c_str(), devices->size(), e.workers());
	for (unsigned w = 0; w < e.workers(); w++)
		std::printf(" %u", e.worker_lcore(w));
	std::printf("), control on lcore %u\n", rte_get_main_lcore());
	for (const engine::PortReport &p : e.ports())
		std::printf("  port %u: %s (%s): %s\n", p.port, p.info.name.c_str(),
			    p.info.driver.c_str(), p.info.description.c_str());
	std::printf("iodp-pmd: telemetry at %s/dpdk_telemetry.v2: /iodp/summary, /iodp/rates, "
		    "/iodp/stats, /iodp/workers, /iodp/devices\n", rte_eal_get_runtime_dir());
	warn_shared_cpus(e);
	std::fflush(stdout);
	return -1;
}

/** Run the engine until --duration or a signal, then report; returns the exit status. */
int serve(engine::Engine &e, Options &opt, RunInfo run)
{
	// The first sample before the workers run: totals and rates then count the same
	// requests.
	const uint64_t hz = rte_get_tsc_hz(), t0 = rte_get_tsc_cycles();
	auto now = [&] { return static_cast<double>(rte_get_tsc_cycles() - t0) / hz; };
	const Sample start = Sample::take(e, 0);
	e.set_event_log(false); // printed below as "iodp-pmd: event: ...", once
	if (Status s = e.start(); !s.ok()) {
		std::fprintf(stderr, "iodp-pmd: %s\n", s.message().c_str());
		return 1;
	}
	engine::Engine::register_telemetry(&e);
	Telemetry::register_commands();
	Sample prev = start;
	const double period = opt.interval > 0 ? opt.interval : 1.0;
	double next = period;
	for (;;) {
		if (const int sig = g_signal.load(std::memory_order_relaxed); sig != 0) {
			run.stop_reason = sig == SIGINT ? "SIGINT" : "SIGTERM";
			break;
		}
		const double t = now();
		if (opt.duration > 0 && t >= opt.duration) {
			run.stop_reason = "--duration";
			break;
		}
		const unsigned work = e.poll_control();
		for (std::string &ev : e.take_events()) {
			std::printf("iodp-pmd: event: %s\n", ev.c_str());
			run.events.push_back(std::move(ev));
		}
		if (t >= next) {
			const Sample s = Sample::take(e, t);
			const Rates r = rates_between(prev, s, e);
			if (opt.interval > 0)
				std::printf("[%7.1fs] %s\n", t, stats_line(r).c_str());
			std::fflush(stdout);
			Telemetry::update(run, start, s, r, e);
			prev = s;
			next += period;
		}
		if (work == 0)
			rte_delay_us_sleep(50);
	}
	e.stop();
	for (std::string &ev : e.take_events())
		run.events.push_back(std::move(ev));
	const Sample end = Sample::take(e, now());
	Telemetry::clear();
	engine::Engine::unregister_telemetry(&e);

	int status = 0;
	print_summary(stdout, run, start, end, e);
	if (!opt.json.empty()) {
		const std::string js = summary_json(run, start, end, e);
		FILE *f = opt.json == "-" ? stdout : opt.json_file;
		// Every write and the close are checked: a full disk loses the summary, and
		// the exit status says so.
		errno = 0;
		bool written = std::fwrite(js.data(), 1, js.size(), f) == js.size();
		written = std::fflush(f) == 0 && written && !std::ferror(f);
		int err = errno;
		if (f != stdout) {
			opt.json_file = nullptr;
			if (std::fclose(f) != 0 && written) {
				written = false;
				err = errno;
			}
		}
		if (!written) {
			std::fprintf(stderr, "iodp-pmd: --json %s: the summary was not written: %s\n",
				     printable(opt.json).c_str(),
				     err != 0 ? std::strerror(err) : "write error");
			status = 1;
		}
	}
	if (const uint64_t wrong = total_mismatches(end); wrong != 0) {
		std::fprintf(stderr, "iodp-pmd: %llu wrong answers (mismatches)\n",
			     static_cast<unsigned long long>(wrong));
		status = 1;
	}
	return status;
}

int run(int argc, char **argv)
{
	// DPDK's convention: EAL arguments, "--", the app's. Without "--" all are the app's.
	std::vector<std::string> eal_args, app_args;
	int dashdash = -1;
	for (int i = 1; i < argc && dashdash < 0; i++)
		if (std::strcmp(argv[i], "--") == 0)
			dashdash = i;
	for (int i = 1; i < argc; i++)
		if (i != dashdash)
			(dashdash < 0 || i > dashdash ? app_args : eal_args).push_back(argv[i]);
	Options opt;
	if (int rc = parse_options(app_args, &opt); rc >= 0)
		return rc;
	if (opt.help || opt.print_config) {
		std::fputs(opt.help ? kUsage : kDefaultConfig, stdout);
		return std::fflush(stdout) == 0 && !std::ferror(stdout) ? 0 : 1;
	}
	if (!opt.json.empty() && opt.json != "-") {
		opt.json_file = std::fopen(opt.json.c_str(), "w");
		if (opt.json_file == nullptr)
			return usage_error("--json " + opt.json + ": cannot write it: " +
					   std::strerror(errno));
	}
	std::unique_ptr<FILE, int (*)(FILE *)> json_closer(opt.json_file, std::fclose);

	dev::Registry drivers;
	(void)drivers.add(emul::driver());
	(void)drivers.add(ipc::driver());
	(void)drivers.add(vfio::driver());
	// Syntax, sections and keys are checked before the EAL starts (a typo costs no
	// startup); values when the devices are created.
	Result<Config> config = load(opt, drivers);
	if (!config)
		return usage_error(config.status().message());

	RunInfo run;
	run.config = config->source;
	std::vector<std::string> eal = eal_arguments(argv[0], eal_args, &run.hugepages);
	std::vector<char *> eal_argv;
	for (std::string &s : eal)
		eal_argv.push_back(s.data());
	if (rte_eal_init(static_cast<int>(eal_argv.size()), eal_argv.data()) < 0) {
		const int err = rte_errno;
		const std::string prefix = file_prefix(eal);
		if (const pid_t pid = prefix_holder(prefix); pid != 0) {
			std::fprintf(stderr, "iodp-pmd: EAL initialisation failed: another DPDK "
				     "process (pid %d) runs with --file-prefix=%s; give this one its "
				     "own, e.g. iodp-pmd --file-prefix=%s-2 -- ...\n",
				     static_cast<int>(pid), prefix.c_str(), prefix.c_str());
			return 1;
		}
		std::fprintf(stderr, "iodp-pmd: EAL initialisation failed: %s (DPDK's lines above "
			     "say why)\n", err != 0 ? rte_strerror(err) : "no reason given");
		return err == EINVAL ? 2 : 1;
	}
	struct sigaction sa {};
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, nullptr);
	sigaction(SIGTERM, &sa, nullptr);

	int status = 2;
	{
		ctl::Ctx ctx;
		std::vector<std::unique_ptr<dev::Device>> devices; // outlive the engine
		Result<std::vector<unsigned>> lcores = worker_lcores(*config);
		Result<std::unique_ptr<engine::Engine>> eng = lcores.status();
		if (lcores) {
			engine::EngineConfig ec;
			ec.lcores = *lcores;
			ec.burst = config->burst;
			ec.worker.shard.entries = config->iotlb_entries;
			ec.worker.shard.walk_entries = config->walk_entries;
			ec.worker.serial_walks = config->serial_walks;
			eng = engine::Engine::create(ctx, ec);
		}
		if (!eng)
			std::fprintf(stderr, "iodp-pmd: %s%s%s\n", lcores ? config->source.c_str() : "",
				     lcores ? ": " : "", eng.status().message().c_str());
		else if (int rc = add_devices(*config, drivers, ctx, **eng, &devices); rc >= 0)
			status = rc;
		else
			status = serve(**eng, opt, std::move(run));
		if (eng)
			eng->reset(); // before the devices it serves
	}
	rte_eal_cleanup();
	json_closer.release(); // serve() closed it, or closes it now:
	if (opt.json_file != nullptr)
		std::fclose(opt.json_file);
	if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
		std::fprintf(stderr, "iodp-pmd: standard output: %s\n", std::strerror(errno));
		if (status == 0)
			status = 1;
	}
	return status;
}

} // namespace

} // namespace iodp::pmd

int main(int argc, char **argv)
{
	return iodp::pmd::run(argc, argv);
}
