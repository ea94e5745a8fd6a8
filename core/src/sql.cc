#include "usher/core/sql.h"

namespace usher::sql {

Transaction::~Transaction() {
  if (!done_) {
    try {
      db_.connection().rollback();
    } catch (...) {  // a lost connection has rolled back by itself
    }
  }
}

void Transaction::commit() {
  db_.connection().commit();  // when it throws, the destructor rolls back what is left open
  done_ = true;
}

Status Database::atomically(const std::function<void()>& work, const std::string& what) {
  try {
    Transaction tx(*this);
    work();
    tx.commit();
  } catch (const std::exception& e) {
    return make_error(Errc::storage, what + ": " + e.what());
  }
  return ok_status();
}

}  // namespace usher::sql
