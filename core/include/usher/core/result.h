// Result<T>: a value or an Error, for every operation that can fail for reasons outside the program
// (bad input, forged messages, missing files). Exceptions are kept for broken invariants and failed
// construction.
//
//   Result<Ecm> ecm = decode_ecm(bytes, key);
//   if (!ecm) log.warn("ECM refused: {}", ecm.error().message);
//
// To pass a failure up unchanged, USHER_TRY and USHER_CHECK (below) instead of an if per call:
//   USHER_TRY(auto ecm, decode_ecm(bytes, key));   // ecm is the Ecm itself
//   USHER_CHECK(store.put(ecm.header));              // a Status, or a value not needed
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace usher {

// The error taxonomy, one code per kind of failure a caller may react to differently.
enum class Errc {
  invalid_argument,  // the caller asked for something impossible (bad option, unknown id)
  malformed,         // input bytes do not parse (truncated, wrong lengths, unknown version)
  auth_failed,       // a MAC, AEAD tag or signature does not verify: forged or tampered
  replayed,          // a message already seen (same sequence number)
  stale,             // an older message after a newer one about the same thing (reordered)
  not_entitled,      // a well-formed request the rules refuse (no grant, expired, revoked)
  not_found,         // no such record
  already_exists,    // creating what is already there
  storage,           // SQLite or file-system failure
  crypto,            // a crypto library failure (not an attacker's doing)
  io,                // network or file I/O
  busy,              // a caller over its limit (requests that create rows): try again later
};
const char* to_string(Errc code);

struct Error {
  Errc code;
  std::string message;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)
  [[nodiscard]] bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  [[nodiscard]] const Error& error() const& { return std::get<1>(v_); }
  // From a Result about to go (a temporary, or std::move(r) as USHER_TRY does): the error moved out.
  [[nodiscard]] Error error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() { return Ok{}; }

inline Error make_error(Errc code, std::string message) { return Error{code, std::move(message)}; }

}  // namespace usher

// Propagation: in a function that returns a Result<U> (any U, Status included) or an Error, these
// return the callee's Error unchanged when the call fails, and go on otherwise. Each evaluates its
// expression exactly once. They are statements (they declare a variable in the enclosing scope), so
// they go in braces, not as the lone body of an if or a loop. Standard C++ (no statement
// expressions): __COUNTER__ names the hidden Result, so several may share one line.
//
//   Result<Receipt> settle(Store& store, std::span<const std::uint8_t> bytes) {
//     USHER_TRY(auto body, decode_settlement(bytes));  // body: the Settlement, moved out of the Result
//     USHER_CHECK(store.put(body.purchase));            // a Status (or a value not needed)
//     return make_receipt(body);
//   }
//
// USHER_TRY(declaration, expression): `declaration` is what would stand before `=`: auto x (the
// value moved out), const auto& x (bound inside the hidden Result, no move), or an existing variable
// to assign to; not auto [a, b], whose comma splits the macro's arguments. The expression may hold
// commas. A failure that needs a different code or a wrapped message is
// still written out: `if (!x) return make_error(Errc::..., "context: " + x.error().message);`.
#define USHER_TRY(declaration, ...) \
  USHER_TRY_WITH_NAME_(USHER_RESULT_CONCAT_(usher_try_result_, __COUNTER__), declaration, __VA_ARGS__)

// USHER_CHECK(expression): returns the expression's Error if it failed; its value is dropped.
#define USHER_CHECK(...) USHER_CHECK_WITH_NAME_(USHER_RESULT_CONCAT_(usher_check_result_, __COUNTER__), __VA_ARGS__)

// Details of the above.
#define USHER_RESULT_CONCAT_INNER_(a, b) a##b
#define USHER_RESULT_CONCAT_(a, b) USHER_RESULT_CONCAT_INNER_(a, b)
#define USHER_TRY_WITH_NAME_(name, declaration, ...) \
  auto name = (__VA_ARGS__);                          \
  if (!name) return std::move(name).error();          \
  declaration = std::move(name).value()
#define USHER_CHECK_WITH_NAME_(name, ...)            \
  do {                                               \
    auto name = (__VA_ARGS__);                       \
    if (!name) return std::move(name).error();       \
  } while (false)
