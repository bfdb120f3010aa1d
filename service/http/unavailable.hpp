#pragma once
// A dependency the service cannot do without (its store) is not answering. Requests that meet it
// are answered 503 with Retry-After, not 500: nothing is wrong with the request or with paymux.
#include <stdexcept>

namespace paymux::http {

struct Unavailable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace paymux::http
