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

#include <fmt/core.h>

#include <string>
#include <utility>

namespace iodp {

class [[nodiscard]] Status {
public:
	Status() = default;

	/**
	 * A failure: @p negative_errno (< 0; a positive errno is negated) and a message in
	 * {fmt}'s syntax ("ioas {}: 0x{:x}+0x{:x} overlaps ..."), checked against @p args at
	 * compile time. The message is kept whole, however long.
	 */
	template <class... Args>
	static Status error(int negative_errno, fmt::format_string<Args...> format, Args &&...args)
	{
		Status s;
		s.code_ = negative_errno < 0 ? negative_errno : -negative_errno;
		s.message_ = fmt::vformat(format, fmt::make_format_args(args...));
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
