// What the group EMMs on a store's carousel grant, box by box: each member grant (table 0x83)
// opened with its group's key and its bitmap read back to STB ids through the store's groups. For
// tests of bulk grants, which go as member grants since issue 11 (one per group, service set and
// window), not as one unique EMM per box and service.
#pragma once

#include <gtest/gtest.h>

#include <compare>
#include <cstdint>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "usher/entitlement/store.h"

namespace usher::testing {

struct GrantWindow {
  std::uint16_t service_id = 0;
  std::uint64_t not_before = 0;
  std::uint64_t not_after = 0;
  auto operator<=>(const GrantWindow&) const = default;
};

struct CarouselMemberGrants {
  // Per service and window, the boxes whose bit is set in their group's member grant of it.
  std::map<GrantWindow, std::set<std::uint32_t>> boxes;
  // Per group, service and window, how many member grants carry it (one unless a second was queued).
  std::map<std::pair<std::uint32_t, GrantWindow>, int> emms;
  // The sequence numbers of the group EMMs on the carousel.
  std::set<std::uint64_t> sequences;
};

// The member grants on the carousel at `now`. Each must open with its group's current key and carry
// the services' current keys (checked here).
inline CarouselMemberGrants carousel_member_grants(entitlement::EntitlementStore& store, std::uint64_t now) {
  using namespace entitlement;
  std::map<std::pair<std::uint32_t, std::uint8_t>, std::uint32_t> box_at;
  for (const auto& stb : store.stbs()) {
    if (const auto m = store.group_of(stb.stb_id)) box_at[{m->group_id, m->position}] = stb.stb_id;
  }
  std::set<std::uint64_t> on_carousel;
  for (const auto& section : store.emm_sections(now)) {
    const auto header = peek_any_emm(section);
    EXPECT_TRUE(header.ok());
    if (header && header->address.type == EmmAddressType::group) on_carousel.insert(header->sequence);
  }
  CarouselMemberGrants out;
  for (const auto& q : store.queued_emms()) {
    if (q.address.type != EmmAddressType::group || on_carousel.count(q.sequence) == 0) continue;
    out.sequences.insert(q.sequence);
    const auto group_key = store.group_key(q.address.id);
    EXPECT_TRUE(group_key.ok()) << "group " << q.address.id;
    if (!group_key) continue;
    const auto emm = decode_shared_emm(q.section, group_key->key);
    EXPECT_TRUE(emm.ok()) << "group " << q.address.id << ": " << emm.error().message;
    if (!emm) continue;
    for (const auto& item : emm->items) {
      const auto* grant = std::get_if<EmmMemberGrant>(&item);
      if (grant == nullptr) continue;
      for (const auto& service : grant->services) {
        EXPECT_TRUE(service.key == store.service_key(service.service_id).value().key) << "service " << service.service_id;
        const GrantWindow window{service.service_id, grant->not_before, grant->not_after};
        ++out.emms[{q.address.id, window}];
        auto& boxes = out.boxes[window];
        for (unsigned position = 0; position < kGroupSize; ++position) {
          if (!grant->members.has(static_cast<std::uint8_t>(position))) continue;
          const auto it = box_at.find({q.address.id, static_cast<std::uint8_t>(position)});
          EXPECT_NE(it, box_at.end()) << "group " << q.address.id << " position " << position << " is no box's";
          if (it != box_at.end()) boxes.insert(it->second);
        }
      }
    }
  }
  return out;
}

// The boxes first, first + 1, ..., last.
inline std::set<std::uint32_t> box_range(std::uint32_t first, std::uint32_t last) {
  std::set<std::uint32_t> out;
  for (auto id = first; id <= last; ++id) out.insert(id);
  return out;
}

}  // namespace usher::testing
