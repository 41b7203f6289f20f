/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * iodp-ipc-driver: a userspace driver in its own process, feeding an `ipc` device of a
 * running iodp-pmd (see <iodp/ipc_proto.h>). No EAL: only DPDK's ring header functions,
 * on rings the app laid out in shared memory.
 *
 * It shares a guest memory memfd, maps it at a scattered IOVA layout (one chunk left
 * unmapped), posts requests of random length and access, checks every completion against
 * its own idea of where each IOVA lives (and writes through the returned pointer, as a DMA
 * would), then unmaps a chunk and checks that nothing translates into it any more.
 *
 *   iodp-ipc-driver --socket PATH [--mem SIZE_MIB] [--requests N] [--mode MODE]
 *
 * Modes: normal (the above, then BYE), forever (traffic until killed), garbage (a
 * malformed message after attaching: the app must drop it), corrupt-ring (scribble over
 * the request ring's producer index: the app must stop the device, not crash).
 * Exit status: 0 as expected, 1 wrong answers or an unexpected app reaction, 2 usage.
 */
#define _GNU_SOURCE
#include <iodp/ipc_proto.h>
#include <iodp/request.h>

#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define IOVA_BASE 0x10000000ull
#define CHUNK (64u * 1024u)
#define HOLE_CHUNK 3u   /* never mapped: requests there must fault */
#define BURST 32u
#define MAX_LEN 8192u   /* a request touches at most 3 pages: 3 completions */

struct driver {
	int sock;
	uint32_t seq;
	uint8_t *mem;
	uint64_t mem_size;
	uint64_t nchunks;
	uint8_t *rings;
	struct iodp_ipc_rings layout;
	uint64_t unmapped_chunk; /* after the unmap check: its chunk, else ~0 */
	uint64_t rng;
	/* counters */
	uint64_t requests, completions, faults, expected_faults, mismatches, dma_bytes;
	bool app_hung_up; /* --mode forever: the app closed the connection */
};

struct inflight {
	uint64_t iova;
	uint32_t len;
	uint32_t seen;   /* bytes answered so far */
	uint8_t access;
	uint8_t busy;
};

static void die(const char *what)
{
	fprintf(stderr, "iodp-ipc-driver: %s\n", what);
	exit(1);
}

static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

/* Chunk k of IOVA space lives at chunk (k * 7) mod n of guest memory: not 1:1, so a wrong
 * answer lands somewhere else. */
static uint64_t chunk_offset(const struct driver *d, uint64_t k)
{
	return ((k * 7) % d->nchunks) * CHUNK;
}

static bool mapped(const struct driver *d, uint64_t iova)
{
	const uint64_t k = (iova - IOVA_BASE) / CHUNK;
	return k < d->nchunks && k != HOLE_CHUNK && k != d->unmapped_chunk;
}

/* ---- the socket ---------------------------------------------------------------------- */

static void send_msg(struct driver *d, struct iodp_ipc_msg *m, int fd)
{
	struct iovec iov = {m, sizeof(*m)};
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	m->seq = ++d->seq;
	if (fd >= 0) {
		memset(cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	if (sendmsg(d->sock, &mh, MSG_NOSIGNAL) == (ssize_t)sizeof(*m))
		return;
	/* The app may have refused us and closed before reading (a second driver for one
	 * device): its reply, if one is waiting, says why. */
	const int err = errno;
	struct iodp_ipc_msg r;
	if (recv(d->sock, &r, sizeof(r), MSG_DONTWAIT) == (ssize_t)sizeof(r) &&
	    r.type == IODP_IPC_REPLY && r.status < 0) {
		r.error[sizeof(r.error) - 1] = '\0';
		fprintf(stderr, "iodp-ipc-driver: the app refused: %s\n", r.error);
		exit(1);
	}
	fprintf(stderr, "iodp-ipc-driver: cannot send to the app: %s\n", strerror(err));
	exit(1);
}

/* True when the app has closed the connection (it stopped, or removed the device). */
static bool app_gone(struct driver *d)
{
	struct pollfd p = {d->sock, POLLIN | POLLRDHUP, 0};
	if (poll(&p, 1, 0) <= 0)
		return false;
	if (p.revents & (POLLHUP | POLLRDHUP | POLLERR))
		return true;
	char c;
	const ssize_t n = recv(d->sock, &c, 1, MSG_DONTWAIT | MSG_PEEK);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
}

/* The reply to the last message; *fd gets a descriptor if one came. */
static struct iodp_ipc_msg recv_reply(struct driver *d, int *fd)
{
	struct iodp_ipc_msg r;
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {&r, sizeof(r)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf)};
	ssize_t n = recvmsg(d->sock, &mh, MSG_CMSG_CLOEXEC);
	/* An app that refuses us closes with our message unread: the first read reports
	 * the reset, the reply it sent before is still queued behind it. */
	if (n < 0 && errno == ECONNRESET)
		n = recvmsg(d->sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	if (n != (ssize_t)sizeof(r))
		die("the app closed the connection or sent a short reply");
	if (r.type == IODP_IPC_REPLY && r.seq == 0 && r.status < 0) {
		/* Sent before it read anything of ours: a refusal of the connection itself. */
		r.error[sizeof(r.error) - 1] = '\0';
		fprintf(stderr, "iodp-ipc-driver: the app refused: %s\n", r.error);
		exit(1);
	}
	if (fd != NULL) {
		*fd = -1;
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		if (c != NULL && c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	}
	if (r.type != IODP_IPC_REPLY || r.seq != d->seq)
		die("a reply out of order");
	return r;
}

static int call(struct driver *d, struct iodp_ipc_msg *m, struct iodp_ipc_msg *reply)
{
	send_msg(d, m, -1);
	*reply = recv_reply(d, NULL);
	return reply->status;
}

/* True when the app closes the connection within @ms milliseconds. */
static bool app_hangs_up(struct driver *d, int ms)
{
	struct pollfd p = {d->sock, POLLIN, 0};
	char buf[sizeof(struct iodp_ipc_msg)];
	for (int waited = 0; waited < ms; waited += 10) {
		if (poll(&p, 1, 10) > 0) {
			const ssize_t n = recv(d->sock, buf, sizeof(buf), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno != EAGAIN))
				return true;
		}
	}
	return false;
}

/* ---- setup --------------------------------------------------------------------------- */

static int make_guest_memory(struct driver *d, uint64_t size, bool *huge)
{
	/* Hugepages when there are free ones, like the app; sealed so the app can trust the
	 * size it maps. */
	int fd = memfd_create("iodp-driver-guest", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB);
	*huge = fd >= 0 && ftruncate(fd, (off_t)size) == 0;
	if (*huge) {
		d->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
		*huge = d->mem != MAP_FAILED;
	}
	if (!*huge) {
		if (fd >= 0)
			close(fd);
		fd = memfd_create("iodp-driver-guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (fd < 0 || ftruncate(fd, (off_t)size) != 0)
			die("cannot make the guest memory memfd");
		d->mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (d->mem == MAP_FAILED)
			die("cannot map the guest memory");
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
		die("cannot seal the guest memory memfd");
	d->mem_size = size;
	return fd;
}

static void attach(struct driver *d, const char *path, uint64_t mem_size)
{
	d->sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (d->sock < 0 || connect(d->sock, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		fprintf(stderr, "iodp-ipc-driver: cannot connect to %s: %s\n", path, strerror(errno));
		exit(1);
	}
	bool huge;
	const int memfd = make_guest_memory(d, mem_size, &huge);
	struct iodp_ipc_msg m = {.type = IODP_IPC_HELLO};
	m.u.hello.version = IODP_IPC_VERSION;
	m.u.hello.mem_size = mem_size;
	m.u.hello.mem_base = (uint64_t)(uintptr_t)d->mem;
	snprintf(m.u.hello.name, sizeof(m.u.hello.name), "iodp-ipc-driver");
	send_msg(d, &m, memfd);
	close(memfd); /* the app has its own reference now */
	int rings_fd;
	const struct iodp_ipc_msg r = recv_reply(d, &rings_fd);
	if (r.status != 0) {
		fprintf(stderr, "iodp-ipc-driver: HELLO refused: %s\n", r.error);
		exit(1);
	}
	if (rings_fd < 0)
		die("HELLO's reply carried no rings");
	d->layout = r.u.rings;
	if (d->layout.elem_size != sizeof(struct iodp_request) || d->layout.queues == 0)
		die("unexpected ring layout");
	d->rings = mmap(NULL, d->layout.size, PROT_READ | PROT_WRITE, MAP_SHARED, rings_fd, 0);
	if (d->rings == MAP_FAILED)
		die("cannot map the rings");
	close(rings_fd);
	printf("iodp-ipc-driver: attached to %s on %s: %u queue(s) of %u entries, %llu MiB of "
	       "guest memory on %s\n", d->layout.device, path, d->layout.queues,
	       d->layout.entries, (unsigned long long)(mem_size >> 20),
	       huge ? "hugepages" : "4 KiB pages");
	fflush(stdout);

	d->nchunks = mem_size / CHUNK;
	for (uint64_t k = 0; k < d->nchunks; k++) {
		if (k == HOLE_CHUNK)
			continue;
		struct iodp_ipc_msg mm = {.type = IODP_IPC_MAP}, rr;
		mm.u.map.iova = IOVA_BASE + k * CHUNK;
		mm.u.map.offset = chunk_offset(d, k);
		mm.u.map.length = CHUNK;
		mm.u.map.flags = IODP_IPC_MAP_READ | IODP_IPC_MAP_WRITE;
		if (call(d, &mm, &rr) != 0) {
			fprintf(stderr, "iodp-ipc-driver: MAP refused: %s\n", rr.error);
			exit(1);
		}
	}
}

static struct rte_ring *req_ring(const struct driver *d, unsigned q)
{
	return (struct rte_ring *)(d->rings + 2 * q * d->layout.ring_stride);
}

static struct rte_ring *cpl_ring(const struct driver *d, unsigned q)
{
	return (struct rte_ring *)(d->rings + (2 * q + 1) * d->layout.ring_stride);
}

/* ---- traffic ------------------------------------------------------------------------- */

/* Check one completion against where the driver knows each IOVA lives. */
static void check(struct driver *d, struct inflight *f, const struct iodp_completion *c)
{
	const uint64_t iova = f->iova + c->offset;
	if (c->fault != 0) {
		/* Right only at the request's first unmapped byte. */
		uint64_t hole = 0;
		while (hole < f->len && mapped(d, f->iova + hole))
			hole = (f->iova + hole) / CHUNK * CHUNK + CHUNK - f->iova;
		if (hole >= f->len || c->offset != hole || c->offset < f->seen ||
		    !(c->flags & IODP_CPL_LAST))
			d->mismatches++;
		else
			d->expected_faults++;
		d->faults++;
		f->seen = f->len;
		return;
	}
	const uint64_t k = (iova - IOVA_BASE) / CHUNK;
	const uint64_t want = (uint64_t)(uintptr_t)d->mem + chunk_offset(d, k) + iova % CHUNK;
	if (!mapped(d, iova) || c->host != want || c->offset != f->seen || c->length == 0 ||
	    c->offset + c->length > f->len ||
	    (iova % CHUNK) + c->length > CHUNK /* one run never leaves its chunk */) {
		d->mismatches++;
	} else if (f->access & IODP_ACCESS_WRITE) {
		/* The DMA: through the pointer the app returned, which is ours. */
		memset((void *)(uintptr_t)c->host, (int)(iova & 0xff) | 1, c->length);
		if (d->mem[chunk_offset(d, k) + iova % CHUNK] != (uint8_t)((iova & 0xff) | 1))
			d->mismatches++;
		d->dma_bytes += c->length;
	}
	f->seen += c->length;
}

/* Post and answer @n requests on every queue (n == 0: until killed); @target_chunk >= 0
 * sends every request into that chunk. */
static void traffic(struct driver *d, uint64_t n, int64_t target_chunk)
{
	const unsigned nq = d->layout.queues, entries = d->layout.entries;
	/* Outstanding requests: their completions (up to 3 each) always fit the ring. */
	const unsigned depth = (entries - 1) / 3 < 256 ? (entries - 1) / 3 : 256;
	struct inflight *fl = calloc((size_t)nq * depth, sizeof(*fl));
	unsigned *outstanding = calloc(nq, sizeof(unsigned));
	uint64_t *next_slot = calloc(nq, sizeof(uint64_t));
	uint64_t posted = 0, answered = 0;
	if (fl == NULL || outstanding == NULL || next_slot == NULL)
		die("out of memory");
	const uint64_t target = n * nq;
	for (uint64_t pass = 0; n == 0 || answered < target; pass++) {
		/* --mode forever ends when the app does. */
		if (n == 0 && (pass & 1023) == 0 && app_gone(d)) {
			d->app_hung_up = true;
			break;
		}
		for (unsigned q = 0; q < nq; q++) {
			struct inflight *f = fl + (size_t)q * depth;
			struct iodp_request reqs[BURST];
			unsigned k = 0;
			while (k < BURST && outstanding[q] + k < depth &&
			       (n == 0 || posted + k < target)) {
				const uint64_t slot = (next_slot[q] + k) % depth;
				if (f[slot].busy)
					break;
				const uint64_t r = next_rand(&d->rng);
				const uint64_t chunk = target_chunk >= 0 ? (uint64_t)target_chunk
									  : (r >> 8) % d->nchunks;
				const uint64_t off = (r >> 32) % CHUNK;
				struct iodp_request *q_req = &reqs[k];
				memset(q_req, 0, sizeof(*q_req));
				q_req->iova = IOVA_BASE + chunk * CHUNK + off;
				q_req->length = 1 + (uint32_t)((r >> 20) % MAX_LEN);
				if (q_req->iova + q_req->length > IOVA_BASE + d->nchunks * CHUNK)
					q_req->length = (uint32_t)(IOVA_BASE + d->nchunks * CHUNK -
								   q_req->iova);
				q_req->access = (r & 1) ? IODP_ACCESS_WRITE : IODP_ACCESS_READ;
				q_req->pasid = IODP_PASID_NONE;
				q_req->cookie = slot;
				f[slot] = (struct inflight){q_req->iova, q_req->length, 0, q_req->access, 1};
				k++;
			}
			if (k != 0) {
				const unsigned put = rte_ring_sp_enqueue_burst_elem(
					req_ring(d, q), reqs, sizeof(reqs[0]), k, NULL);
				for (unsigned i = put; i < k; i++)
					f[reqs[i].cookie].busy = 0;
				next_slot[q] += put;
				outstanding[q] += put;
				posted += put;
				d->requests += put;
			}
			struct iodp_completion cpls[BURST * 3];
			const unsigned got = rte_ring_sc_dequeue_burst_elem(
				cpl_ring(d, q), cpls, sizeof(cpls[0]), BURST * 3, NULL);
			for (unsigned i = 0; i < got; i++) {
				if (cpls[i].cookie >= depth || !f[cpls[i].cookie].busy) {
					d->mismatches++;
					continue;
				}
				struct inflight *one = &f[cpls[i].cookie];
				check(d, one, &cpls[i]);
				if (cpls[i].flags & IODP_CPL_LAST) {
					if (one->seen != one->len)
						d->mismatches++;
					one->busy = 0;
					outstanding[q]--;
					answered++;
					d->completions++;
				}
			}
		}
	}
	free(fl);
	free(outstanding);
	free(next_slot);
}

static uint64_t parse_u64(const char *s, const char *what)
{
	char *end;
	errno = 0;
	const unsigned long long v = strtoull(s, &end, 0);
	if (errno != 0 || end == s || *end != '\0') {
		fprintf(stderr, "iodp-ipc-driver: %s: '%s' is not a number\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	const char *path = NULL, *mode = "normal";
	uint64_t mem_mib = 16, requests = 100000;
	for (int i = 1; i < argc; i++) {
		if (i + 1 < argc && strcmp(argv[i], "--socket") == 0)
			path = argv[++i];
		else if (i + 1 < argc && strcmp(argv[i], "--mem") == 0)
			mem_mib = parse_u64(argv[++i], "--mem");
		else if (i + 1 < argc && strcmp(argv[i], "--requests") == 0)
			requests = parse_u64(argv[++i], "--requests");
		else if (i + 1 < argc && strcmp(argv[i], "--mode") == 0)
			mode = argv[++i];
		else {
			fprintf(stderr, "usage: iodp-ipc-driver --socket PATH [--mem MIB] "
				"[--requests N] [--mode normal|forever|garbage|corrupt-ring]\n");
			return 2;
		}
	}
	if (path == NULL || mem_mib < 2 || mem_mib % 2 != 0 || mem_mib > 4096 ||
	    (strcmp(mode, "normal") != 0 && strcmp(mode, "forever") != 0 &&
	     strcmp(mode, "garbage") != 0 && strcmp(mode, "corrupt-ring") != 0)) {
		fprintf(stderr, "iodp-ipc-driver: need --socket PATH, --mem an even number of MiB "
			"(2 to 4096), --mode normal|forever|garbage|corrupt-ring\n");
		return 2;
	}
	struct driver d = {.rng = 0x9e3779b97f4a7c15ull, .unmapped_chunk = ~0ull};
	attach(&d, path, mem_mib << 20);

	if (strcmp(mode, "garbage") == 0) {
		traffic(&d, 1000, -1);
		const char junk[7] = "garbage";
		if (send(d.sock, junk, sizeof(junk), MSG_NOSIGNAL) != (ssize_t)sizeof(junk))
			die("cannot send the garbage");
		const bool dropped = app_hangs_up(&d, 5000);
		printf("iodp-ipc-driver: garbage sent; the app %s\n",
		       dropped ? "dropped the connection" : "did NOT drop the connection");
		return dropped && d.mismatches == 0 ? 0 : 1;
	}
	if (strcmp(mode, "corrupt-ring") == 0) {
		traffic(&d, 1000, -1);
		struct rte_ring *r = req_ring(&d, 0);
		__atomic_store_n(&r->prod.tail, r->cons.tail + 4 * d.layout.entries,
				 __ATOMIC_RELEASE);
		const bool dropped = app_hangs_up(&d, 5000);
		printf("iodp-ipc-driver: request ring corrupted; the app %s\n",
		       dropped ? "stopped the device" : "did NOT stop the device");
		return dropped && d.mismatches == 0 ? 0 : 1;
	}
	traffic(&d, strcmp(mode, "forever") == 0 ? 0 : requests, -1);
	if (d.app_hung_up) {
		printf("iodp-ipc-driver: the app closed the connection (it stopped, or removed the "
		       "device); stopping. requests=%llu completions=%llu mismatches=%llu\n",
		       (unsigned long long)d.requests, (unsigned long long)d.completions,
		       (unsigned long long)d.mismatches);
		return d.mismatches == 0 ? 0 : 1;
	}

	/* Unmap a mapped chunk: once the reply comes, nothing may translate into it. */
	const uint64_t victim = HOLE_CHUNK + 1;
	struct iodp_ipc_msg m = {.type = IODP_IPC_UNMAP}, r;
	m.u.unmap.iova = IOVA_BASE + victim * CHUNK;
	m.u.unmap.length = CHUNK;
	if (call(&d, &m, &r) != 0 || r.u.unmapped != CHUNK) {
		fprintf(stderr, "iodp-ipc-driver: UNMAP failed: %s\n", r.error);
		return 1;
	}
	d.unmapped_chunk = victim;
	const uint64_t faults_before = d.expected_faults;
	traffic(&d, 1000, (int64_t)victim);
	const uint64_t after_unmap = d.expected_faults - faults_before;

	struct iodp_ipc_msg bye = {.type = IODP_IPC_BYE};
	(void)call(&d, &bye, &r);
	printf("iodp-ipc-driver: requests=%llu completions=%llu faults=%llu expected_faults=%llu "
	       "mismatches=%llu dma_bytes=%llu faults_after_unmap=%llu\n",
	       (unsigned long long)d.requests, (unsigned long long)d.completions,
	       (unsigned long long)d.faults, (unsigned long long)d.expected_faults,
	       (unsigned long long)d.mismatches, (unsigned long long)d.dma_bytes,
	       (unsigned long long)after_unmap);
	const bool ok = d.mismatches == 0 && d.requests == d.completions &&
			after_unmap == 1000ull * d.layout.queues && d.expected_faults > after_unmap;
	return ok ? 0 : 1;
}
