// Result<T>: a value or an Error, for every operation that can fail for reasons outside the program
// (bad input, forged messages, missing files). Exceptions are kept for broken invariants and failed
// construction.
//
//   Result<Ecm> ecm = decode_ecm(bytes, key);
//   if (!ecm) log.warn("ECM refused: {}", ecm.error().message);
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
  [[nodiscard]] const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

struct Ok {};
using Status = Result<Ok>;
inline Status ok_status() { return Ok{}; }

inline Error make_error(Errc code, std::string message) { return Error{code, std::move(message)}; }

}  // namespace usher
