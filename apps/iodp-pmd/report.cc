/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Reports: one tree of values rendered three ways (JSON text, DPDK telemetry, and the
 * text summary reads the same numbers), so the three never disagree on a name.
 */
#include "report.h"

#include <iodp/text.h>

#include <rte_telemetry.h>

#include <cinttypes>
#include <memory>
#include <mutex>
#include <utility>
#include <variant>

namespace iodp::pmd {

namespace {

/** A JSON value: enough for reports (no parsing). */
class Value {
public:
	using Members = std::vector<std::pair<std::string, Value>>;
	using Items = std::vector<Value>;

	Value() : v_(Members{}) {}
	Value(uint64_t u) : v_(u) {}
	Value(unsigned u) : v_(uint64_t{u}) {}
	Value(double d) : v_(d) {}
	Value(bool b) : v_(b) {}
	Value(std::string s) : v_(std::move(s)) {}
	Value(const char *s) : v_(std::string(s)) {}
	static Value array() { Value v; v.v_ = Items{}; return v; }

	Value &set(std::string key, Value v)
	{
		std::get<Members>(v_).emplace_back(std::move(key), std::move(v));
		return *this;
	}
	Value &push(Value v)
	{
		std::get<Items>(v_).push_back(std::move(v));
		return *this;
	}

	void dump(std::string &out) const
	{
		char buf[64];
		if (const auto *u = std::get_if<uint64_t>(&v_)) {
			std::snprintf(buf, sizeof(buf), "%" PRIu64, *u);
			out += buf;
		} else if (const auto *d = std::get_if<double>(&v_)) {
			out += number(*d);
		} else if (const auto *b = std::get_if<bool>(&v_)) {
			out += *b ? "true" : "false";
		} else if (const auto *s = std::get_if<std::string>(&v_)) {
			quote(*s, out);
		} else if (const auto *m = std::get_if<Members>(&v_)) {
			out += '{';
			for (size_t i = 0; i < m->size(); i++) {
				if (i != 0)
					out += ", ";
				quote((*m)[i].first, out);
				out += ": ";
				(*m)[i].second.dump(out);
			}
			out += '}';
		} else {
			const auto &a = std::get<Items>(v_);
			out += '[';
			for (size_t i = 0; i < a.size(); i++) {
				if (i != 0)
					out += ", ";
				a[i].dump(out);
			}
			out += ']';
		}
	}

	/**
	 * Into a telemetry dict. DPDK 22.11 telemetry has no floating point (fractions go as
	 * decimal strings) and nests one level: deeper members are left out.
	 */
	void to_telemetry(rte_tel_data *d, bool nested = false) const
	{
		for (const auto &[key, v] : std::get<Members>(v_)) {
			if (const auto *u = std::get_if<uint64_t>(&v.v_)) {
				rte_tel_data_add_dict_u64(d, key.c_str(), *u);
			} else if (const auto *f = std::get_if<double>(&v.v_)) {
				rte_tel_data_add_dict_string(d, key.c_str(), number(*f).c_str());
			} else if (const auto *b = std::get_if<bool>(&v.v_)) {
				rte_tel_data_add_dict_u64(d, key.c_str(), *b ? 1 : 0);
			} else if (const auto *s = std::get_if<std::string>(&v.v_)) {
				rte_tel_data_add_dict_string(d, key.c_str(), printable(*s).c_str());
			} else if (nested) {
				continue;
			} else if (std::holds_alternative<Members>(v.v_)) {
				rte_tel_data *c = rte_tel_data_alloc();
				if (c == nullptr)
					continue;
				rte_tel_data_start_dict(c);
				v.to_telemetry(c, true);
				rte_tel_data_add_dict_container(d, key.c_str(), c, 0);
			} else {
				// Arrays of strings (events) only.
				rte_tel_data *c = rte_tel_data_alloc();
				if (c == nullptr)
					continue;
				rte_tel_data_start_array(c, RTE_TEL_STRING_VAL);
				for (const Value &i : std::get<Items>(v.v_))
					if (const auto *s = std::get_if<std::string>(&i.v_))
						rte_tel_data_add_array_string(c, printable(*s).c_str());
				rte_tel_data_add_dict_container(d, key.c_str(), c, 0);
			}
		}
	}

private:
	/** Rates in plain digits (a script may not expect 2.5e+07), fractions to 6 digits. */
	static std::string number(double d)
	{
		char buf[64];
		std::snprintf(buf, sizeof(buf), d >= 1000 || d <= -1000 ? "%.1f" : "%.6g", d);
		return buf;
	}

	/** Valid JSON from any bytes: printable() first (no controls, valid UTF-8). */
	static void quote(const std::string &raw, std::string &out)
	{
		const std::string s = printable(raw);
		out += '"';
		for (const char ch : s) {
			const auto c = static_cast<unsigned char>(ch);
			if (c == '"' || c == '\\') {
				out += '\\';
				out += ch;
			} else if (c < 0x20) {
				char buf[8];
				std::snprintf(buf, sizeof(buf), "\\u%04x", c);
				out += buf;
			} else {
				out += ch;
			}
		}
		out += '"';
	}

	std::variant<uint64_t, double, bool, std::string, Members, Items> v_;
};

double per_s(uint64_t n, double s)
{
	return s > 0 ? static_cast<double>(n) / s : 0.0;
}

double ratio(uint64_t a, uint64_t b)
{
	return b != 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0;
}

dev::DevStats device_totals(const Sample &s)
{
	dev::DevStats t;
	for (const engine::PortReport &p : s.ports) {
		t.requests += p.stats.requests;
		t.completions += p.stats.completions;
		t.faults += p.stats.faults;
		t.expected_faults += p.stats.expected_faults;
		t.mismatches += p.stats.mismatches;
		t.commands += p.stats.commands;
		t.dma_bytes += p.stats.dma_bytes;
		t.checks_answers |= p.stats.checks_answers;
	}
	return t;
}

/** Ports that know their right answers, of all ports. */
std::pair<size_t, size_t> checking_ports(const Sample &s)
{
	size_t n = 0;
	for (const engine::PortReport &p : s.ports)
		n += p.stats.checks_answers;
	return {n, s.ports.size()};
}

/**
 * Sync latency of one window, every figure within the window's slowest bucket: quantiles
 * are bucket upper edges, and the engine's max covers its whole life (device setup too).
 */
struct SyncFigures {
	uint64_t count = 0, p50_ns = 0, p99_ns = 0, max_ns = 0;
};

SyncFigures sync_figures(const iotlb::LatencyHistogram::Counts &c, uint64_t lifetime_max_ns)
{
	SyncFigures f;
	f.count = c.total;
	if (c.total == 0)
		return f;
	f.max_ns = std::min(c.highest(), lifetime_max_ns != 0 ? lifetime_max_ns : c.highest());
	f.p50_ns = std::min(c.quantile(0.5), f.max_ns);
	f.p99_ns = std::min(c.quantile(0.99), f.max_ns);
	return f;
}

Value worker_value(const WorkerRates &w)
{
	Value v;
	v.set("lcore", w.lcore)
		.set("requests", w.requests)
		.set("requests_per_s", w.requests_per_s)
		.set("hit_rate", w.hit_rate)
		.set("walks_per_s", w.walks_per_s)
		.set("faults", w.faults)
		.set("busy", w.busy);
	return v;
}

Value summary_value(const RunInfo &run, const Sample &start, const Sample &end,
		    const engine::Engine &eng, bool with_arrays)
{
	const Rates r = rates_between(start, end, eng);
	const dev::DevStats t = device_totals(end);
	const iotlb::LatencyHistogram::Counts sync = end.sync - start.sync;
	Value v;
	v.set("duration_s", r.seconds)
		.set("config", run.config)
		.set("hugepages", run.hugepages)
		.set("workers", static_cast<unsigned>(end.workers.size()))
		.set("devices", static_cast<unsigned>(end.ports.size()))
		.set("requests", t.requests)
		.set("completions", t.completions)
		.set("faults", t.faults)
		.set("expected_faults", t.expected_faults)
		.set("mismatches", t.mismatches)
		.set("lost", end.engine.total.lost)
		.set("requests_per_s", per_s(t.requests, r.seconds))
		.set("hit_rate", r.hit_rate)
		.set("walks", end.engine.total.walks - start.engine.total.walks)
		.set("walks_per_s", r.walks_per_s)
		.set("invalidations_per_s", r.invals_per_s)
		.set("commands", end.engine.commands)
		.set("command_errors", end.engine.command_errors)
		.set("devices_lost", end.engine.devices_lost);
	const SyncFigures sf = sync_figures(sync, end.engine.sync_max_ns);
	Value lat;
	lat.set("count", sf.count)
		.set("p50", sf.p50_ns / 1e3)
		.set("p99", sf.p99_ns / 1e3)
		.set("max", sf.max_ns / 1e3);
	v.set("sync_latency_us", std::move(lat));
	if (!run.stop_reason.empty())
		v.set("stopped_by", run.stop_reason);
	if (with_arrays) {
		Value workers = Value::array();
		for (const WorkerRates &w : r.workers)
			workers.push(worker_value(w));
		v.set("per_worker", std::move(workers));
		Value devs = Value::array();
		for (const engine::PortReport &p : end.ports) {
			Value d;
			d.set("name", p.info.name)
				.set("driver", p.info.driver)
				.set("description", p.info.description)
				.set("requests", p.stats.requests)
				.set("completions", p.stats.completions)
				.set("faults", p.stats.faults)
				.set("expected_faults", p.stats.expected_faults)
				.set("mismatches", p.stats.mismatches)
				.set("checks_answers", p.stats.checks_answers)
				.set("commands", p.stats.commands)
				.set("state", p.gone ? "removed" : "running");
			for (const auto &[name, value] : p.stats.driver_counters)
				d.set(name, value);
			if (p.gone)
				d.set("reason", p.gone_reason);
			devs.push(std::move(d));
		}
		v.set("per_device", std::move(devs));
	}
	Value events = Value::array();
	for (const std::string &e : run.events)
		events.push(e);
	v.set("events", std::move(events));
	return v;
}

std::string human(double v)
{
	char buf[32];
	if (v >= 1e9)
		std::snprintf(buf, sizeof(buf), "%.2fG", v / 1e9);
	else if (v >= 1e6)
		std::snprintf(buf, sizeof(buf), "%.2fM", v / 1e6);
	else if (v >= 1e3)
		std::snprintf(buf, sizeof(buf), "%.1fk", v / 1e3);
	else
		std::snprintf(buf, sizeof(buf), "%.0f", v);
	return buf;
}

std::string micros(uint64_t ns)
{
	char buf[32];
	std::snprintf(buf, sizeof(buf), ns < 10000 ? "%.1f us" : "%.0f us", ns / 1e3);
	return buf;
}

/* Telemetry: the control thread publishes trees, the telemetry thread renders them. */
std::mutex g_tel_lock;
std::unique_ptr<Value> g_summary, g_rates;

int tel_render(const std::unique_ptr<Value> &v, rte_tel_data *d)
{
	rte_tel_data_start_dict(d);
	std::lock_guard g(g_tel_lock);
	if (v)
		v->to_telemetry(d);
	return 0;
}

} // namespace

Sample Sample::take(const engine::Engine &eng, double t)
{
	Sample s;
	s.t = t;
	s.engine = eng.stats();
	s.workers = eng.worker_stats();
	s.ports = eng.ports();
	s.sync = eng.ctx().coherence().sync_latency().counts();
	return s;
}

Rates rates_between(const Sample &from, const Sample &to, const engine::Engine &eng)
{
	Rates r;
	r.seconds = to.t - from.t;
	const engine::WorkerStats &a = from.engine.total, &b = to.engine.total;
	r.requests = b.requests - a.requests;
	r.faults = b.faults - a.faults;
	r.requests_per_s = per_s(r.requests, r.seconds);
	r.hit_rate = ratio(b.hits - a.hits, b.pages - a.pages);
	r.walks_per_s = per_s(b.walks - a.walks, r.seconds);
	const size_t nw = std::max<size_t>(to.workers.size(), 1);
	r.invals_per_s = per_s(b.invalidations - a.invalidations, r.seconds) / nw;
	const iotlb::LatencyHistogram::Counts sync = to.sync - from.sync;
	r.syncs = sync.total;
	r.syncs_per_s = per_s(r.syncs, r.seconds);
	r.commands_per_sync = ratio(to.engine.commands - from.engine.commands,
				    to.engine.command_passes - from.engine.command_passes);
	r.sync_p50_ns = sync.quantile(0.5);
	r.sync_p99_ns = sync.quantile(0.99);
	for (size_t w = 0; w < to.workers.size() && w < from.workers.size(); w++) {
		const engine::WorkerStats &x = from.workers[w], &y = to.workers[w];
		WorkerRates wr;
		wr.lcore = eng.worker_lcore(static_cast<unsigned>(w));
		wr.requests = y.requests - x.requests;
		wr.requests_per_s = per_s(wr.requests, r.seconds);
		wr.hit_rate = ratio(y.hits - x.hits, y.pages - x.pages);
		wr.walks_per_s = per_s(y.walks - x.walks, r.seconds);
		wr.faults = y.faults - x.faults;
		wr.busy = ratio(y.busy_cycles - x.busy_cycles, y.total_cycles - x.total_cycles);
		r.workers.push_back(wr);
	}
	return r;
}

std::string stats_line(const Rates &r)
{
	char buf[256];
	std::snprintf(buf, sizeof(buf), "%s req/s  hit %5.1f%%  walks %s/s  faults %" PRIu64
		      "  invals %s/s  syncs %s/s (%.1f cmds each)  sync p99 %s",
		      human(r.requests_per_s).c_str(), r.hit_rate * 100,
		      human(r.walks_per_s).c_str(), r.faults, human(r.invals_per_s).c_str(),
		      human(r.syncs_per_s).c_str(), r.commands_per_sync,
		      r.syncs != 0 ? micros(r.sync_p99_ns).c_str() : "-");
	std::string line = buf;
	line += "  |";
	for (const WorkerRates &w : r.workers)
		line += " lcore" + std::to_string(w.lcore) + " " + human(w.requests_per_s);
	return line;
}

void print_summary(FILE *out, const RunInfo &run, const Sample &start, const Sample &end,
		   const engine::Engine &eng)
{
	const Rates r = rates_between(start, end, eng);
	const dev::DevStats t = device_totals(end);
	const iotlb::LatencyHistogram::Counts sync = end.sync - start.sync;
	std::fprintf(out, "\n---- iodp-pmd summary: %.1f s, %zu worker(s), %zu device(s), %s ----\n",
		     r.seconds, end.workers.size(), end.ports.size(),
		     run.hugepages ? "hugepages" : "no hugepages");
	std::fprintf(out, "requests     %" PRIu64 " (%s/s), completions %" PRIu64 ", lost %" PRIu64
		     "\n", t.requests, human(per_s(t.requests, r.seconds)).c_str(), t.completions,
		     end.engine.total.lost);
	const auto [checking, ports] = checking_ports(end);
	if (checking == ports)
		std::fprintf(out, "faults       %" PRIu64 " (%" PRIu64 " expected by their devices)\n",
			     t.faults, t.expected_faults);
	else if (checking == 0)
		std::fprintf(out, "faults       %" PRIu64 " (expected: n/a, no device here knows its "
			     "right answers; an ipc driver checks its own)\n", t.faults);
	else
		std::fprintf(out, "faults       %" PRIu64 " (%" PRIu64 " expected by the %zu device(s) "
			     "that know their right answers; n/a for the other %zu)\n", t.faults,
			     t.expected_faults, checking, ports - checking);
	if (checking == 0)
		std::fprintf(out, "mismatches   n/a (no device here checks its answers)\n");
	else
		std::fprintf(out, "mismatches   %" PRIu64 "%s\n", t.mismatches,
			     t.mismatches != 0 ? "  <- WRONG ANSWERS" : "");
	std::fprintf(out, "IOTLB        hit rate %.2f%%, %s walks/s\n", r.hit_rate * 100,
		     human(r.walks_per_s).c_str());
	// One sync per control pass for all the commands it carried out, plus one per
	// control call made outside a pass that removed a translation (an ipc driver's unmap).
	const SyncFigures sf = sync_figures(sync, end.engine.sync_max_ns);
	if (sf.count == 0)
		std::fprintf(out, "invalidation %" PRIu64 " commands, 0 syncs\n",
			     end.engine.commands);
	else
		std::fprintf(out, "invalidation %" PRIu64 " commands, %" PRIu64 " syncs (one per "
			     "control pass with commands or control call that removed "
			     "translations): p50 %s, p99 %s, max %s\n", end.engine.commands,
			     sf.count, micros(sf.p50_ns).c_str(), micros(sf.p99_ns).c_str(),
			     micros(sf.max_ns).c_str());
	for (const WorkerRates &w : r.workers)
		std::fprintf(out, "worker lcore %-3u %s req/s, hit %.2f%%, %s walks/s, %" PRIu64
			     " faults, busy %.0f%%\n", w.lcore, human(w.requests_per_s).c_str(),
			     w.hit_rate * 100, human(w.walks_per_s).c_str(), w.faults, w.busy * 100);
	for (const engine::PortReport &p : end.ports) {
		const std::string checked =
			p.stats.checks_answers
				? std::to_string(p.stats.expected_faults) + " expected), " +
					  std::to_string(p.stats.mismatches) + " mismatches"
				: std::string("expected n/a), mismatches n/a");
		std::fprintf(out, "%-8s %-8s %" PRIu64 " requests, %" PRIu64 " faults (%s%s%s  (%s)\n",
			     p.info.name.c_str(), p.gone ? "removed" : "running", p.stats.requests,
			     p.stats.faults, checked.c_str(), p.gone ? ": " : "",
			     p.gone ? p.gone_reason.c_str() : "", p.info.description.c_str());
	}
	for (const std::string &e : run.events)
		std::fprintf(out, "event: %s\n", e.c_str());
	if (!run.stop_reason.empty())
		std::fprintf(out, "stopped by %s\n", run.stop_reason.c_str());
}

std::string summary_json(const RunInfo &run, const Sample &start, const Sample &end,
			 const engine::Engine &eng)
{
	std::string out;
	summary_value(run, start, end, eng, true).dump(out);
	out += '\n';
	return out;
}

uint64_t total_mismatches(const Sample &s)
{
	return device_totals(s).mismatches;
}

void Telemetry::register_commands()
{
	rte_telemetry_register_cmd("/iodp/summary",
				   [](const char *, const char *, rte_tel_data *d) {
					   return tel_render(g_summary, d);
				   },
				   "iodp-pmd: the run so far (the --json summary's fields)");
	rte_telemetry_register_cmd("/iodp/rates",
				   [](const char *, const char *, rte_tel_data *d) {
					   return tel_render(g_rates, d);
				   },
				   "iodp-pmd: the last interval's rates, in total and per worker");
}

void Telemetry::update(const RunInfo &run, const Sample &start, const Sample &now,
		       const Rates &last, const engine::Engine &eng)
{
	auto summary = std::make_unique<Value>(summary_value(run, start, now, eng, false));
	auto rates = std::make_unique<Value>();
	Value total;
	total.set("seconds", last.seconds)
		.set("requests_per_s", last.requests_per_s)
		.set("hit_rate", last.hit_rate)
		.set("walks_per_s", last.walks_per_s)
		.set("faults", last.faults)
		.set("invalidations_per_s", last.invals_per_s)
		.set("sync_p99_us", last.sync_p99_ns / 1e3);
	rates->set("total", std::move(total));
	for (size_t w = 0; w < last.workers.size(); w++)
		rates->set("worker" + std::to_string(w), worker_value(last.workers[w]));
	std::lock_guard g(g_tel_lock);
	g_summary = std::move(summary);
	g_rates = std::move(rates);
}

void Telemetry::clear()
{
	std::lock_guard g(g_tel_lock);
	g_summary.reset();
	g_rates.reset();
}

} // namespace iodp::pmd
