// The public identity files people hand each other (stb.pub, operator.pub, billing.pub and the
// certificate file the operator gives billing): what is written reads back the same, and a file
// that is not exactly right is refused with its path and what is wrong, never read as something
// close to it.
#include "usher/entitlement/identity_files.h"

#include <gtest/gtest.h>

#include <fstream>

#include "temp_dir.h"

namespace usher::entitlement {
namespace {

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::trunc) << text; }

const std::string kKey(64, 'a');

TEST(IdentityFiles, BillingsPublicFileAndCertificateReadBackAsWritten) {
  testing::TempDir dir;
  BillingPublicFile pub{7, crypto::Ed25519KeyPair::generate().public_key, crypto::X25519KeyPair::generate().public_key};
  ASSERT_TRUE(pub.write(dir.file("billing.pub")).ok());
  auto back = BillingPublicFile::read(dir.file("billing.pub"));
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->billing_id, 7u);
  EXPECT_EQ(back->ed25519_public, pub.ed25519_public);
  EXPECT_EQ(back->x25519_public, pub.x25519_public);

  BillingCertificate cert;
  cert.billing_id = 7;
  cert.billing_public = pub.ed25519_public;
  cert.billing_x25519 = pub.x25519_public;
  cert.issued = 1'900'000'000;
  const auto issuer = crypto::Ed25519KeyPair::generate();
  cert.sign(issuer.private_key);
  ASSERT_TRUE(write_billing_certificate(cert, dir.file("billing-7.cert")).ok());
  auto read = read_billing_certificate(dir.file("billing-7.cert"));
  ASSERT_TRUE(read.ok()) << read.error().message;
  EXPECT_EQ(read->encode(), cert.encode());
  EXPECT_TRUE(read->verify(issuer.public_key));
}

// std::stoul read "4294967297" as 1 and "12abc" as 12: an id is now a whole number that fits.
TEST(IdentityFiles, AnIdThatIsNotExactlyAWholeNumberThatFitsIsRefused) {
  testing::TempDir dir;
  for (const std::string id : {"4294967297", "12abc", "-1", " 12", "+12", "", "0x10"}) {
    SCOPED_TRACE("id '" + id + "'");
    write_text(dir.file("billing.pub"), "billing_id=" + id + "\ned25519=" + kKey + "\nx25519=" + kKey + "\n");
    auto billing = BillingPublicFile::read(dir.file("billing.pub"));
    ASSERT_FALSE(billing.ok());
    EXPECT_EQ(billing.error().code, Errc::malformed);
    EXPECT_EQ(billing.error().message, dir.file("billing.pub") + ": missing or bad billing_id");
    write_text(dir.file("stb.pub"), "stb_id=" + id + "\nx25519=" + kKey + "\ned25519=" + kKey + "\n");
    auto stb = StbPublicFile::read(dir.file("stb.pub"));
    ASSERT_FALSE(stb.ok());
    EXPECT_EQ(stb.error().code, Errc::malformed);
  }
  for (const std::string ca : {"14aff", "4afg", "0x4aff", ""}) {
    SCOPED_TRACE("ca_system_id '" + ca + "'");
    write_text(dir.file("operator.pub"), "ca_system_id=" + ca + "\nx25519=" + kKey + "\ned25519=" + kKey + "\n");
    auto op = OperatorPublicFile::read(dir.file("operator.pub"));
    ASSERT_FALSE(op.ok());
    EXPECT_EQ(op.error().code, Errc::malformed);
  }
  write_text(dir.file("operator.pub"), "ca_system_id=4aff\nx25519=" + kKey + "\ned25519=" + kKey + "\n");
  EXPECT_EQ(OperatorPublicFile::read(dir.file("operator.pub"))->ca_system_id, 0x4aff);
  write_text(dir.file("stb.pub"), "stb_id=4294967295\nx25519=" + kKey + "\ned25519=" + kKey + "\n");
  EXPECT_EQ(StbPublicFile::read(dir.file("stb.pub"))->stb_id, 4294967295u);
}

TEST(IdentityFiles, ABadKeyOrCertificateIsRefusedWithItsPath) {
  testing::TempDir dir;
  write_text(dir.file("billing.pub"), "billing_id=1\ned25519=" + kKey + "\nx25519=" + kKey.substr(2) + "\n");
  auto pub = BillingPublicFile::read(dir.file("billing.pub"));
  ASSERT_FALSE(pub.ok());
  EXPECT_EQ(pub.error().message, dir.file("billing.pub") + ": ed25519 and x25519 must be 64 hex digits each");
  write_text(dir.file("b.cert"), "billing_id=1\ncertificate=zz\n");
  auto not_hex = read_billing_certificate(dir.file("b.cert"));
  ASSERT_FALSE(not_hex.ok());
  EXPECT_EQ(not_hex.error().code, Errc::malformed);
  write_text(dir.file("b.cert"), "billing_id=1\ncertificate=0201\n");
  auto short_cert = read_billing_certificate(dir.file("b.cert"));
  ASSERT_FALSE(short_cert.ok());
  EXPECT_NE(short_cert.error().message.find(dir.file("b.cert") + ": "), std::string::npos) << short_cert.error().message;
  auto missing = read_billing_certificate(dir.file("none.cert"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, Errc::io);
}

}  // namespace
}  // namespace usher::entitlement
