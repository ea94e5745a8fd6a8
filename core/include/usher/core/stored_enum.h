// Enums stored in database columns as text: one table per enum of (value, stored text), the only
// place that text is written, so that code compares enums and never strings. Reading back text no
// entry names (a damaged file, or one from another program) gives nullopt: the caller reports it
// as an error rather than guessing a default.
//
//   enum class TicketStatus { valid, revoked };
//   inline constexpr StoredName<TicketStatus> kTicketStatuses[] = {{TicketStatus::valid, "valid"},
//                                                                 {TicketStatus::revoked, "revoked"}};
//   st.bind(1, std::string(stored_name(kTicketStatuses, TicketStatus::valid)));
//   auto status = from_stored_name(kTicketStatuses, st.column_text(0));  // nullopt if unknown
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace usher {

template <typename Enum>
struct StoredName {
  Enum value;
  const char* stored;
};

// The stored text of `value`. Throws std::logic_error for a value missing from the table (a bug).
template <typename Enum, std::size_t N>
const char* stored_name(const StoredName<Enum> (&names)[N], Enum value) {
  for (const auto& n : names) {
    if (n.value == value) return n.stored;
  }
  throw std::logic_error("an enum value with no stored name");
}

// The value whose stored text is `text`, or nullopt.
template <typename Enum, std::size_t N>
std::optional<Enum> from_stored_name(const StoredName<Enum> (&names)[N], std::string_view text) {
  for (const auto& n : names) {
    if (text == n.stored) return n.value;
  }
  return std::nullopt;
}

// The same for readers that return no Result, where a damaged store is a broken invariant:
// std::runtime_error "`what` 'text'" when no entry names the text.
template <typename Enum, std::size_t N>
Enum stored_value(const StoredName<Enum> (&names)[N], const std::string& text, const std::string& what) {
  if (auto value = from_stored_name(names, text)) return *value;
  throw std::runtime_error(what + " '" + text + "'");
}

// The stored text as an SQL string literal ('charging'), for statements that compare with one of
// our own constants (never with input: that is bound).
template <typename Enum, std::size_t N>
std::string sql_literal(const StoredName<Enum> (&names)[N], Enum value) {
  return std::string("'") + stored_name(names, value) + "'";
}

}  // namespace usher
