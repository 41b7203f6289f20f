/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Reports: one tree of values (nlohmann::json) rendered two ways (JSON text, DPDK
 * telemetry; the text summary reads the same numbers), with the engine's and devices'
 * counters named by counters.h's tables, so no two reports disagree on a name.
 */
#include "report.h"

#include <iodp/counters.h>
#include <iodp/text.h>

#include <nlohmann/json.hpp>

#include <rte_telemetry.h>

#include <cinttypes>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <utility>

namespace iodp::pmd {

namespace {

/* Key order is kept: the summary reads in the order it is written. */
using Json = nlohmann::ordered_json;

/** Rates in plain digits (a script may not expect 2.5e+07), fractions to 6 digits. */
std::string number(double d)
{
	char buf[64];
	std::snprintf(buf, sizeof(buf), d >= 1000 || d <= -1000 ? "%.1f" : "%.6g", d);
	return buf;
}

/** @p d as number() writes it: JSON then prints those digits (its shortest form). */
double rounded(double d)
{
	return std::strtod(number(d).c_str(), nullptr);
}

/** Text from outside (names, reasons, events) made printable: valid UTF-8, no controls. */
std::string text(const std::string &raw)
{
	return printable(raw);
}

/** A counters.h visitor that fills a JSON object: flags as booleans. */
auto json_adder(Json &j)
{
	return [&j](const char *name, uint64_t v, engine::CounterKind kind) {
		if (kind == engine::CounterKind::flag)
			j[text(name)] = v != 0;
		else
			j[text(name)] = v;
	};
}

/**
 * Into a telemetry dict. DPDK 22.11 telemetry has no floating point (fractions go as
 * decimal strings) and nests one level: deeper members are left out.
 */
void to_telemetry(const Json &obj, rte_tel_data *d, bool nested = false)
{
	for (const auto &[key, v] : obj.items()) {
		if (v.is_number_unsigned() || v.is_number_integer()) {
			rte_tel_data_add_dict_u64(d, key.c_str(), v.get<uint64_t>());
		} else if (v.is_number_float()) {
			rte_tel_data_add_dict_string(d, key.c_str(), number(v.get<double>()).c_str());
		} else if (v.is_boolean()) {
			rte_tel_data_add_dict_u64(d, key.c_str(), v.get<bool>() ? 1 : 0);
		} else if (v.is_string()) {
			rte_tel_data_add_dict_string(d, key.c_str(),
						     v.get_ref<const std::string &>().c_str());
		} else if (nested) {
			continue;
		} else if (v.is_object()) {
			rte_tel_data *c = rte_tel_data_alloc();
			if (c == nullptr)
				continue;
			rte_tel_data_start_dict(c);
			to_telemetry(v, c, true);
			rte_tel_data_add_dict_container(d, key.c_str(), c, 0);
		} else if (v.is_array()) {
			// Arrays of strings (events) only.
			rte_tel_data *c = rte_tel_data_alloc();
			if (c == nullptr)
				continue;
			rte_tel_data_start_array(c, RTE_TEL_STRING_VAL);
			for (const Json &i : v)
				if (i.is_string())
					rte_tel_data_add_array_string(
						c, i.get_ref<const std::string &>().c_str());
			rte_tel_data_add_dict_container(d, key.c_str(), c, 0);
		}
	}
}

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

Json worker_value(const WorkerRates &w)
{
	return Json{{"lcore", w.lcore},
		    {"requests", w.requests},
		    {"requests_per_s", rounded(w.requests_per_s)},
		    {"hit_rate", rounded(w.hit_rate)},
		    {"walks_per_s", rounded(w.walks_per_s)},
		    {"faults", w.faults},
		    {"busy", rounded(w.busy)}};
}

Json summary_value(const RunInfo &run, const Sample &start, const Sample &end,
		   const engine::Engine &eng, bool with_arrays)
{
	const Rates r = rates_between(start, end, eng);
	const dev::DevStats t = device_totals(end);
	const iotlb::LatencyHistogram::Counts sync = end.sync - start.sync;
	Json v = {
		{"duration_s", rounded(r.seconds)},
		{"config", text(run.config)},
		{"hugepages", run.hugepages},
		{"workers", end.workers.size()},
		{"devices", end.ports.size()},
		{"requests", t.requests},
		{"completions", t.completions},
		{"faults", t.faults},
		{"expected_faults", t.expected_faults},
		{"mismatches", t.mismatches},
		{"lost", end.engine.total.lost},
		{"requests_per_s", rounded(per_s(t.requests, r.seconds))},
		{"hit_rate", rounded(r.hit_rate)},
		{"walks", end.engine.total.walks - start.engine.total.walks},
		{"walks_per_s", rounded(r.walks_per_s)},
		{"invalidations_per_s", rounded(r.invals_per_s)},
		{"commands", end.engine.commands},
		{"command_errors", end.engine.command_errors},
		{"devices_lost", end.engine.devices_lost},
	};
	// Every figure within the window's slowest bucket: quantiles are bucket upper edges,
	// and the engine's max covers its whole life (device setup too).
	const LatencyHistogram::Figures sf = sync.figures(end.engine.sync_max_ns);
	v["sync_latency_us"] = Json{{"count", sf.count},
				    {"p50", rounded(sf.p50_ns / 1e3)},
				    {"p99", rounded(sf.p99_ns / 1e3)},
				    {"max", rounded(sf.max_ns / 1e3)}};
	// The engine's counters at the end, named as /iodp/stats names them (counters.h).
	Json stats = Json::object();
	engine::visit_stats(end.engine, json_adder(stats));
	v["stats"] = std::move(stats);
	if (!run.stop_reason.empty())
		v["stopped_by"] = text(run.stop_reason);
	if (with_arrays) {
		Json workers = Json::array();
		for (const WorkerRates &w : r.workers)
			workers.push_back(worker_value(w));
		v["per_worker"] = std::move(workers);
		Json devs = Json::array();
		for (const engine::PortReport &p : end.ports) {
			Json d = {{"name", text(p.info.name)},
				  {"driver", text(p.info.driver)},
				  {"description", text(p.info.description)}};
			// The counters as /iodp/devices names them, the driver's own included.
			engine::visit_device(p.stats, json_adder(d));
			d["state"] = p.gone ? "removed" : "running";
			if (p.gone)
				d["reason"] = text(p.gone_reason);
			devs.push_back(std::move(d));
		}
		v["per_device"] = std::move(devs);
	}
	Json events = Json::array();
	for (const std::string &e : run.events)
		events.push_back(text(e));
	v["events"] = std::move(events);
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
std::unique_ptr<Json> g_summary, g_rates;

int tel_render(const std::unique_ptr<Json> &v, rte_tel_data *d)
{
	rte_tel_data_start_dict(d);
	std::lock_guard g(g_tel_lock);
	if (v)
		to_telemetry(*v, d);
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
	// Every figure within the window's slowest bucket: quantiles are bucket upper edges,
	// and the engine's max covers its whole life (device setup too).
	const LatencyHistogram::Figures sf = sync.figures(end.engine.sync_max_ns);
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
	// Strings went through printable() (valid UTF-8); replace is for what might not have.
	return summary_value(run, start, end, eng, true)
		       .dump(-1, ' ', false, Json::error_handler_t::replace) +
	       '\n';
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
	auto summary = std::make_unique<Json>(summary_value(run, start, now, eng, false));
	auto rates = std::make_unique<Json>(Json::object());
	(*rates)["total"] = Json{{"seconds", rounded(last.seconds)},
				 {"requests_per_s", rounded(last.requests_per_s)},
				 {"hit_rate", rounded(last.hit_rate)},
				 {"walks_per_s", rounded(last.walks_per_s)},
				 {"faults", last.faults},
				 {"invalidations_per_s", rounded(last.invals_per_s)},
				 {"sync_p99_us", rounded(last.sync_p99_ns / 1e3)}};
	for (size_t w = 0; w < last.workers.size(); w++)
		(*rates)["worker" + std::to_string(w)] = worker_value(last.workers[w]);
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
