// USHER_TRY and USHER_CHECK: the value moved out, the error passed up unchanged, the expression
// evaluated exactly once, in functions returning Status, Result<U> and Error.
#include "usher/core/result.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

namespace usher {
namespace {

// A value that counts its copies, so a test sees whether USHER_TRY moved it or copied it.
struct Counted {
  std::vector<int> items;
  int* copies = nullptr;
  Counted(std::vector<int> i, int* c) : items(std::move(i)), copies(c) {}
  Counted(const Counted& o) : items(o.items), copies(o.copies) { ++*copies; }
  Counted(Counted&&) noexcept = default;
  Counted& operator=(const Counted& o) {
    items = o.items;
    copies = o.copies;
    ++*copies;
    return *this;
  }
  Counted& operator=(Counted&&) noexcept = default;
  ~Counted() = default;
};

// A source of results that counts how often it is asked.
struct Source {
  int calls = 0;
  int copies = 0;
  bool fail = false;
  Result<Counted> counted() {
    ++calls;
    if (fail) return make_error(Errc::not_found, "no such record: 42");
    return Counted({1, 2, 3}, &copies);
  }
  Result<std::unique_ptr<int>> owned() {
    ++calls;
    if (fail) return make_error(Errc::auth_failed, "tag does not verify");
    return std::make_unique<int>(7);
  }
  Status status() {
    ++calls;
    if (fail) return make_error(Errc::storage, "disk full");
    return ok_status();
  }
};

Result<std::size_t> size_of(Source& source) {
  USHER_TRY(auto value, source.counted());
  return value.items.size();
}

Result<int> sum_of_two(Source& a, Source& b) {
  // Two on one line: each has its own hidden Result.
  USHER_TRY(auto x, a.counted()); USHER_TRY(auto y, b.counted());
  return x.items[0] + y.items[2];
}

Status check_then_use(Source& source, int& seen) {
  USHER_CHECK(source.status());
  USHER_TRY(auto owned, source.owned());  // move-only values come out too
  seen = *owned;
  return ok_status();
}

Error first_error(Source& source) {
  USHER_CHECK(source.counted());
  return make_error(Errc::invalid_argument, "no error");
}

Result<int> assign_existing(Source& source) {
  std::unique_ptr<int> target;
  USHER_TRY(target, source.owned());
  return *target;
}

Result<int> bind_reference(Source& source) {
  USHER_TRY(const auto& value, source.counted());
  return static_cast<int>(value.items.size());
}

TEST(ResultTry, MovesTheValueOut) {
  Source source;
  auto size = size_of(source);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, 3u);
  EXPECT_EQ(source.calls, 1);
  EXPECT_EQ(source.copies, 0);

  auto bound = bind_reference(source);
  ASSERT_TRUE(bound.ok());
  EXPECT_EQ(*bound, 3);
  EXPECT_EQ(source.copies, 0);

  auto assigned = assign_existing(source);
  ASSERT_TRUE(assigned.ok());
  EXPECT_EQ(*assigned, 7);
}

TEST(ResultTry, PassesTheErrorUpUnchangedAndStops) {
  Source failing;
  failing.fail = true;
  auto size = size_of(failing);
  ASSERT_FALSE(size.ok());
  EXPECT_EQ(size.error().code, Errc::not_found);
  EXPECT_EQ(size.error().message, "no such record: 42");
  EXPECT_EQ(failing.calls, 1);

  // The first failure returns before the second call is made.
  Source good;
  failing.calls = 0;
  auto sum = sum_of_two(failing, good);
  ASSERT_FALSE(sum.ok());
  EXPECT_EQ(sum.error().code, Errc::not_found);
  EXPECT_EQ(failing.calls, 1);
  EXPECT_EQ(good.calls, 0);

  auto ok_sum = sum_of_two(good, good);
  ASSERT_TRUE(ok_sum.ok());
  EXPECT_EQ(*ok_sum, 4);
  EXPECT_EQ(good.calls, 2);

  failing.calls = 0;
  auto assigned = assign_existing(failing);
  ASSERT_FALSE(assigned.ok());
  EXPECT_EQ(assigned.error().code, Errc::auth_failed);
  EXPECT_EQ(failing.calls, 1);
}

TEST(ResultCheck, InAFunctionReturningStatus) {
  Source source;
  int seen = 0;
  EXPECT_TRUE(check_then_use(source, seen).ok());
  EXPECT_EQ(seen, 7);
  EXPECT_EQ(source.calls, 2);  // status() once, owned() once

  Source failing;
  failing.fail = true;
  seen = 0;
  auto status = check_then_use(failing, seen);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.error().code, Errc::storage);
  EXPECT_EQ(status.error().message, "disk full");
  EXPECT_EQ(failing.calls, 1);  // stopped at the failed check
  EXPECT_EQ(seen, 0);
}

TEST(ResultCheck, InAFunctionReturningAnError) {
  Source source;
  EXPECT_EQ(first_error(source).code, Errc::invalid_argument);
  source.fail = true;
  const Error e = first_error(source);
  EXPECT_EQ(e.code, Errc::not_found);
  EXPECT_EQ(e.message, "no such record: 42");
  EXPECT_EQ(source.calls, 2);
}

TEST(ResultError, MovedOutOfATemporaryAndCopiedFromALvalue) {
  Result<int> failed = make_error(Errc::malformed, "truncated");
  const Error copied = failed.error();
  EXPECT_EQ(failed.error().message, "truncated");  // an lvalue's error stays
  const Error moved = std::move(failed).error();
  EXPECT_EQ(moved.code, Errc::malformed);
  EXPECT_EQ(moved.message, copied.message);
}

}  // namespace
}  // namespace usher
