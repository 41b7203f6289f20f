/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * An unmodified /dev/iommu program (plain open/ioctl/read/write/poll/close, no iodp calls),
 * run by the iommufd-preload test under `iodp-run`: the descriptor rules of
 * libiodp-preload.so are the kernel's. Exits 0 when every check holds; prints each
 * failure with its line.
 */
#define _GNU_SOURCE
#include <iodp/iodp.h> /* for the kernel's numbers and structs under iodp_ names only */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures;

#define CHECK(cond)                                                                              \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "preload_test.c:%d: %s (errno %d %s)\n", __LINE__, #cond, \
				errno, strerror(errno));                                         \
			failures++;                                                              \
		}                                                                                \
	} while (0)

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -1;
	for (struct dirent *e; (e = readdir(d)) != NULL;)
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static uint32_t ioas_alloc(int fd)
{
	struct iodp_ioas_alloc a = {.size = sizeof(a)};
	CHECK(ioctl(fd, IODP_IOMMU_IOAS_ALLOC, &a) == 0);
	return a.out_ioas_id;
}

static int destroy(int fd, uint32_t id)
{
	struct iodp_destroy d = {.size = sizeof(d), .id = id};
	return ioctl(fd, IODP_IOMMU_DESTROY, &d);
}

/* dup, dup2, dup3 and F_DUPFD share one context; the last close ends it. */
static void sharing(void)
{
	const int base = open_fds();
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0);
	const uint32_t ioas = ioas_alloc(fd);
	int d1 = dup(fd);
	int d2 = fcntl(fd, F_DUPFD_CLOEXEC, 100);
	int d3 = dup3(fd, 200, O_CLOEXEC);
	int d4 = dup2(fd, 201);
	CHECK(d1 >= 0 && d2 >= 100 && d3 == 200 && d4 == 201);
	CHECK(close(fd) == 0);
	/* The same objects through every copy: the IOAS is destroyed once. */
	CHECK(destroy(d2, ioas) == 0);
	CHECK(destroy(d3, ioas) == -1 && errno == ENOENT);
	const uint32_t again = ioas_alloc(d4);
	CHECK(again != 0);
	/* dup2 over a context descriptor drops that one and keeps the context. */
	int other = open("/dev/null", O_RDONLY);
	CHECK(dup2(other, d1) == d1);
	CHECK(ioctl(d1, IODP_IOMMU_IOAS_ALLOC, NULL) == -1 && errno == ENOTTY);
	CHECK(destroy(d4, again) == 0);
	close(other);
	close(d1);
	close(d2);
	close(d3);
	close(d4);
	CHECK(open_fds() == base);
	/* A closed context is gone: a new open starts empty. */
	fd = open("/dev/iommu", O_RDWR);
	CHECK(destroy(fd, again) == -1 && errno == ENOENT);
	close(fd);
}

struct faulting {
	int fd, fault_fd;
	uint32_t fault_id, dev_id, hwpt_id;
};

/* A device on a paging HWPT with a fault queue, nothing mapped. */
static struct faulting make_faulting(void)
{
	struct faulting f = {.fd = open("/dev/iommu", O_RDWR)};
	CHECK(f.fd >= 0);
	struct iodp_device_alloc dev = {.size = sizeof(dev), .model = IODP_IOMMU_VTD};
	strcpy(dev.name, "dev0");
	CHECK(ioctl(f.fd, IODP_DEVICE_ALLOC, &dev) == 0);
	f.dev_id = dev.out_dev_id;
	const uint32_t ioas = ioas_alloc(f.fd);
	struct iodp_fault_alloc q = {.size = sizeof(q)};
	CHECK(ioctl(f.fd, IODP_IOMMU_FAULT_QUEUE_ALLOC, &q) == 0);
	f.fault_id = q.out_fault_id;
	f.fault_fd = (int)q.out_fault_fd;
	struct iodp_hwpt_alloc h = {.size = sizeof(h), .flags = IODP_HWPT_FAULT_ID_VALID,
				    .dev_id = f.dev_id, .pt_id = ioas, .fault_id = f.fault_id};
	CHECK(ioctl(f.fd, IODP_IOMMU_HWPT_ALLOC, &h) == 0);
	f.hwpt_id = h.out_hwpt_id;
	struct iodp_device_attach at = {.size = sizeof(at), .dev_id = f.dev_id,
					.pt_id = h.out_hwpt_id};
	CHECK(ioctl(f.fd, IODP_DEVICE_ATTACH, &at) == 0);
	return f;
}

static uint32_t fault_at(const struct faulting *f, uint64_t iova)
{
	struct iodp_translate t = {.size = sizeof(t), .dev_id = f->dev_id,
				   .access = IODP_PGFAULT_PERM_READ, .iova = iova};
	CHECK(ioctl(f->fd, IODP_TRANSLATE, &t) == 0);
	CHECK(t.out_cookie != 0);
	return t.out_cookie;
}

static int readable(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
	CHECK(poll(&p, 1, 0) >= 1);
	CHECK(p.revents & POLLOUT); /* the kernel's fault file is always writable */
	return (p.revents & POLLIN) != 0;
}

/* read()/write()/poll() on the fault queue's descriptor are the kernel's. */
static void fault_file(void)
{
	struct faulting f = make_faulting();
	struct iodp_hwpt_pgfault rec[2];
	CHECK(read(f.fault_fd, rec, sizeof(rec[0]) - 1) == -1 && errno == ESPIPE);
	CHECK(read(f.fault_fd, rec, sizeof(rec)) == 0); /* nothing waits */
	CHECK(!readable(f.fault_fd));
	const uint32_t c1 = fault_at(&f, 0x10000);
	const uint32_t c2 = fault_at(&f, 0x20000);
	CHECK(readable(f.fault_fd));
	CHECK(read(f.fault_fd, rec, 0) == -1 && errno == EINVAL); /* no room for one */
	CHECK(read(f.fault_fd, rec, sizeof(rec)) == (ssize_t)sizeof(rec));
	CHECK(rec[0].cookie == c1 && rec[1].cookie == c2 && rec[0].addr == 0x10000 &&
	      rec[0].dev_id == f.dev_id);
	CHECK(!readable(f.fault_fd));
	struct iodp_hwpt_page_response resp[2] = {{.cookie = c1, .code = IODP_PAGE_RESP_SUCCESS},
						  {.cookie = 999, .code = IODP_PAGE_RESP_SUCCESS}};
	CHECK(write(f.fault_fd, resp, sizeof(resp[0]) + 1) == -1 && errno == ESPIPE);
	/* The second has an unknown cookie: the write stops after the first. */
	CHECK(write(f.fault_fd, resp, sizeof(resp)) == (ssize_t)sizeof(resp[0]));
	CHECK(write(f.fault_fd, &resp[1], sizeof(resp[1])) == -1 && errno == EINVAL);
	resp[1].cookie = c2;
	CHECK(write(f.fault_fd, &resp[1], sizeof(resp[1])) == (ssize_t)sizeof(resp[1]));
	CHECK(ioctl(f.fault_fd, IODP_IOMMU_IOAS_ALLOC, NULL) == -1 && errno == ENOTTY);
	close(f.fault_fd);
	close(f.fd);
}

/*
 * The fault queue's descriptor is the caller's: closing it and reusing the number, then
 * destroying the queue, leaves the new file alone. And it keeps its context open.
 */
static void fault_fd_ownership(void)
{
	const int base = open_fds();
	struct faulting f = make_faulting();
	CHECK(close(f.fault_fd) == 0);
	int reused = open("/dev/null", O_RDONLY);
	CHECK(reused == f.fault_fd);
	struct iodp_device_detach dt = {.size = sizeof(dt), .dev_id = f.dev_id};
	CHECK(ioctl(f.fd, IODP_DEVICE_DETACH, &dt) == 0);
	CHECK(destroy(f.fd, f.hwpt_id) == 0);
	CHECK(destroy(f.fd, f.fault_id) == 0);
	CHECK(fcntl(reused, F_GETFD) >= 0); /* still open: iodp did not close it */
	close(reused);
	close(f.fd);
	CHECK(open_fds() == base);

	/* The descriptor holds the queue, as the kernel's file: EBUSY until all are closed. */
	f = make_faulting();
	dt.dev_id = f.dev_id;
	CHECK(ioctl(f.fd, IODP_DEVICE_DETACH, &dt) == 0);
	CHECK(destroy(f.fd, f.hwpt_id) == 0);
	int copy = dup(f.fault_fd);
	CHECK(destroy(f.fd, f.fault_id) == -1 && errno == EBUSY);
	CHECK(close(f.fault_fd) == 0);
	CHECK(destroy(f.fd, f.fault_id) == -1 && errno == EBUSY);
	CHECK(close(copy) == 0);
	CHECK(destroy(f.fd, f.fault_id) == 0);
	close(f.fd);
	CHECK(open_fds() == base);

	/* The fault queue's descriptor holds the context, as the kernel's file does. */
	f = make_faulting();
	CHECK(close(f.fd) == 0);
	struct iodp_hwpt_pgfault rec;
	CHECK(read(f.fault_fd, &rec, sizeof(rec)) == 0);
	CHECK(open_fds() > base);
	CHECK(close(f.fault_fd) == 0);
	CHECK(open_fds() == base);
}

/* fork(): the child has a copy (iodp-run --help says so), not the shared file. */
static void fork_copy(void)
{
	int fd = open("/dev/iommu", O_RDWR);
	const uint32_t ioas = ioas_alloc(fd);
	pid_t child = fork();
	if (child == 0)
		_exit(destroy(fd, ioas) == 0 ? 0 : 1);
	int status = -1;
	CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
	      WEXITSTATUS(status) == 0);
	CHECK(destroy(fd, ioas) == 0); /* the parent's copy still had it */
	close(fd);
}

int main(void)
{
	/* Other descriptors are left to libc. */
	int fd = open("/dev/null", O_RDONLY);
	CHECK(fd >= 0 && ioctl(fd, IODP_IOMMU_IOAS_ALLOC, NULL) == -1 && errno == ENOTTY);
	close(fd);
	sharing();
	fault_file();
	fault_fd_ownership();
	fork_copy();
	if (failures == 0)
		printf("preload: all checks passed\n");
	return failures == 0 ? 0 : 1;
}
