#pragma once
// Logging set-up: spdlog to stderr, one JSON object per line (or plain text). Messages never carry
// secrets: credentials are Secret values, which print as "***".
#include "service/core/config.hpp"

namespace paymux::obs {

void init_logging(const LogConfig& config, const std::string& service_name);

}  // namespace paymux::obs
