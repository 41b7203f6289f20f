/* SPDX-License-Identifier: BSD-3-Clause */
#include <iodp/engine.h>
#include <iodp/worker.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

using iodp::engine::Worker;

struct iodp_worker {
	std::unique_ptr<Worker> w;
};

static int fail(struct iodp_extack *ext, const iodp::Status &s)
{
	if (ext != nullptr)
		std::snprintf(ext->msg, sizeof(ext->msg), "%s", s.message().c_str());
	return s.code();
}

int iodp_worker_create(struct iodp_ctx *ctx, const struct iodp_worker_config *cfg,
		       struct iodp_worker **out, struct iodp_extack *ext)
{
	if (ctx == nullptr || out == nullptr)
		return fail(ext, iodp::Status::error(-EINVAL, "worker_create: ctx and out are "
						     "required"));
	iodp::engine::WorkerConfig wc;
	wc.report_faults_inline = true;
	if (cfg != nullptr) {
		if (cfg->size < sizeof(*cfg))
			return fail(ext, iodp::Status::error(-EINVAL, "worker_create: config size "
							     "{} is short of {}", cfg->size,
							     sizeof(*cfg)));
		if (cfg->flags != 0)
			return fail(ext, iodp::Status::error(-EOPNOTSUPP, "worker_create: flags "
							     "{:#x} are unknown", cfg->flags));
		if (cfg->iotlb_entries != 0)
			wc.shard.entries = cfg->iotlb_entries;
		if (cfg->walk_entries != 0)
			wc.shard.walk_entries = cfg->walk_entries;
	}
	iodp::Result<std::unique_ptr<Worker>> w =
		Worker::create(iodp::ctl::ctx_of(ctx), wc);
	if (!w)
		return fail(ext, w.status());
	*out = new iodp_worker{std::move(*w)};
	return 0;
}

void iodp_worker_destroy(struct iodp_worker *w)
{
	delete w;
}

int iodp_worker_set_port(struct iodp_worker *w, uint16_t port, uint32_t dev_id,
			 struct iodp_extack *ext)
{
	iodp::Status s = w->w->set_port(port, dev_id);
	return s.ok() ? 0 : fail(ext, s);
}

size_t iodp_translate_burst(struct iodp_worker *w, const struct iodp_request *reqs, size_t n,
			    struct iodp_completion *cpls, size_t cap, size_t *consumed)
{
	size_t used = 0;
	const size_t c = w->w->translate_burst(reqs, n, cpls, cap, &used);
	if (consumed != nullptr)
		*consumed = used;
	return c;
}

void iodp_worker_offline(struct iodp_worker *w)
{
	w->w->offline();
}

void iodp_worker_online(struct iodp_worker *w)
{
	w->w->online();
}

void iodp_worker_get_stats(const struct iodp_worker *w, struct iodp_worker_stats *out)
{
	const iodp::engine::WorkerStats s = w->w->stats();
	*out = iodp_worker_stats{s.requests, s.completions, s.pages, s.hits, s.misses,
				 s.walks, s.walk_reads, s.faults, s.invalidations};
}
