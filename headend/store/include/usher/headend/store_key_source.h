// StoreKeySource: the scrambler fed from the operator's store in the same process (`usher headend
// run --entitlement-home`, the tests, the benchmarks), where a headend runs on the engine's machine
// with no engine service between them. Target usher_headend_store, which links the engine: the
// headend library itself (usher_headend) never does, and a broadcast headend uses EngineKeySource.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "usher/entitlement/store.h"
#include "usher/headend/scrambler.h"

namespace usher::headend {

class StoreKeySource final : public KeySource {
 public:
  explicit StoreKeySource(entitlement::EntitlementStore& store) : store_(store) {}
  Result<entitlement::ServiceKey> service_key(std::uint16_t id) override { return store_.service_key(id); }
  Result<entitlement::ServiceKeys> service_keys(std::uint16_t id, std::uint64_t time) override { return store_.service_keys(id, time); }
  // The store's EMM feed from the cursor `version`, every page at once.
  EmmChanges emm_changes(std::uint64_t version) override {
    EmmChanges out;
    for (;;) {
      auto page = store_.emm_changes(version);
      if (page.restart) out = {};
      out.restart = out.restart || page.restart;
      out.removed.insert(out.removed.end(), page.removed.begin(), page.removed.end());
      for (auto& a : page.added) {
        out.added.push_back({a.id, a.priority, a.carousel_from, a.carousel_until,
                             std::make_shared<const std::vector<std::uint8_t>>(std::move(a.section))});
      }
      version = page.next_cursor;
      if (!page.more) break;
    }
    out.version = version;
    return out;
  }
  std::optional<entitlement::EventKey> current_event(std::uint16_t service_id, std::uint64_t time) override {
    return store_.current_event(service_id, time);
  }
  std::vector<entitlement::EventInfo> schedule(std::uint16_t service_id, std::uint64_t time, std::size_t count) override {
    return store_.events_ending_after(service_id, time, count);
  }
  std::string service_name(std::uint16_t service_id) override {
    for (auto& s : store_.services()) {
      if (s.service_id == service_id) return std::move(s.name);
    }
    return {};
  }

 private:
  entitlement::EntitlementStore& store_;
};

}  // namespace usher::headend
