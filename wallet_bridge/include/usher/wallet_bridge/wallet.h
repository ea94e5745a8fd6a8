// Wallet: a viewer's handset. It holds an Ed25519 key pair (its prepaid card is bound to it), talks
// to the entitlement engine over ZeroMQ, buys PPV tickets for its own STB or as gifts, and hands a
// ticket's EMM to an STB over the local link (`usher stb link`) so the STB need not wait for the
// broadcast. State lives in wallet.db under the wallet's home.
//
//   auto w = Wallet::init(home, "alice", eur, "tcp://127.0.0.1:7700", operator_pub).value();
//   w.top_up(2000, "test-visa");
//   auto bought = w.buy(7, 1001, /*gift=*/false);
//   w.deliver(bought->ticket_id, "tcp://127.0.0.1:7801");
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "usher/core/bytes.h"
#include "usher/core/result.h"
#include "usher/core/schema.h"
#include "usher/core/sqlite.h"
#include "usher/core/zmq.h"
#include "usher/entitlement/assets.h"
#include "usher/entitlement/catalogue.h"
#include "usher/entitlement/identity_files.h"
#include "usher/entitlement/link_auth.h"
#include "usher/entitlement/protocol.h"
#include "usher/entitlement/request_auth.h"
#include "usher/entitlement/request_code.h"
#include "usher/entitlement/settlement.h"

namespace usher::wallet {

// Typed calls to the engine. Each call has a fresh request id that its retries reuse. Calls about a
// card, its account or its tickets are signed by the card's handset (request_auth.h).
class EngineClient {
 public:
  explicit EngineClient(const std::string& endpoint, net::ClientOptions options = {});
  Result<std::vector<entitlement::EventInfo>> events();
  // The new card's id and its certificate, signed by the engine. Signed by the key registered.
  Result<entitlement::PrepaidCardCertificate> register_handset(const entitlement::RegisterHandsetRequest& r,
                                                               const Secret<32>& handset_private);
  Result<entitlement::Money> top_up(const entitlement::TopUpRequest& r, const entitlement::RequestSigner& signer);
  Result<entitlement::Money> balance(const entitlement::RequestSigner& signer);
  Result<entitlement::BuyTicketReply> buy_ticket(const entitlement::BuyTicketRequest& r);
  Result<entitlement::BuyTicketReply> buy_by_code(const entitlement::BuyByCodeRequest& r);
  Result<std::vector<std::uint64_t>> delivery_acks(const std::vector<entitlement::DeliveryAck>& acks);
  // Per ticket: confirmed delivery time (0 = not yet), or nullopt when the engine does not know it.
  Result<std::vector<std::optional<std::uint64_t>>> delivered(const std::vector<std::uint64_t>& ticket_ids,
                                                              const entitlement::RequestSigner& signer);
  Result<std::vector<std::uint32_t>> account_stbs(const std::string& account, const entitlement::RequestSigner& signer);
  Result<entitlement::BuyTicketReply> buy_pass(const entitlement::BuyPassRequest& r);
  Result<entitlement::Money> pass_price(std::uint16_t service_id);

 private:
  Result<std::vector<std::uint8_t>> call(entitlement::MessageType type, std::span<const std::uint8_t> body);
  Result<std::vector<std::uint8_t>> call(entitlement::MessageType type, std::span<const std::uint8_t> body,
                                         const entitlement::RequestSigner& signer);
  net::RequestClient client_;
};

// Typed calls to the billing service (`usher billing serve`).
class BillingClient {
 public:
  // A busy billing (a hundred handsets at once) gets 2 s, then 4 s, then 8 s before the handset
  // gives up. Retries are safe: a relay or a payment sent twice is answered as the first was.
  static constexpr net::ClientOptions kOptions{std::chrono::milliseconds(2000), 3, 2};
  explicit BillingClient(const std::string& endpoint, net::ClientOptions options = kOptions);
  // Relays and prepayments name the card: signed by its handset.
  Result<entitlement::RelayReply> relay(const entitlement::RelayRequest& r, const entitlement::RequestSigner& signer);
  // Billing's certificate (public: what the handset relays to the STB, which seals its history for it).
  Result<std::vector<std::uint8_t>> certificate();
  Result<std::vector<std::uint8_t>> pay(const entitlement::PayRequest& r);  // the receipt's bytes
  Result<entitlement::RelayReply> prepay(const entitlement::PrepayRequest& r, const entitlement::RequestSigner& signer);

 private:
  net::RequestClient client_;
};

// What one relay round (F4) did.
struct RelayOutcome {
  std::uint32_t stb_id = 0;
  std::uint64_t records_settled = 0;   // records the STB marked settled
  entitlement::Money paid;             // charged to this wallet's card in this round
  std::vector<entitlement::Receipt> receipts;  // delivered to the STB in this round
};

struct StoredReceipt {
  entitlement::Receipt receipt;
  bool delivered = false;
};

struct OwnedTicket {
  entitlement::Ticket ticket;
  std::vector<std::uint8_t> emm_section;
  bool gift = false;
  bool delivered = false;  // the STB confirmed it over the local link
  std::uint64_t deliver_at = 0;  // F5: not handed over before this time
};

class Wallet {
 public:
  static constexpr const char* kDatabaseName = "wallet.db";

  static Result<Wallet> init(const std::string& home, const std::string& account, const entitlement::Currency& currency,
                             const std::string& engine, const entitlement::OperatorPublicFile& operator_identity);
  // Opens the wallet, bringing its schema forward (Errc::storage, the file untouched, when a newer
  // Usher wrote it).
  static Result<Wallet> open(const std::string& home);
  // The numbered steps of wallet.db's schema (docs/architecture.md, "Schema versions").
  static const sql::Schema& schema();

  [[nodiscard]] std::uint64_t card_id() const { return card_id_; }
  [[nodiscard]] const std::string& account() const { return account_; }
  // The card's certificate as issued, checked against the operator's key and this handset's key.
  Result<entitlement::PrepaidCardCertificate> card_certificate();
  Result<entitlement::Money> balance();
  Result<entitlement::Money> top_up(std::int64_t amount_minor, const std::string& funding_reference);
  Result<std::vector<entitlement::EventInfo>> events();
  // Pays for `event_id` for STB `stb_id` and keeps the ticket (verified against the operator's key).
  // With `deliver_at`, the ticket reaches the STB at that time (broadcast from then; the wallet holds
  // it back until then too).
  Result<OwnedTicket> buy(std::uint32_t event_id, std::uint32_t stb_id, bool gift, std::uint64_t deliver_at = 0);
  // A pass to `service_id` for `days` days for STB `stb_id` (a ticket for a period).
  Result<OwnedTicket> buy_pass(std::uint16_t service_id, std::uint16_t days, std::uint32_t stb_id, bool gift);
  // F3: what an STB's request code asks for (its event, with the price), to show before paying.
  Result<std::pair<entitlement::RequestCode, entitlement::EventInfo>> describe_code(const std::string& code);
  // Pays for an STB's request code; the ticket goes to that STB.
  Result<OwnedTicket> approve(const std::string& code);
  // Hands the ticket's EMM to an STB's local link; marks it delivered when the STB has stored it.
  Status deliver(std::uint64_t ticket_id, const std::string& link_endpoint, std::uint64_t now);
  std::vector<OwnedTicket> tickets();
  // The tickets this wallet bought whose delivery the recipient STB has confirmed (through its
  // owner's handset relaying its signed ack), with the time it stored them.
  Result<std::vector<std::pair<std::uint64_t, std::uint64_t>>> confirmed_deliveries();
  // Collects the signed delivery acks of the STB at `link_endpoint` and relays them to the engine.
  Result<std::size_t> relay_acks(const std::string& link_endpoint);
  // F4: asks billing for its certificate, hands it to the STB with its request for its unsettled
  // viewing history (sealed for billing's key: the handset cannot read or change it), relays it to billing, pays what billing asks with the prepaid card, and
  // hands the signed receipt back to the STB, which frees its credit. Safe to run again after any
  // failure: billing charges once and hands back the same receipt.
  // With `expected_stb`, refused unless the STB at that link is that one.
  Result<RelayOutcome> relay_history(const std::string& link_endpoint, const std::string& billing_endpoint,
                                     std::uint32_t expected_stb = 0);
  // Pairs this handset with the STB at `link_endpoint` using the code the STB shows (`usher stb
  // link` prints it and writes it to pairing-code in its home); checks that the STB knew the code
  // and remembers its link. Returns the STB's id. Collecting acks or history and handing back
  // receipts need it; handing over a ticket does not.
  Result<std::uint32_t> pair(const std::string& link_endpoint, const std::string& code);
  // The local links of the viewer's STBs, remembered from pairing.
  Status remember_link(std::uint32_t stb_id, const std::string& link_endpoint);
  Result<std::string> link_of(std::uint32_t stb_id);
  // [0269] prepayment: buys `amount_minor` of credit for STB `stb_id` from billing; the receipt is
  // loaded into the STB over `link_endpoint` now, or at the next relay when it is "" or away.
  Result<StoredReceipt> prepay(std::uint32_t stb_id, std::int64_t amount_minor, const std::string& billing_endpoint,
                               const std::string& link_endpoint);
  std::vector<StoredReceipt> receipts();

  // The STBs of an account (for a gift to a friend by account).
  Result<std::vector<std::uint32_t>> account_stbs(const std::string& account);

 private:
  Wallet(sql::Database db, std::string engine, std::uint64_t card_id, std::string account,
         entitlement::Currency currency, crypto::PublicKey issuer);
  Secret<32> handset_private();
  Result<entitlement::Receipt> pay_quote(BillingClient& billing, const entitlement::Quote& quote);
  Status keep_receipt(const entitlement::Receipt& r, std::span<const std::uint8_t> bytes);
  // Hands this wallet's undelivered receipts for `stb_id` to the STB; returns the records settled.
  Result<std::uint64_t> deliver_receipts(net::RequestClient& link, const entitlement::LinkSigner& signer,
                                         std::vector<entitlement::Receipt>& delivered);
  // How this handset signs requests to the STB it paired with at `link_endpoint` (with `key`, which
  // must outlive the signer); Errc::not_found when it has not paired there.
  Result<entitlement::LinkSigner> link_signer(const std::string& link_endpoint, const Secret<32>& key);
  Result<OwnedTicket> keep(const entitlement::BuyTicketReply& reply, std::uint32_t event_id, std::uint32_t stb_id, bool gift,
                           std::uint64_t deliver_at);

  sql::Database db_;
  std::string engine_;
  std::uint64_t card_id_;
  std::string account_;
  entitlement::Currency currency_;
  crypto::PublicKey issuer_;
  std::unique_ptr<EngineClient> client_;
};


}  // namespace usher::wallet
