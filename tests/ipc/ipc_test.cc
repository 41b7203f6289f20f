/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The ipc device's protocol (<iodp/ipc_proto.h>) from the driver's side of a real unix
 * socket, in one process and without an EAL: the wire layout, HELLO and its reply (the
 * rings memfd passed back), MAP / UNMAP / BYE, translations through the shared rings, and
 * every refusal: a wrong version, a HELLO without a usable memfd, bad MAPs, truncated,
 * oversized and unknown messages, descriptors where none belong, a second driver. A refusal
 * of HELLO leaves the device waiting for another driver; a protocol error stops the device
 * and says why. No descriptor is left open afterwards. (The app end to end, with the C
 * driver in its own process: tests/app.)
 */
#include "../ctl/ctl_fixture.h"

#include <iodp/engine.h>
#include <iodp/ipc.h>
#include <iodp/ipc_proto.h>

#include <gtest/gtest.h>

#include <rte_log.h>
#include <rte_ring.h>
#include <rte_ring_elem.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

namespace iodp {
namespace {

using ctl::test::ok;

constexpr uint64_t kGuestBytes = 4u << 20;

int open_fds()
{
	int n = 0;
	if (DIR *d = opendir("/proc/self/fd")) {
		while (readdir(d) != nullptr)
			n++;
		closedir(d);
	}
	return n;
}

/** A driver's guest memory: a memfd, sealed against shrinking unless told otherwise. */
int guest_memfd(uint64_t bytes, bool seal = true)
{
	const int fd = memfd_create("ipc-test-guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	EXPECT_GE(fd, 0);
	EXPECT_EQ(ftruncate(fd, static_cast<off_t>(bytes)), 0);
	if (seal) {
		EXPECT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	}
	return fd;
}

TEST(IpcWire, MessagesHaveOneFixedLayout)
{
	EXPECT_EQ(sizeof(iodp_ipc_msg), 256u);
	EXPECT_EQ(offsetof(iodp_ipc_msg, type), 0u);
	EXPECT_EQ(offsetof(iodp_ipc_msg, seq), 4u);
	EXPECT_EQ(offsetof(iodp_ipc_msg, status), 8u);
	EXPECT_EQ(offsetof(iodp_ipc_msg, u), 16u);
	EXPECT_EQ(offsetof(iodp_ipc_msg, error), 128u);
	EXPECT_EQ(sizeof(iodp_ipc_hello), 56u);
	EXPECT_EQ(offsetof(iodp_ipc_hello, mem_size), 8u);
	EXPECT_EQ(offsetof(iodp_ipc_hello, name), 24u);
	EXPECT_EQ(sizeof(iodp_ipc_map), 32u);
	EXPECT_EQ(sizeof(iodp_ipc_unmap), 16u);
	EXPECT_EQ(sizeof(iodp_ipc_rings), 64u);
	EXPECT_EQ(offsetof(iodp_ipc_rings, device), 32u);
	EXPECT_EQ(sizeof(iodp_request), 32u) << "one ring element size for both directions";
	EXPECT_EQ(sizeof(iodp_completion), 32u);
}

struct Reply {
	iodp_ipc_msg m{};
	int fd = -1;     ///< a descriptor that came with it
	ssize_t len = 0; ///< 0: the app closed the connection; < 0: nothing to read
};

struct IpcTest : ::testing::Test {
	static inline int serial = 0;
	ctl::Ctx ctx;
	dev::Registry reg;
	std::string path;
	std::unique_ptr<dev::Device> dev;
	int conn = -1;
	int baseline = 0;

	static void SetUpTestSuite() { rte_log_set_global_level(RTE_LOG_EMERG); }

	void SetUp() override
	{
		baseline = open_fds();
		ASSERT_TRUE(reg.add(ipc::driver()).ok());
		path = "/tmp/iodp-ipc-test-" + std::to_string(getpid()) + "-" +
		       std::to_string(serial++) + ".sock";
		make_device("queues=2,entries=64");
	}

	void TearDown() override
	{
		if (conn >= 0)
			::close(conn);
		dev.reset();
		EXPECT_EQ(open_fds(), baseline) << "a descriptor was left open";
		EXPECT_NE(access(path.c_str(), F_OK), 0) << "the socket file is removed at close";
	}

	void make_device(const std::string &args)
	{
		if (conn >= 0)
			::close(conn);
		conn = -1;
		dev.reset();
		dev = ok(reg.create(ctx, "ipc0,path=" + path + "," + args));
		ASSERT_NE(dev, nullptr);
		ASSERT_TRUE(dev->start().ok());
		conn = connect_driver();
	}

	int connect_driver()
	{
		const int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		sockaddr_un sa{};
		sa.sun_family = AF_UNIX;
		std::snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path.c_str());
		EXPECT_EQ(connect(s, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)), 0);
		dev->service(); // accepts it
		return s;
	}

	/** Send @p len bytes of @p m (with @p nfds copies of @p fd), then let the app serve. */
	void send(const void *m, size_t len, int fd = -1, unsigned nfds = 1, int s = -1)
	{
		iovec iov{const_cast<void *>(m), len};
		msghdr mh{};
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		alignas(cmsghdr) char cbuf[CMSG_SPACE(4 * sizeof(int))] = {};
		if (fd >= 0) {
			int fds[4] = {fd, fd, fd, fd};
			mh.msg_control = cbuf;
			mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
			cmsghdr *c = CMSG_FIRSTHDR(&mh);
			c->cmsg_level = SOL_SOCKET;
			c->cmsg_type = SCM_RIGHTS;
			c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
			std::memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
		}
		ASSERT_EQ(sendmsg(s >= 0 ? s : conn, &mh, MSG_NOSIGNAL), static_cast<ssize_t>(len));
		dev->service();
	}

	Reply receive(int s = -1)
	{
		Reply r;
		iovec iov{&r.m, sizeof(r.m)};
		alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
		msghdr mh{};
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		r.len = recvmsg(s >= 0 ? s : conn, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (r.len > 0)
			for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c))
				if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
					std::memcpy(&r.fd, CMSG_DATA(c), sizeof(int));
		return r;
	}

	/** Send @p m whole and take its reply. */
	Reply call(const iodp_ipc_msg &m, int fd = -1, int s = -1)
	{
		send(&m, sizeof(m), fd, 1, s);
		return receive(s);
	}

	static iodp_ipc_msg hello(uint64_t mem_size, uint64_t mem_base, uint32_t seq = 1)
	{
		iodp_ipc_msg m{};
		m.type = IODP_IPC_HELLO;
		m.seq = seq;
		m.u.hello.version = IODP_IPC_VERSION;
		m.u.hello.mem_size = mem_size;
		m.u.hello.mem_base = mem_base;
		std::snprintf(m.u.hello.name, sizeof(m.u.hello.name), "ipc-test");
		return m;
	}

	static iodp_ipc_msg map(uint64_t iova, uint64_t offset, uint64_t length, uint32_t flags,
				uint32_t seq = 2)
	{
		iodp_ipc_msg m{};
		m.type = IODP_IPC_MAP;
		m.seq = seq;
		m.u.map = {iova, offset, length, flags, 0};
		return m;
	}

	/** HELLO with a good memfd; returns the reply (its rings fd is the caller's). */
	Reply attach(std::byte **guest = nullptr)
	{
		const int fd = guest_memfd(kGuestBytes);
		void *mem = mmap(nullptr, kGuestBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		EXPECT_NE(mem, MAP_FAILED);
		Reply r = call(hello(kGuestBytes, reinterpret_cast<uint64_t>(mem)), fd);
		::close(fd);
		if (guest != nullptr)
			*guest = static_cast<std::byte *>(mem);
		else
			munmap(mem, kGuestBytes);
		return r;
	}

	/** The device stopped with a reason containing @p why. */
	void expect_gone(const char *why)
	{
		EXPECT_TRUE(dev->gone());
		EXPECT_NE(dev->gone_reason().find(why), std::string::npos)
			<< "reason: '" << dev->gone_reason() << "', expected '" << why << "'";
	}
};

/*
 * The whole conversation: HELLO -> rings, MAP, a request on queue 1 translated into the
 * driver's address space, UNMAP (then the same request faults), BYE.
 */
TEST_F(IpcTest, HelloMapTranslateUnmapBye)
{
	std::byte *guest = nullptr;
	Reply r = attach(&guest);
	ASSERT_EQ(r.len, static_cast<ssize_t>(sizeof(iodp_ipc_msg)));
	EXPECT_EQ(r.m.type, IODP_IPC_REPLY);
	EXPECT_EQ(r.m.seq, 1u) << "the reply echoes the message's seq";
	ASSERT_EQ(r.m.status, 0) << r.m.error;
	ASSERT_GE(r.fd, 0) << "HELLO's reply carries the rings memfd";
	const iodp_ipc_rings rings = r.m.u.rings;
	EXPECT_EQ(rings.queues, 2u);
	EXPECT_EQ(rings.entries, 64u);
	EXPECT_EQ(rings.elem_size, 32u);
	EXPECT_STREQ(rings.device, "ipc0");
	EXPECT_GE(rings.size, 2 * rings.queues * rings.ring_stride);
	EXPECT_NE(dev->info().description.find("driver 'ipc-test'"), std::string::npos)
		<< dev->info().description;
	auto *rmem = static_cast<std::byte *>(
		mmap(nullptr, rings.size, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd, 0));
	ASSERT_NE(rmem, MAP_FAILED);
	::close(r.fd);
	auto *req_ring = reinterpret_cast<rte_ring *>(rmem + 2 * 1 * rings.ring_stride);
	auto *cpl_ring = reinterpret_cast<rte_ring *>(rmem + 3 * rings.ring_stride);
	EXPECT_EQ(rte_ring_get_capacity(req_ring), 63u);

	r = call(map(0x100000, 0x2000, 0x1000, IODP_IPC_MAP_READ | IODP_IPC_MAP_WRITE));
	ASSERT_EQ(r.m.status, 0) << r.m.error;
	EXPECT_EQ(r.m.seq, 2u);

	// The app's side of one burst: a library-mode worker for the device's port 0.
	std::unique_ptr<engine::Worker> w = ok(engine::Worker::create(ctx, engine::WorkerConfig{}));
	ASSERT_TRUE(w->set_port(0, dev->ctl_id).ok());
	const dev::FastPath &fp = dev->fast_path();
	auto round_trip = [&](uint64_t cookie) {
		iodp_request q{0x100010, cookie, 16, IODP_PASID_NONE, 7, 1, IODP_ACCESS_READ, {}};
		EXPECT_EQ(rte_ring_sp_enqueue_burst_elem(req_ring, &q, sizeof(q), 1, nullptr), 1u);
		dev::Request got[4];
		const uint16_t n = fp.rx_burst(fp.queue[1], got, 4);
		EXPECT_EQ(n, 1u);
		EXPECT_EQ(got[0].cookie, cookie);
		got[0].port = 0; // the engine sets it from the queue
		dev::Completion c[4];
		size_t used = 0;
		const size_t nc = w->translate_burst(got, n, c, 4, &used);
		EXPECT_EQ(fp.tx_burst(fp.queue[1], c, static_cast<uint16_t>(nc)), nc);
		iodp_completion out{};
		EXPECT_EQ(rte_ring_sc_dequeue_burst_elem(cpl_ring, &out, sizeof(out), 1, nullptr), 1u);
		return out;
	};
	const iodp_completion c1 = round_trip(41);
	EXPECT_EQ(c1.cookie, 41u);
	EXPECT_EQ(c1.fault, 0);
	EXPECT_EQ(c1.host, reinterpret_cast<uint64_t>(guest) + 0x2010)
		<< "completions point into the driver's own mapping (HELLO's mem_base)";

	iodp_ipc_msg u{};
	u.type = IODP_IPC_UNMAP;
	u.seq = 3;
	u.u.unmap = {0x100000, 0x1000};
	r = call(u);
	ASSERT_EQ(r.m.status, 0) << r.m.error;
	EXPECT_EQ(r.m.u.unmapped, 0x1000u);
	EXPECT_EQ(dev->stats().commands, 1u);
	const iodp_completion c2 = round_trip(42);
	EXPECT_EQ(c2.fault, IODP_FAULT_NOT_PRESENT) << "answered after the unmap's reply: no stale entry";

	iodp_ipc_msg bye{};
	bye.type = IODP_IPC_BYE;
	bye.seq = 4;
	r = call(bye);
	EXPECT_EQ(r.m.status, 0);
	expect_gone("driver detached (BYE)");
	EXPECT_EQ(receive().len, 0) << "the app closed the connection";
	w.reset();
	munmap(rmem, rings.size);
	munmap(guest, kGuestBytes);
}

TEST_F(IpcTest, TheRingsMemfdIsSealed)
{
	Reply r = attach();
	ASSERT_EQ(r.m.status, 0) << r.m.error;
	ASSERT_GE(r.fd, 0);
	const int seals = fcntl(r.fd, F_GET_SEALS);
	EXPECT_TRUE(seals & F_SEAL_SHRINK) << "a driver must not shrink the rings under the app";
	EXPECT_TRUE(seals & F_SEAL_GROW);
	EXPECT_TRUE(seals & F_SEAL_SEAL);
	EXPECT_NE(ftruncate(r.fd, 0), 0);
	::close(r.fd);
}

/* A refused HELLO: a reply with the reason, the connection closed, the device waiting. */
TEST_F(IpcTest, HelloRefusalsNameTheReasonAndTheDeviceWaitsForAnother)
{
	struct Case {
		const char *what;
		int err;
		const char *text;
	};
	const int sealed = guest_memfd(kGuestBytes), unsealed = guest_memfd(kGuestBytes, false);
	int pipefd[2];
	ASSERT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
	for (const Case &c : {
		     Case{"version", EPROTO, "ipc0: protocol version 2 (this app speaks 1)"},
		     Case{"no fd", EBADF, "ipc0: HELLO carried no guest memory fd"},
		     Case{"pipe", EBADF, "ipc0: the guest memory fd is not a memfd or file"},
		     Case{"unsealed", EPERM, "must be a memfd sealed with F_SEAL_SHRINK"},
		     Case{"too big", EINVAL, "mem_size=8388608 is 0, not a multiple of 4 KiB or "
					     "more than the fd holds (4194304 bytes)"},
		     Case{"unaligned", EINVAL, "mem_size=4097 is 0, not a multiple of 4 KiB"},
		     Case{"empty", EINVAL, "mem_size=0 is 0"},
	     }) {
		SCOPED_TRACE(c.what);
		const std::string what = c.what;
		iodp_ipc_msg m = hello(kGuestBytes, 0x10000000);
		int fd = sealed;
		if (what == "version")
			m.u.hello.version = 2;
		else if (what == "no fd")
			fd = -1;
		else if (what == "pipe")
			fd = pipefd[0];
		else if (what == "unsealed")
			fd = unsealed;
		else if (what == "too big")
			m.u.hello.mem_size = 2 * kGuestBytes;
		else if (what == "unaligned")
			m.u.hello.mem_size = 4097;
		else if (what == "empty")
			m.u.hello.mem_size = 0;
		const Reply r = call(m, fd);
		ASSERT_EQ(r.len, static_cast<ssize_t>(sizeof(iodp_ipc_msg)));
		EXPECT_EQ(r.m.type, IODP_IPC_REPLY);
		EXPECT_EQ(r.m.status, -c.err);
		EXPECT_NE(std::string(r.m.error).find(c.text), std::string::npos) << r.m.error;
		EXPECT_EQ(r.fd, -1) << "no rings for a refused driver";
		EXPECT_EQ(receive().len, 0) << "the app closed the connection";
		EXPECT_FALSE(dev->gone()) << "a refused driver does not stop the device";
		::close(conn);
		conn = connect_driver();
	}
	const Reply good = attach();
	EXPECT_EQ(good.m.status, 0) << good.m.error;
	::close(good.fd);
	for (int fd : {sealed, unsealed, pipefd[0], pipefd[1]})
		::close(fd);
}

/* A bad MAP is answered with the reason; the connection and the device go on. */
TEST_F(IpcTest, BadMapsAreAnsweredAndTheConnectionGoesOn)
{
	Reply r = attach();
	ASSERT_EQ(r.m.status, 0) << r.m.error;
	::close(r.fd);
	const uint32_t rw = IODP_IPC_MAP_READ | IODP_IPC_MAP_WRITE;
	struct Case {
		iodp_ipc_msg m;
		const char *text;
	};
	for (const Case &c : {
		     Case{map(0x100800, 0, 0x1000, rw), "ipc0: map iova 0x100800 offset 0x0 length "
							"0x1000: not 4 KiB multiples or empty"},
		     Case{map(0x100000, 0, 0, rw), "not 4 KiB multiples or empty"},
		     Case{map(0x100000, kGuestBytes - 0x1000, 0x2000, rw),
			  "ipc0: map offset 0x3ff000 length 0x2000 is outside the 4194304 bytes of "
			  "guest memory shared"},
		     Case{map(0x100000, ~0ull & ~0xfffull, 0x2000, rw), "is outside the"},
		     Case{map(0x100000, 0, 0x1000, 0), "ipc0: map flags 0x0 (READ 1, WRITE 2, at "
						      "least one)"},
		     Case{map(0x100000, 0, 0x1000, 4), "map flags 0x4"},
	     }) {
		r = call(c.m);
		EXPECT_EQ(r.m.status, -EINVAL);
		EXPECT_NE(std::string(r.m.error).find(c.text), std::string::npos) << r.m.error;
	}
	EXPECT_EQ(call(map(0x100000, 0, 0x1000, IODP_IPC_MAP_READ)).m.status, 0);
	r = call(map(0x100000, 0x1000, 0x1000, rw));
	EXPECT_EQ(r.m.status, -EEXIST) << "lib/ctl's answer to an overlapping map, passed on: "
				       << r.m.error;
	EXPECT_FALSE(dev->gone());
}

/*
 * What no correct driver sends stops the device with the reason (its other devices and the
 * app go on: tests/app). Each case on a fresh device.
 */
TEST_F(IpcTest, ProtocolErrorsStopTheDeviceAndSayWhy)
{
	const int memfd = guest_memfd(kGuestBytes);
	struct Case {
		const char *what;
		const char *reason;
	};
	for (const Case &c : {
		     Case{"map first", "driver protocol error: MAP before HELLO"},
		     Case{"unmap first", "driver protocol error: UNMAP before HELLO"},
		     Case{"truncated", "a message of 100 bytes (messages are 256 bytes)"},
		     Case{"oversized", "a message of 256 bytes or more (messages are 256 bytes)"},
		     Case{"unknown", "unknown message type 77"},
		     Case{"fd with map", "1 file descriptors with a message of type 2"},
		     Case{"two fds", "2 file descriptors with a message of type 1"},
		     Case{"five fds", "more file descriptors or control data than fit"},
		     Case{"second hello", "a second HELLO"},
		     Case{"gone", "driver disconnected without BYE"},
	     }) {
		SCOPED_TRACE(c.what);
		make_device("queues=1");
		const std::string what = c.what;
		std::byte big[300] = {};
		iodp_ipc_msg m = map(0, 0, 0x1000, IODP_IPC_MAP_READ);
		if (what == "map first") {
			send(&m, sizeof(m));
		} else if (what == "unmap first") {
			m.type = IODP_IPC_UNMAP;
			send(&m, sizeof(m));
		} else if (what == "truncated") {
			send(&m, 100);
		} else if (what == "oversized") {
			std::memcpy(big, &m, sizeof(m));
			send(big, sizeof(big));
		} else if (what == "unknown") {
			m.type = 77;
			send(&m, sizeof(m));
		} else if (what == "fd with map") {
			send(&m, sizeof(m), memfd);
		} else if (what == "two fds") {
			const iodp_ipc_msg h = hello(kGuestBytes, 0x10000000);
			send(&h, sizeof(h), memfd, 2);
		} else if (what == "five fds") {
			// More than the app's control buffer takes (4): MSG_CTRUNC.
			const iodp_ipc_msg h = hello(kGuestBytes, 0x10000000);
			iovec iov{const_cast<iodp_ipc_msg *>(&h), sizeof(h)};
			alignas(cmsghdr) char cbuf[CMSG_SPACE(5 * sizeof(int))] = {};
			int fds[5] = {memfd, memfd, memfd, memfd, memfd};
			msghdr mh{};
			mh.msg_iov = &iov;
			mh.msg_iovlen = 1;
			mh.msg_control = cbuf;
			mh.msg_controllen = sizeof(cbuf);
			cmsghdr *cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(fds));
			std::memcpy(CMSG_DATA(cm), fds, sizeof(fds));
			ASSERT_EQ(sendmsg(conn, &mh, MSG_NOSIGNAL), static_cast<ssize_t>(sizeof(h)));
			dev->service();
		} else if (what == "second hello") {
			const Reply r = attach();
			ASSERT_EQ(r.m.status, 0) << r.m.error;
			::close(r.fd);
			const iodp_ipc_msg h = hello(kGuestBytes, 0x10000000, 9);
			send(&h, sizeof(h), memfd);
		} else if (what == "gone") {
			const Reply r = attach();
			ASSERT_EQ(r.m.status, 0) << r.m.error;
			::close(r.fd);
			::close(conn);
			conn = -1;
			dev->service();
		}
		expect_gone(c.reason);
		if (conn >= 0) {
			EXPECT_EQ(receive().len, 0) << "the app closed the connection";
		}
	}
	::close(memfd);
}

TEST_F(IpcTest, OneDriverAtATime)
{
	Reply r = attach();
	ASSERT_EQ(r.m.status, 0) << r.m.error;
	::close(r.fd);
	const int second = connect_driver();
	r = receive(second);
	ASSERT_EQ(r.len, static_cast<ssize_t>(sizeof(iodp_ipc_msg)));
	EXPECT_EQ(r.m.status, -EBUSY);
	EXPECT_STREQ(r.m.error, "ipc0 already has a driver (one per ipc device)");
	EXPECT_EQ(receive(second).len, 0) << "and let go";
	::close(second);
	EXPECT_EQ(call(map(0x100000, 0, 0x1000, IODP_IPC_MAP_READ)).m.status, 0)
		<< "the first driver is unaffected";
	EXPECT_FALSE(dev->gone());
}

TEST(IpcArgs, DevargsAreCheckedAndNamed)
{
	ctl::Ctx ctx;
	dev::Registry reg;
	ASSERT_TRUE(reg.add(ipc::driver()).ok());
	EXPECT_FAILS(reg.create(ctx, "ipc0,entries=100"), EINVAL,
		     "ipc0: entries=100 is not a power of two");
	EXPECT_FAILS(reg.create(ctx, "ipc0,entries=32"), EINVAL, "entries=32 is outside [64, 65536]");
	EXPECT_FAILS(reg.create(ctx, "ipc0,queues=17"), EINVAL, "queues=17 is outside [1, 16]");
	EXPECT_FAILS(reg.create(ctx, "ipc0,format=amd"), EINVAL, "format='amd' is not one of vtd, smmu");
	EXPECT_FAILS(reg.create(ctx, "ipc0,path=" + std::string(120, 'x')), EINVAL,
		     "is not a usable unix socket path (1 to 107 bytes)");
	EXPECT_FAILS(reg.create(ctx, "ipc0,path=/proc/version"), EEXIST,
		     "ipc0: path=/proc/version exists and is not a socket");
	EXPECT_EQ(ctx.object_count(), 0u) << "a refused device leaves nothing behind";
}

} // namespace
} // namespace iodp
