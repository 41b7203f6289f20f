/* SPDX-License-Identifier: BSD-3-Clause */
#pragma once

/**
 * @file
 * Status: the error type of every iodp control call.
 *
 * A call returns 0 or a negative errno and, on failure, a one-line message that names the
 * object and the reason ("guest memory: region 0x1000+0x2000 overlaps region 0x2000+0x1000").
 * The errno carries the class of failure (the same meanings as iommufd: EINVAL understood but
 * wrong, EEXIST overlap, ENOENT not found, ENOMEM out of memory, ...); the message is for
 * people. Never used on the hot path.
 */

#include <cstdarg>
#include <cstdio>
#include <string>
#include <utility>

namespace iodp {

class [[nodiscard]] Status {
public:
	Status() = default;

	/** A failure: @p negative_errno (< 0) and a printf-formatted message. */
	[[gnu::format(printf, 2, 3)]] static Status error(int negative_errno, const char *fmt, ...)
	{
		Status s;
		s.code_ = negative_errno < 0 ? negative_errno : -negative_errno;
		va_list ap, again;
		va_start(ap, fmt);
		va_copy(again, ap);
		// Most messages fit the stack buffer; a longer one is formatted again, whole.
		char buf[512];
		const int n = std::vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		if (n >= static_cast<int>(sizeof(buf))) {
			s.message_.resize(static_cast<size_t>(n));
			std::vsnprintf(s.message_.data(), static_cast<size_t>(n) + 1, fmt, again);
		} else if (n > 0) {
			s.message_.assign(buf, static_cast<size_t>(n));
		}
		va_end(again);
		return s;
	}

	bool ok() const { return code_ == 0; }
	explicit operator bool() const { return ok(); }
	/** 0 or a negative errno. */
	int code() const { return code_; }
	const std::string &message() const { return message_; }

private:
	int code_ = 0;
	std::string message_;
};

/** A value or the Status that explains why there is none. */
template <class T> class [[nodiscard]] Result {
public:
	Result(T value) : value_(std::move(value)), has_value_(true) {}
	Result(Status status) : status_(std::move(status)) {}

	bool ok() const { return has_value_; }
	explicit operator bool() const { return ok(); }
	const Status &status() const { return status_; }
	T &value() { return value_; }
	const T &value() const { return value_; }
	T &operator*() { return value_; }
	T *operator->() { return &value_; }
	const T *operator->() const { return &value_; }

private:
	T value_{};
	Status status_;
	bool has_value_ = false;
};

} // namespace iodp
