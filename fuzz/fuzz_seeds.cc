// Writes seed corpora for the fuzz targets into DIR/<target>/: PSI tables in TS packets, ECMs and
// EMMs sealed under the fuzz key, a small multiplex with PCRs.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "usher/entitlement/catalogue.h"
#include "usher/entitlement/messages.h"
#include "usher/billing/fias.h"
#include "usher/core/clock.h"
#include "usher/entitlement/history.h"
#include "usher/entitlement/link_auth.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/request_auth.h"
#include "usher/entitlement/settlement.h"
#include "usher/streams/psi.h"
#include "usher/streams/rtp.h"

namespace fs = std::filesystem;
using namespace usher;

namespace {
void write(const fs::path& dir, const std::string& name, std::span<const std::uint8_t> bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                    static_cast<std::streamsize>(bytes.size()));
}
std::span<const std::uint8_t> as_bytes(const std::vector<streams::TsPacket>& p) {
  return {reinterpret_cast<const std::uint8_t*>(p.data()), p.size() * sizeof(streams::TsPacket)};
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds DIR\n");
    return 2;
  }
  const fs::path root = argv[1];
  streams::Pat pat;
  pat.programs = {{1, 0x100}, {2, 0x101}};
  streams::Pmt pmt;
  pmt.program_number = 1;
  pmt.pcr_pid = 0x200;
  pmt.streams = {{0x1B, 0x200, {}}, {0x0F, 0x201, {}}};
  streams::append_ca_descriptor(pmt.descriptors, {0x4AFF, 0x1FE0, {}});
  streams::Cat cat;
  streams::append_ca_descriptor(cat.descriptors, {0x4AFF, 0x1FF0, {}});
  Key256 key;
  for (std::size_t i = 0; i < 32; ++i) key.mutable_bytes()[i] = static_cast<std::uint8_t>(i);
  entitlement::EcmContent ecm;
  ecm.service_id = 1;
  ecm.key_version = 1;
  ecm.current.time_unix = 1'900'000'000;
  ecm.next.time_unix = 1'900'000'000;
  ecm.current.cw = ControlWord::random();
  ecm.next.cw = ControlWord::random();
  entitlement::EmmContent emm{1001, 1, 1'900'000'000, {}};
  emm.items.emplace_back(entitlement::EmmGrant{1, 1, key.clone(), 0, 2'000'000'000});
  emm.items.emplace_back(entitlement::EmmCollection{7 * 86400});
  const auto ecm_section = entitlement::encode_ecm(ecm, key, key);
  const auto emm_section = entitlement::encode_emm(emm, key);
  write(root / "fuzz_messages", "ecm", ecm_section);
  write(root / "fuzz_messages", "emm", emm_section);
  {
    entitlement::SharedEmmContent group{{entitlement::EmmAddressType::group, 7, 1}, 2, 1'900'000'000, {}};
    entitlement::EmmMemberGrant grant;
    grant.members.set(3);
    grant.not_after = 2'000'000'000;
    grant.services.push_back({1, 1, key.clone()});
    group.items.emplace_back(std::move(grant));
    group.items.emplace_back(entitlement::EmmMemberRevoke{{}, {1, 2}});
    write(root / "fuzz_messages", "group_emm", entitlement::encode_shared_emm(group, key));
    entitlement::SharedEmmContent global{{entitlement::EmmAddressType::global, 0, 1}, 3, 1'900'000'000, {}};
    global.items.emplace_back(entitlement::EmmMessage{1, "hello"});
    global.items.emplace_back(entitlement::EmmGlobalKey{2, key.clone()});
    write(root / "fuzz_messages", "global_emm", entitlement::encode_shared_emm(global, key));
  }
  {
    // The headend_keys reply's two sealed parts, for headend 1: the bundle, and the key versions of
    // a service ahead of a rotation (version 1 in use, version 2 from a start time).
    entitlement::KeyBundle bundle;
    bundle.generated = 1'900'000'000;
    bundle.services.push_back({1, 1, key.clone()});
    write(root / "fuzz_messages", "key_bundle", entitlement::seal_key_bundle(bundle, key, 1));
    std::vector<entitlement::KeyBundle::KeyVersionEntry> versions;
    versions.push_back({1, {1, key.clone(), 0}});
    versions.push_back({1, {2, key.clone(), 1'900'086'400}});
    write(root / "fuzz_messages", "key_versions", entitlement::seal_key_versions(versions, key, 1));
  }

  std::vector<streams::TsPacket> mux;
  streams::SectionPacketizer pat_pz(0), pmt_pz(0x100), cat_pz(1), ecm_pz(0x1FE0), emm_pz(0x1FF0);
  pat_pz.packetize(pat.serialize(), mux);
  pmt_pz.packetize(pmt.serialize(), mux);
  cat_pz.packetize(cat.serialize(), mux);
  emm_pz.packetize(emm_section, mux);
  ecm_pz.packetize(ecm_section, mux);
  for (int i = 0; i < 20; ++i) {
    auto p = streams::TsPacket::null_packet();
    p.set_pid(i % 2 ? 0x201 : 0x200);
    p.set_cc(static_cast<std::uint8_t>(i / 2));
    if (i % 4 == 0) {
      p.set_adaptation_payload(true, true);
      p.bytes[4] = 7;
      p.bytes[5] = 0x10;
      p.set_pcr(static_cast<std::uint64_t>(i) * 27'000);
    }
    if (i > 10) p.set_scrambling(i % 3 ? streams::Scrambling::even : streams::Scrambling::odd);
    mux.push_back(p);
  }
  for (const char* target : {"fuzz_sections", "fuzz_descrambler", "fuzz_scrambler", "fuzz_packet_sync"}) {
    write(root / target, "mux", as_bytes(mux));
  }
  write(root / "fuzz_sections", "pmt", pmt.serialize());

  // Locators, one of each form, and RTP datagrams (2-byte length, then the datagram) in sequence,
  // one of them out of order and one repeated.
  int locator_seed = 0;
  for (const std::string text : {"udp://127.0.0.1:5000", "udp://@239.1.1.1:1234?localaddr=10.0.0.2", "udp://@:1234",
                                 "rtp://10.0.0.1@232.1.1.1:5004", "udp://[ff15::1]:1234?ttl=16&localaddr=::1",
                                 "rtp://[2001:db8::1]@[ff35::1]:1234", "udp://[fe80::1%eth0]:5000", "clear.ts", "-"}) {
    write(root / "fuzz_locator", "locator" + std::to_string(locator_seed++),
          {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
  }
  // PostgreSQL URLs: a password in the user part and in the query, IPv6, several hosts, options.
  int url_seed = 0;
  for (const std::string text : {"postgresql://engine:s3cret@db.example:5432/usher", "postgres://db.example/usher",
                                 "postgresql://[2001:db8::1]:6543/usher?sslmode=require&connect_timeout=3",
                                 "postgresql://u@h1:5432,h2:5433/usher?target_session_attrs=read-write",
                                 "postgresql:///usher?host=/var/run/postgresql&password=x%27y%5Cz",
                                 "postgresql://us%40er:p%3Ass@127.0.0.1/d%20b"}) {
    write(root / "fuzz_postgres_url", "url" + std::to_string(url_seed++),
          {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
  }
  std::vector<std::uint8_t> rtp{8};
  for (const int sequence : {1, 2, 4, 3, 5, 5, 9}) {
    streams::RtpHeader h;
    h.sequence = static_cast<std::uint16_t>(sequence);
    h.ssrc = 7;
    const auto header = streams::write_rtp_header(h);
    const std::size_t length = header.size() + 2 * streams::kPacketSize;
    rtp.push_back(static_cast<std::uint8_t>(length >> 8));
    rtp.push_back(static_cast<std::uint8_t>(length));
    rtp.insert(rtp.end(), header.begin(), header.end());
    for (int k = 0; k < 2; ++k) rtp.insert(rtp.end(), mux[static_cast<std::size_t>(k)].bytes.begin(), mux[static_cast<std::size_t>(k)].bytes.end());
  }
  write(root / "fuzz_rtp", "datagrams", rtp);

  // Engine requests: one of each kind, well formed.
  const entitlement::RequestId id{};
  const entitlement::Currency eur{'E', 'U', 'R'};
  auto handset = crypto::Ed25519KeyPair::generate();
  entitlement::BuyTicketRequest buy{7, 1001, {}};
  buy.spend.card_id = 1;
  buy.spend.amount = {100, eur};
  buy.spend.payee = entitlement::payee_for(7, 1001);
  buy.spend.sign(handset.private_key);
  const auto engine = root / "fuzz_engine";
  write(engine, "events", entitlement::encode_request(entitlement::MessageType::list_events, id, {}));
  // Signed as the handset does (request_auth.h); the targets also re-sign every input themselves.
  auto signed_request = [&](std::uint8_t type, const std::vector<std::uint8_t>& body, std::uint64_t card) {
    return entitlement::encode_request(static_cast<entitlement::MessageType>(type), id,
                                       entitlement::sign_request(type, id, body, card, unix_now(), handset.private_key));
  };
  write(engine, "register", signed_request(static_cast<std::uint8_t>(entitlement::MessageType::register_handset),
                                           entitlement::encode(entitlement::RegisterHandsetRequest{handset.public_key, "a", eur}), 0));
  write(engine, "topup", signed_request(static_cast<std::uint8_t>(entitlement::MessageType::top_up),
                                        entitlement::encode(entitlement::TopUpRequest{1, 500, "visa"}), 1));
  entitlement::PairRequest pair;
  pair.handset_public = handset.public_key;
  pair.tag = entitlement::pairing_tag("123456", pair.nonce, pair.handset_public);
  write(root / "fuzz_local_link", "pair",
        entitlement::encode_request(static_cast<entitlement::MessageType>(entitlement::LinkMessage::pair), id, entitlement::encode(pair)));
  write(root / "fuzz_local_link", "history",
        entitlement::encode_request(static_cast<entitlement::MessageType>(entitlement::LinkMessage::collect_history), id,
                                    entitlement::sign_link_request(static_cast<std::uint8_t>(entitlement::LinkMessage::collect_history), id, 1001,
                                                                   {}, handset.public_key, unix_now(), handset.private_key)));
 write(root / "fuzz_local_link", "deliver", entitlement::encode_request(static_cast<entitlement::MessageType>(1), id, emm_section));
  write(root / "fuzz_local_link", "acks", entitlement::encode_request(static_cast<entitlement::MessageType>(2), id, {}));
  write(engine, "buy", entitlement::encode_request(entitlement::MessageType::buy_ticket, id, entitlement::encode(buy)));
  write(engine, "emm-changes", entitlement::encode_request(entitlement::MessageType::emm_changes, id, entitlement::encode_emm_changes_request(0)));
  {
    entitlement::EmmFeedPage page;
    page.next_cursor = 9;
    page.more = true;
    page.added.push_back({7, entitlement::EmmPriority::renewal, 1, 2, std::vector<std::uint8_t>(40, 0x82)});
    page.removed = {3, 5};
    write(engine, "emm-feed-page", entitlement::encode(page));
  }
  write(root / "fuzz_sections", "pat", pat.serialize());

  // Billing: a sealed history (of an STB billing does not know), a payment, a prepayment, a
  // receipt and a room state.
  entitlement::HistoryRecord rec;
  rec.stb_id = 1001;
  rec.sequence = 1;
  rec.event_id = 7;
  rec.service_id = 1;
  rec.price = {1250, eur};
  rec.sign(handset.private_key);
  const auto sealed = entitlement::seal_history(std::vector{rec}, 1001, 1, crypto::X25519KeyPair::generate().public_key);
  write(engine, "sealed-history", sealed);
  entitlement::BillingCertificate billing_cert;
  billing_cert.billing_id = 1;
  billing_cert.billing_x25519 = crypto::X25519KeyPair::generate().public_key;
  billing_cert.sign(handset.private_key);
  write(engine, "billing-certificate", billing_cert.encode());
  const auto bill = root / "fuzz_billing";
  write(bill, "relay", signed_request(static_cast<std::uint8_t>(entitlement::BillingMessage::relay),
                                      entitlement::encode(entitlement::RelayRequest{sealed, 1}), 1));
  write(bill, "report", entitlement::encode_request(static_cast<entitlement::MessageType>(entitlement::BillingMessage::room_report), id, sealed));
  write(bill, "pay", entitlement::encode_request(static_cast<entitlement::MessageType>(entitlement::BillingMessage::pay), id,
                                                 entitlement::encode(entitlement::PayRequest{1, buy.spend})));
  write(bill, "prepay", signed_request(static_cast<std::uint8_t>(entitlement::BillingMessage::prepay),
                                       entitlement::encode(entitlement::PrepayRequest{1001, {1500, eur}, 1}), 1));
  entitlement::Receipt receipt;
  receipt.receipt_id = 1;
  receipt.stb_id = 1001;
  receipt.first_sequence = 1;
  receipt.last_sequence = 1;
  receipt.amount = {1250, eur};
  receipt.sign(handset.private_key);
  write(bill, "receipt", receipt.encode());
  write(root / "fuzz_local_link", "receipt",
        entitlement::encode_request(static_cast<entitlement::MessageType>(entitlement::LinkMessage::apply_receipt), id, receipt.encode()));
  entitlement::RoomState room;
  room.stb_id = 1001;
  room.counter = 1;
  room.stay_id = 3;
  room.credit_limit = {5000, eur};
  room.billing_endpoint = "tcp://127.0.0.1:7720";
  room.sign(handset.private_key);
  write(bill, "room", room.encode());
  write(root / "fuzz_local_link", "room",
        entitlement::encode_request(static_cast<entitlement::MessageType>(entitlement::LinkMessage::room_state), id, room.encode()));
  std::string pms;
  for (const auto& r : {billing::FiasRecord{"LS", {{"DA", "261124"}, {"TI", "101500"}}},
                        billing::FiasRecord{"GI", {{"RN", "102"}, {"G#", "12345"}, {"GN", "Koehler, Andreas"}}},
                        billing::FiasRecord{"PA", {{"AS", "OK"}, {"RN", "102"}, {"P#", "17"}}},
                        billing::FiasRecord{"GO", {{"RN", "102"}, {"G#", "12345"}}}}) {
    const auto f = r.frame();
    pms.append(f.begin(), f.end());
  }
  write(root / "fuzz_pms", "session", {reinterpret_cast<const std::uint8_t*>(pms.data()), pms.size()});
  int request_number = 0;
  for (const std::string text : {"GET /metrics HTTP/1.0\r\n\r\n", "GET /metrics?a=b HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD / HTTP/1.1\n\n",
                                 "POST /metrics HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", "127.0.0.1:9100"}) {
    write(root / "fuzz_metrics", "request" + std::to_string(request_number++), {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
  }
  int n = 0;
  for (const std::string text : {"010", "70001", "0x1FF0", "-12", "90m", "3d", "500ms", "now+2h", "now-90m", "2026-12-01T20:00:00Z",
                                 "999999999999999", "--hoem"}) {
    write(root / "fuzz_cli", "value" + std::to_string(n++), {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()});
  }
  // fuzz_provisioning: byte 0 picks CSV (0) or JSON lines (1), the rest is a box file.
  const std::string hex_key(64, 'a');
  const std::string csv(1, '\0');
  const std::string jsonl(1, '\1');
  for (const std::string& file : {csv + "stb_id,x25519,ed25519,account\n1001," + hex_key + "," + hex_key + ",smith\r\n# note\n1002," + hex_key + "," + hex_key + "\n",
                                 csv + "1,\"" + hex_key + "\"," + hex_key + ",\"a \"\"b\"\"\"\n1-20\n",
                                 jsonl + "{\"stb_id\":7,\"x25519\":\"" + hex_key + "\",\"ed25519\":\"" + hex_key + "\",\"account\":\"x\"}\n"}) {
    write(root / "fuzz_provisioning", "file" + std::to_string(n++), {reinterpret_cast<const std::uint8_t*>(file.data()), file.size()});
  }
  // fuzz_stb_store: byte 0 picks the column, byte 1 how the rest is written (blob, integer, text).
  for (std::uint8_t column = 0; column < 25; ++column) {
    for (std::uint8_t how = 0; how < 3; ++how) {
      const std::vector<std::uint8_t> edit{column, how, 0x00, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff};
      write(root / "fuzz_stb_store", "edit-" + std::to_string(column) + "-" + std::to_string(how), edit);
    }
  }
  return 0;
}
