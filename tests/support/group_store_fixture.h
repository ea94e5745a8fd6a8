// A real engine store (SQLite, or PostgreSQL when the tests run against it) with services 1 News,
// 2 Sport and 3 Films, package 10 Basic of 1 and 2, and boxes registered with keys the test keeps:
// the ground the tests of groups and of key rotation stand on.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>

#include "temp_dir.h"
#include "usher/core/crypto.h"
#include "usher/core/store_database.h"
#include "usher/entitlement/store.h"

namespace usher::testing {

class GroupStoreTest : public ::testing::Test {
 public:
  static constexpr std::uint16_t kCa = 0x4AFF;

 protected:
  void SetUp() override {
    auto s = entitlement::EntitlementStore::create(dir.path(), kCa, store_database_url());
    ASSERT_TRUE(s.ok()) << s.error().message;
    store.emplace(std::move(*s));
    ASSERT_TRUE(store->add_service(1, "News").ok());
    ASSERT_TRUE(store->add_service(2, "Sport").ok());
    ASSERT_TRUE(store->add_service(3, "Films").ok());
    ASSERT_TRUE(store->add_package(10, "Basic", {1, 2}).ok());
  }

  // Registers boxes first_id, first_id + 1, ... (count of them), in one transaction.
  void register_boxes(std::uint32_t first_id, std::uint32_t count) {
    ASSERT_TRUE(store->batch([&] {
                        for (std::uint32_t i = 0; i < count; ++i) {
                          auto keys = crypto::X25519KeyPair::generate();
                          auto placed = store->register_stb({first_id + i, keys.public_key, crypto::Ed25519KeyPair::generate().public_key});
                          if (!placed) throw std::runtime_error(placed.error().message);
                          box_keys.emplace(first_id + i, std::move(keys.private_key));
                        }
                      }).ok());
  }

  // The key a box opens its unique EMMs with.
  Key256 unique_key(std::uint32_t stb_id) {
    return entitlement::derive_emm_key(box_keys.at(stb_id), store->operator_public(), kCa, stb_id).value();
  }

  TempDir dir;
  std::optional<entitlement::EntitlementStore> store;
  std::map<std::uint32_t, Key256> box_keys;
};

}  // namespace usher::testing
