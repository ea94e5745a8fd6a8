// The public identity files: key=value lines, keys in hex.
#include "usher/entitlement/identity_files.h"

#include <charconv>
#include <fstream>
#include <map>

#include "usher/core/hex.h"

namespace usher::entitlement {
namespace {

// key=value lines, the format of the small public identity files.
std::map<std::string, std::string> read_kv(const std::string& path, bool& ok) {
  std::map<std::string, std::string> kv;
  std::ifstream in(path);
  ok = static_cast<bool>(in);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

bool hex_key(const std::string& text, crypto::PublicKey& out) {
  auto b = from_hex(text);
  if (!b || b->size() != out.size()) return false;
  std::copy(b->begin(), b->end(), out.begin());
  return true;
}

// A whole number in `base` that fits T, nothing around it: a file saying stb_id=4294967297 or
// billing_id=12abc is refused, not read as 1 or 12.
template <typename T>
bool whole_number(const std::string& text, T& out, int base = 10) {
  if (text.empty()) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out, base);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

Result<StbPublicFile> StbPublicFile::read(const std::string& path) {
  bool ok = false;
  auto kv = read_kv(path, ok);
  if (!ok) return make_error(Errc::io, "cannot read STB identity file " + path);
  StbPublicFile f;
  if (!whole_number(kv["stb_id"], f.stb_id)) return make_error(Errc::malformed, path + ": missing or bad stb_id");
  if (!hex_key(kv["x25519"], f.x25519_public) || !hex_key(kv["ed25519"], f.ed25519_public)) {
    return make_error(Errc::malformed, path + ": x25519 and ed25519 must be 64 hex digits each");
  }
  return f;
}

Status StbPublicFile::write(const std::string& path) const {
  std::ofstream out(path, std::ios::trunc);
  out << "# Usher STB public identity: give this file to the operator\n"
      << "stb_id=" << stb_id << "\nx25519=" << to_hex(x25519_public) << "\ned25519=" << to_hex(ed25519_public) << "\n";
  if (!out) return make_error(Errc::io, "cannot write " + path);
  return ok_status();
}

Result<BillingPublicFile> BillingPublicFile::read(const std::string& path) {
  bool ok = false;
  auto kv = read_kv(path, ok);
  if (!ok) return make_error(Errc::io, "cannot read billing's public file " + path);
  BillingPublicFile f;
  if (!whole_number(kv["billing_id"], f.billing_id)) return make_error(Errc::malformed, path + ": missing or bad billing_id");
  if (!hex_key(kv["ed25519"], f.ed25519_public) || !hex_key(kv["x25519"], f.x25519_public)) {
    return make_error(Errc::malformed, path + ": ed25519 and x25519 must be 64 hex digits each");
  }
  return f;
}

Status BillingPublicFile::write(const std::string& path) const {
  std::ofstream out(path, std::ios::trunc);
  out << "# Usher billing's public keys: give this file to the operator (usher entitlement billing add --public-file)\n"
      << "billing_id=" << billing_id << "\ned25519=" << to_hex(ed25519_public) << "\nx25519=" << to_hex(x25519_public) << "\n";
  if (!out) return make_error(Errc::io, "cannot write " + path);
  return ok_status();
}

Result<BillingCertificate> read_billing_certificate(const std::string& path) {
  bool ok = false;
  auto kv = read_kv(path, ok);
  if (!ok) return make_error(Errc::io, "cannot read billing certificate file " + path);
  auto bytes = from_hex(kv["certificate"]);
  if (!bytes) return make_error(Errc::malformed, path + ": certificate must be hex digits");
  auto cert = BillingCertificate::decode(*bytes);
  if (!cert) return make_error(cert.error().code, path + ": " + cert.error().message);
  return cert;
}

Status write_billing_certificate(const BillingCertificate& certificate, const std::string& path) {
  std::ofstream out(path, std::ios::trunc);
  out << "# Usher billing certificate, signed by the operator: install it with usher billing certify --certificate\n"
      << "billing_id=" << certificate.billing_id << "\ncertificate=" << to_hex(certificate.encode()) << "\n";
  if (!out) return make_error(Errc::io, "cannot write " + path);
  return ok_status();
}

Result<OperatorPublicFile> OperatorPublicFile::read(const std::string& path) {
  bool ok = false;
  auto kv = read_kv(path, ok);
  if (!ok) return make_error(Errc::io, "cannot read operator public file " + path);
  OperatorPublicFile f;
  if (!whole_number(kv["ca_system_id"], f.ca_system_id, 16)) return make_error(Errc::malformed, path + ": missing or bad ca_system_id");
  if (!hex_key(kv["x25519"], f.x25519_public)) return make_error(Errc::malformed, path + ": bad x25519 key");
  if (!hex_key(kv["ed25519"], f.ed25519_public)) return make_error(Errc::malformed, path + ": bad ed25519 key");
  return f;
}

}  // namespace usher::entitlement
