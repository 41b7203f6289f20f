/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * The ipc device's message handler, as a hostile driver process would reach it: a real
 * unix socket, messages of any type, size and content, with 0 to 8 file descriptors
 * (a sealed memfd, or a plain pipe) attached to any of them. Each input gets a fresh device;
 * afterwards the app side must still be able to close it (nothing leaked: descriptors are
 * counted).
 *
 * Input: records of 1 control byte (fds, size, HELLO fix-up) + up to 256 message bytes.
 */
#include <iodp/ctl.h>
#include <iodp/dev.h>
#include <iodp/ipc.h>
#include <iodp/ipc_proto.h>

#include <rte_log.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <string>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

using namespace iodp;

namespace {

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

int guest_memfd()
{
	const int fd = memfd_create("ipc-fuzz-guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, 4u << 20) != 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0)
		std::abort();
	return fd;
}

void drain_replies(int s)
{
	for (;;) {
		char buf[512];
		alignas(cmsghdr) char cbuf[CMSG_SPACE(8 * sizeof(int))];
		iovec iov{buf, sizeof(buf)};
		msghdr mh{};
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = cbuf;
		mh.msg_controllen = sizeof(cbuf);
		if (recvmsg(s, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0)
			return;
		for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_type == SCM_RIGHTS)
				for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
					int fd;
					std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
					close(fd);
				}
	}
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static ctl::Ctx *ctx = [] {
		rte_log_set_global_level(RTE_LOG_EMERG); // refusals are expected; say nothing
		return new ctl::Ctx;
	}();
	static dev::Registry *reg = [] {
		auto *r = new dev::Registry;
		if (!r->add(ipc::driver()).ok())
			std::abort();
		return r;
	}();
	static const std::string path = "/tmp/iodp-ipc-fuzz-" + std::to_string(getpid()) + ".sock";
	static const int memfd = guest_memfd();
	static int pipefd[2] = {-1, -1};
	if (pipefd[0] < 0 && pipe2(pipefd, O_CLOEXEC) != 0)
		std::abort();
	static const int baseline = open_fds();

	{
		Result<std::unique_ptr<dev::Device>> d = reg->create(*ctx, "ipc0,path=" + path);
		if (!d || !(*d)->start().ok())
			std::abort();
		const int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
		sockaddr_un addr{};
		addr.sun_family = AF_UNIX;
		std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
		if (s < 0 || connect(s, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0)
			std::abort();
		for (unsigned msgs = 0; size > 0 && msgs < 32; msgs++) {
			const uint8_t ctl = data[0];
			data++, size--;
			iodp_ipc_msg m{};
			size_t len = (ctl & 0x80) ? size % 300 : sizeof(m); // short, long, exact
			if (len > size)
				len = size;
			char raw[300] = {};
			std::memcpy(raw, data, len);
			data += len, size -= len;
			if ((ctl & 0x40) && len >= sizeof(m)) {
				// A plausible HELLO: right version, sizes the memfd can hold.
				std::memcpy(&m, raw, sizeof(m));
				m.type = IODP_IPC_HELLO;
				m.u.hello.version = IODP_IPC_VERSION;
				m.u.hello.mem_size = (m.u.hello.mem_size % 3) << 21;
				std::memcpy(raw, &m, sizeof(m));
			}
			const unsigned nfds = ctl & 7;
			int fds[8];
			for (unsigned i = 0; i < nfds; i++)
				fds[i] = (ctl & 8) ? pipefd[0] : memfd;
			iovec iov{raw, (ctl & 0x80) ? len : sizeof(m)};
			alignas(cmsghdr) char cbuf[CMSG_SPACE(8 * sizeof(int))] = {};
			msghdr mh{};
			mh.msg_iov = &iov;
			mh.msg_iovlen = 1;
			if (nfds != 0) {
				mh.msg_control = cbuf;
				mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
				cmsghdr *c = CMSG_FIRSTHDR(&mh);
				c->cmsg_level = SOL_SOCKET;
				c->cmsg_type = SCM_RIGHTS;
				c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
				std::memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
			}
			if (sendmsg(s, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
				break; // the app closed the connection
			(*d)->service();
			drain_replies(s);
		}
		close(s);
		for (int i = 0; i < 4; i++)
			(*d)->service(); // sees the connection end
	} // the device is closed and freed here
	if (open_fds() != baseline)
		std::abort(); // a descriptor the driver sent was kept, or one of ours leaked
	return 0;
}
