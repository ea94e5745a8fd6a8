// A hotel room STB reports its purchases straight to billing over the hotel network (flow F6): its
// unsettled history, sealed as for a handset relay, answered with folio receipts it applies.
#pragma once

#include <cstdint>
#include <string>

#include "usher/core/result.h"
#include "usher/stb/secure_element.h"

namespace usher::stb {

// Returns how many records billing's receipts settled. Errc::io when billing does not answer (the
// purchases stay in the history and go with the next report or the check-out).
Result<std::uint64_t> report_to_billing(SecureElement& se, const std::string& billing_endpoint);

}  // namespace usher::stb
