#include "service/core/config.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

using namespace paymux;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using namespace std::chrono_literals;

namespace {

namespace fs = std::filesystem;

// The message of the ConfigError the text raises, or a marker that fails every StartsWith check.
std::string error_of(const std::string& yaml, const std::string& base_dir = ".") {
  try {
    load_config_string(yaml, base_dir);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "<loaded without error>";
}

// Sets an environment variable for one test; the previous state comes back afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    path_ = fs::temp_directory_path() /
            ("paymux-config-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const fs::path& path() const { return path_; }
  fs::path write(const std::string& name, const std::string& content) const {
    const fs::path p = path_ / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << content;
    return p;
  }

 private:
  fs::path path_;
};

const std::string kWebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

const std::string kFullConfig = R"(
server:
  listen: "127.0.0.1:9090"
  public_url: "https://pay.example.com/"
  threads: 4
  limits: {max_body_bytes: 65536, header_timeout_ms: 5000, idle_timeout_ms: 30000, shutdown_grace_ms: 2500}
storage:
  url: "sqlite:///var/lib/paymux/paymux.db"
log: {level: debug, format: text}
merchants:
  - id: acme
    api_keys: ["ak_live_1", "ak_live_2"]
    api_key_sha256: ["9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"]
    webhook:
      url: "https://shop.example/paymux"
      secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
      allow_private: true
    routing:
      - {when: {currency: [CLP]}, connectors: [cashypay_cl]}
      - when:
          payment_method: [barcode, qr]
          amount_min: 100
          amount_max: 500000
          metadata: {store: "s1"}
        connectors: [sqb_store1]
      - {connectors: [glocash_eu, dhpay_main]}
    connectors:
      - id: glocash_eu
        provider: glocash
        base_url: "https://sandbox.glocash.com/"
        timeout_ms: 20000
        connect_timeout_ms: 2000
        credentials: {email: "account@shop.example", secret_key: "gc-secret"}
      - id: dhpay_main
        provider: dhpay
        base_url: "https://www.dhpay.com"
        credentials: {merchant_id: "200000000147049", secret_key: "dh-secret"}
        settings: {sandbox: true, max_amount: 100000}
      - id: sqb_store1
        provider: shouqianba
        base_url: "http://127.0.0.1:18080"
        credentials: {terminal_sn: "T1", terminal_key: "sqb-key"}
      - id: cashypay_cl
        provider: cashypay
        base_url: "https://api.cashypay.example"
        credentials: {merchant_id: "1002001", api_key: "cashy-key"}
  - id: globex
    api_key_sha256: ["2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"]
    connectors:
      - id: dhpay_nonce_main
        provider: dhpay_nonce
        base_url: "https://cashier.camelfin.com"
        credentials: {client_id: "cid", secret: "nonce-secret", merchant_id: "m1"}
)";

const std::string kMinimal = R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors:
      - {id: c1, provider: glocash, base_url: "http://127.0.0.1:9001"}
)";

}  // namespace

TEST_CASE("a full config loads with every field in place", "[config]") {
  const Config cfg = load_config_string(kFullConfig);

  CHECK(cfg.server.listen_host == "127.0.0.1");
  CHECK(cfg.server.listen_port == 9090);
  CHECK(cfg.server.public_url == "https://pay.example.com");
  CHECK(cfg.server.threads == 4);
  CHECK(cfg.server.limits.max_body_bytes == 65536);
  CHECK(cfg.server.limits.header_timeout == std::chrono::milliseconds(5000));
  CHECK(cfg.server.limits.idle_timeout == std::chrono::milliseconds(30000));
  CHECK(cfg.server.limits.shutdown_grace == std::chrono::milliseconds(2500));
  CHECK(cfg.storage.is_sqlite());
  CHECK(cfg.storage.sqlite_path() == "/var/lib/paymux/paymux.db");
  CHECK(cfg.log.level == "debug");
  CHECK(cfg.log.format == "text");
  CHECK(cfg.tls.ca_file.empty());

  REQUIRE(cfg.merchants.size() == 2);
  const MerchantConfig& acme = cfg.merchants[0];
  CHECK(acme.id == "acme");
  REQUIRE(acme.api_keys.size() == 2);
  CHECK(acme.api_keys[0].reveal() == "ak_live_1");
  CHECK(acme.api_keys[1].reveal() == "ak_live_2");
  REQUIRE(acme.api_key_sha256.size() == 1);
  CHECK(acme.api_key_sha256[0] == "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
  CHECK(acme.webhook.url == "https://shop.example/paymux");
  REQUIRE(acme.webhook.secrets.size() == 1);
  CHECK(acme.webhook.secrets[0].reveal() == kWebhookSecret);
  CHECK(acme.webhook.allow_private);

  REQUIRE(acme.routing.size() == 3);
  CHECK(acme.routing[0].currencies == std::vector<std::string>{"CLP"});
  CHECK(acme.routing[0].connectors == std::vector<std::string>{"cashypay_cl"});
  CHECK_FALSE(acme.routing[0].min_amount.has_value());
  CHECK(acme.routing[1].payment_methods == std::vector<std::string>{"barcode", "qr"});
  CHECK(acme.routing[1].min_amount == std::optional<std::int64_t>(100));
  CHECK(acme.routing[1].max_amount == std::optional<std::int64_t>(500000));
  CHECK(acme.routing[1].metadata == std::map<std::string, std::string>{{"store", "s1"}});
  CHECK(acme.routing[2].currencies.empty());
  CHECK(acme.routing[2].connectors == std::vector<std::string>{"glocash_eu", "dhpay_main"});

  REQUIRE(acme.connectors.size() == 4);
  const ConnectorConfig& gc = acme.connectors[0];
  CHECK(gc.id == "glocash_eu");
  CHECK(gc.provider == "glocash");
  CHECK(gc.base_url == "https://sandbox.glocash.com");
  CHECK(gc.timeout == std::chrono::milliseconds(20000));
  CHECK(gc.connect_timeout == std::chrono::milliseconds(2000));
  CHECK(gc.credentials.at("email").reveal() == "account@shop.example");
  CHECK(gc.credentials.at("secret_key").reveal() == "gc-secret");
  CHECK(gc.merchant == "acme");

  const ConnectorConfig& dh = acme.connectors[1];
  CHECK(dh.timeout == std::chrono::milliseconds(15000));  // defaults when not set
  CHECK(dh.connect_timeout == std::chrono::milliseconds(5000));
  CHECK(dh.settings == std::map<std::string, std::string>{{"max_amount", "100000"}, {"sandbox", "true"}});

  const MerchantConfig& globex = cfg.merchants[1];
  CHECK(globex.api_keys.empty());
  CHECK(globex.webhook.url.empty());
  CHECK(globex.webhook.secrets.empty());
  CHECK_FALSE(globex.webhook.allow_private);
  REQUIRE(globex.connectors.size() == 1);
  CHECK(globex.connectors[0].merchant == "globex");

  const ConnectorConfig* found = cfg.find_connector("dhpay_nonce_main");
  REQUIRE(found != nullptr);
  CHECK(found->provider == "dhpay_nonce");
  CHECK(found->merchant == "globex");
  CHECK(cfg.find_connector("sqb_store1") == &acme.connectors[2]);
  CHECK(cfg.find_connector("nope") == nullptr);
}

TEST_CASE("omitted sections keep their defaults", "[config]") {
  const Config cfg = load_config_string(kMinimal);
  CHECK(cfg.server.listen_host == "0.0.0.0");
  CHECK(cfg.server.listen_port == 8080);
  CHECK(cfg.server.public_url == "http://localhost:8080");
  CHECK(cfg.server.threads == 0);
  CHECK(cfg.server.limits.max_body_bytes == 1048576);
  CHECK(cfg.storage.url == "sqlite://./var/paymux.db");
  CHECK(cfg.log.level == "info");
  CHECK(cfg.log.format == "json");
  REQUIRE(cfg.merchants.size() == 1);
  CHECK(cfg.merchants[0].routing.empty());

  CHECK(load_config_string("").merchants.empty());
}

TEST_CASE("IPv6 listen addresses are written in brackets", "[config]") {
  const Config cfg = load_config_string("server: {listen: \"[::1]:8443\"}\n");
  CHECK(cfg.server.listen_host == "::1");
  CHECK(cfg.server.listen_port == 8443);
}

TEST_CASE("${VAR} and ${VAR:-default} come from the environment", "[config]") {
  const std::string yaml = R"(
server:
  listen: "${PAYMUX_TEST_HOST:-0.0.0.0}:${PAYMUX_TEST_PORT:-8081}"
  threads: "${PAYMUX_TEST_THREADS:-2}"
storage: {url: "postgresql://paymux:${PAYMUX_TEST_DB_PASS}@db:5432/paymux"}
merchants:
  - id: acme
    api_keys: ["${PAYMUX_TEST_API_KEY}"]
    connectors:
      - id: c1
        provider: glocash
        base_url: "http://127.0.0.1:9001"
        credentials: {secret_key: "${PAYMUX_TEST_SECRET:-fallback}", note: "costs $$5 or $5"}
)";

  SECTION("defaults apply when the variables are unset") {
    ScopedEnv host("PAYMUX_TEST_HOST", nullptr), port("PAYMUX_TEST_PORT", nullptr),
        threads("PAYMUX_TEST_THREADS", nullptr), secret("PAYMUX_TEST_SECRET", nullptr);
    ScopedEnv pass("PAYMUX_TEST_DB_PASS", "pw"), key("PAYMUX_TEST_API_KEY", "ak_env");
    const Config cfg = load_config_string(yaml);
    CHECK(cfg.server.listen_host == "0.0.0.0");
    CHECK(cfg.server.listen_port == 8081);
    CHECK(cfg.server.threads == 2);
    CHECK(cfg.storage.url == "postgresql://paymux:pw@db:5432/paymux");
    CHECK(cfg.merchants[0].api_keys[0].reveal() == "ak_env");
    CHECK(cfg.merchants[0].connectors[0].credentials.at("secret_key").reveal() == "fallback");
    CHECK(cfg.merchants[0].connectors[0].credentials.at("note").reveal() == "costs $5 or $5");
  }

  SECTION("set variables win over defaults") {
    ScopedEnv host("PAYMUX_TEST_HOST", "127.0.0.1"), port("PAYMUX_TEST_PORT", "9999"),
        threads("PAYMUX_TEST_THREADS", "8"), secret("PAYMUX_TEST_SECRET", "from-env");
    ScopedEnv pass("PAYMUX_TEST_DB_PASS", "pw"), key("PAYMUX_TEST_API_KEY", "ak_env");
    const Config cfg = load_config_string(yaml);
    CHECK(cfg.server.listen_host == "127.0.0.1");
    CHECK(cfg.server.listen_port == 9999);
    CHECK(cfg.server.threads == 8);
    CHECK(cfg.merchants[0].connectors[0].credentials.at("secret_key").reveal() == "from-env");
  }

  SECTION("an empty variable takes the default with :-") {
    ScopedEnv secret("PAYMUX_TEST_SECRET", "");
    ScopedEnv pass("PAYMUX_TEST_DB_PASS", "pw"), key("PAYMUX_TEST_API_KEY", "ak_env");
    const Config cfg = load_config_string(yaml);
    CHECK(cfg.merchants[0].connectors[0].credentials.at("secret_key").reveal() == "fallback");
  }
}

TEST_CASE("an unset variable without default names the key path and the variable", "[config]") {
  ScopedEnv unset("PAYMUX_TEST_UNSET_SECRET", nullptr);
  const std::string msg = error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors:
      - id: c1
        provider: glocash
        base_url: "http://127.0.0.1:9001"
        credentials: {email: "a@b.c", secret_key: "${PAYMUX_TEST_UNSET_SECRET}"}
)");
  CHECK_THAT(msg, StartsWith("merchants[0].connectors[0].credentials.secret_key: "));
  CHECK_THAT(msg, Contains("PAYMUX_TEST_UNSET_SECRET"));
  CHECK_THAT(msg, Contains("not set"));

  CHECK_THAT(error_of("log: {level: \"${PAYMUX_TEST_UNSET_SECRET\"}\n"),
             StartsWith("log.level: unterminated ${"));
}

TEST_CASE("*_file keys read values from files relative to the config directory", "[config]") {
  TempDir dir;
  dir.write("secrets/gc_key", "gc-secret-from-file\n");
  dir.write("secrets/webhook", kWebhookSecret + "\r\n");
  dir.write("secrets/api_keys", "# one key per line\nak_file_1\n\n  ak_file_2  \n");
  const fs::path absolute = dir.write("abs_secret", "abs-value");

  const std::string yaml = R"(
merchants:
  - id: acme
    api_keys: [ak_inline]
    api_keys_file: secrets/api_keys
    webhook: {url: "https://shop.example/hook", secret_file: secrets/webhook}
    connectors:
      - id: c1
        provider: glocash
        base_url: "http://127.0.0.1:9001"
        credentials:
          email: "a@b.c"
          secret_key_file: secrets/gc_key
          other_file: ")" + absolute.string() + R"("
)";

  SECTION("load_config_string resolves against base_dir") {
    const Config cfg = load_config_string(yaml, dir.path().string());
    const MerchantConfig& m = cfg.merchants[0];
    REQUIRE(m.api_keys.size() == 3);
    CHECK(m.api_keys[0].reveal() == "ak_inline");
    CHECK(m.api_keys[1].reveal() == "ak_file_1");
    CHECK(m.api_keys[2].reveal() == "ak_file_2");
    REQUIRE(m.webhook.secrets.size() == 1);
    CHECK(m.webhook.secrets[0].reveal() == kWebhookSecret);
    const auto& creds = m.connectors[0].credentials;
    CHECK(creds.at("secret_key").reveal() == "gc-secret-from-file");
    CHECK(creds.at("other").reveal() == "abs-value");
    CHECK(creds.count("secret_key_file") == 0);
  }

  SECTION("load_config_file resolves against the file's directory") {
    const fs::path config = dir.write("paymux.yaml", yaml);
    const Config cfg = load_config_file(config.string());
    CHECK(cfg.merchants[0].connectors[0].credentials.at("secret_key").reveal() == "gc-secret-from-file");
  }

  SECTION("a missing file names the key") {
    const std::string msg = error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors:
      - id: c1
        provider: glocash
        base_url: "http://127.0.0.1:9001"
        credentials: {secret_key_file: secrets/nope}
)",
                                     dir.path().string());
    CHECK_THAT(msg, StartsWith("merchants[0].connectors[0].credentials.secret_key_file: cannot read "));
    CHECK_THAT(msg, Contains("secrets/nope"));
  }

  SECTION("a value and its _file twin together are an error") {
    const std::string msg = error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    webhook: {secret: ")" + kWebhookSecret + R"(", secret_file: secrets/webhook}
)",
                                     dir.path().string());
    CHECK_THAT(msg, StartsWith("merchants[0].webhook.secret_file: set either secret or secret_file"));
  }
}

TEST_CASE("unknown keys fail with their full path", "[config]") {
  CHECK(error_of("sever: {listen: \"0.0.0.0:80\"}\n") == "sever: unknown key");
  CHECK(error_of("server: {limits: {max_body: 10}}\n") == "server.limits.max_body: unknown key");

  const std::string msg = error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors:
      - {id: c1, provider: glocash, base_url: "http://127.0.0.1:9001"}
      - {id: c2, provider: dhpay, base_url: "http://127.0.0.1:9002", timout_ms: 100}
)");
  CHECK(msg == "merchants[0].connectors[1].timout_ms: unknown key");

  CHECK(error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors: [{id: c1, provider: glocash, base_url: "http://127.0.0.1:9001"}]
    routing: [{when: {currencies: [EUR]}, connectors: [c1]}]
)") == "merchants[0].routing[0].when.currencies: unknown key");

  CHECK(error_of("log: {level: info, level: debug}\n") == "log.level: duplicate key");
}

TEST_CASE("missing required keys fail with their path", "[config]") {
  CHECK(error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors:
      - {id: c1, base_url: "http://127.0.0.1:9001"}
)") == "merchants[0].connectors[0].provider: missing");

  CHECK(error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors:
      - {id: c1, provider: glocash}
)") == "merchants[0].connectors[0].base_url: missing");

  CHECK(error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
  - api_keys: [k2]
)") == "merchants[1].id: missing");

  CHECK_THAT(error_of("merchants: [{id: acme}]\n"), StartsWith("merchants[0].api_keys: missing"));

  CHECK_THAT(error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors: [{id: c1, provider: glocash, base_url: "http://127.0.0.1:9001"}]
    routing: [{when: {currency: [EUR]}}]
)"),
             StartsWith("merchants[0].routing[0].connectors: missing"));
}

TEST_CASE("values of the wrong type fail with their path", "[config]") {
  CHECK(error_of("server: {threads: many}\n") == "server.threads: expected a non-negative integer");
  CHECK(error_of("server: {threads: -1}\n") == "server.threads: expected a non-negative integer");
  CHECK(error_of("server: {threads: [1]}\n") == "server.threads: expected a non-negative integer");
  CHECK(error_of("server: {limits: {idle_timeout_ms: 0}}\n") ==
        "server.limits.idle_timeout_ms: expected a positive integer");
  CHECK_THAT(error_of("server: [a, b]\n"), StartsWith("server: expected a mapping"));
  CHECK_THAT(error_of("merchants: {id: acme}\n"), StartsWith("merchants: expected a list"));
  CHECK_THAT(error_of("merchants: [{id: acme, api_keys: k1}]\n"),
             StartsWith("merchants[0].api_keys: expected a list"));
  CHECK_THAT(error_of("merchants: [{id: acme, api_keys: [k1], webhook: {allow_private: sure}}]\n"),
             StartsWith("merchants[0].webhook.allow_private: expected true or false"));
  CHECK_THAT(error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors:
      - {id: c1, provider: glocash, base_url: "http://127.0.0.1:9001", settings: {limits: [1, 2]}}
)"),
             StartsWith("merchants[0].connectors[0].settings.limits: expected a scalar"));
  CHECK_THAT(error_of("server: {listen: [\n"), StartsWith("yaml:"));
}

TEST_CASE("values are validated", "[config]") {
  CHECK_THAT(error_of("server: {listen: \"0.0.0.0\"}\n"), StartsWith("server.listen: expected host:port"));
  CHECK_THAT(error_of("server: {listen: \"0.0.0.0:0\"}\n"), StartsWith("server.listen: expected host:port"));
  CHECK_THAT(error_of("server: {listen: \"0.0.0.0:65536\"}\n"), StartsWith("server.listen: expected host:port"));
  CHECK_THAT(error_of("server: {listen: \":8080\"}\n"), StartsWith("server.listen: expected host:port"));
  CHECK_THAT(error_of("server: {public_url: \"localhost:8080\"}\n"),
             StartsWith("server.public_url: expected an http:// or https:// URL"));
  CHECK_THAT(error_of("log: {level: verbose}\n"), StartsWith("log.level: expected one of"));
  CHECK_THAT(error_of("log: {format: xml}\n"), StartsWith("log.format: expected json or text"));
  CHECK_THAT(error_of("storage: {url: \"mysql://u:p@h/db\"}\n"), StartsWith("storage.url: expected"));
  CHECK_NOTHROW(load_config_string("storage: {url: \"postgres://u:p@h/db\"}\n"));

  CHECK_THAT(error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors: [{id: c1, provider: stripe, base_url: "http://127.0.0.1:9001"}]
)"),
             StartsWith("merchants[0].connectors[0].provider: unknown provider 'stripe'"));
  CHECK_THAT(error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors: [{id: "c 1", provider: glocash, base_url: "http://127.0.0.1:9001"}]
)"),
             StartsWith("merchants[0].connectors[0].id: connector id must be"));
  CHECK_THAT(error_of("merchants: [{id: " + std::string(65, 'a') + ", api_keys: [k1]}]\n"),
             StartsWith("merchants[0].id: merchant id must be"));
  CHECK_THAT(error_of("merchants: [{id: acme, api_keys: [k1]}, {id: acme, api_keys: [k2]}]\n"),
             StartsWith("merchants[1].id: duplicate merchant id 'acme'"));
  CHECK_THAT(error_of("merchants: [{id: acme, api_keys: [k1]}, {id: globex, api_keys: [k1]}]\n"),
             StartsWith("merchants[1].api_keys[0]: same API key as merchants[0].api_keys[0]"));
  CHECK_THAT(error_of("merchants: [{id: acme, api_key_sha256: [abc]}]\n"),
             StartsWith("merchants[0].api_key_sha256[0]: expected 64 hex characters"));
  CHECK_THAT(error_of("merchants: [{id: acme, api_keys: [k1], webhook: {url: \"ftp://x\", secret: \"" +
                      kWebhookSecret + "\"}}]\n"),
             StartsWith("merchants[0].webhook.url: expected an http:// or https:// URL"));
  CHECK_THAT(error_of("merchants: [{id: acme, api_keys: [k1], webhook: {url: \"https://x.example\"}}]\n"),
             StartsWith("merchants[0].webhook.secret: missing"));
  CHECK_THAT(error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors: [{id: c1, provider: glocash, base_url: "http://127.0.0.1:9001"}]
    routing: [{when: {currency: [eur]}, connectors: [c1]}]
)"),
             StartsWith("merchants[0].routing[0].when.currency[0]: expected an upper-case ISO 4217 code"));
  CHECK_THAT(error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors: [{id: c1, provider: glocash, base_url: "http://127.0.0.1:9001"}]
    routing: [{when: {amount_min: 500, amount_max: 100}, connectors: [c1]}]
)"),
             StartsWith("merchants[0].routing[0].when.amount_max: less than amount_min"));
}

TEST_CASE("connector ids are unique across merchants", "[config]") {
  const std::string msg = error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors:
      - {id: shared, provider: glocash, base_url: "http://127.0.0.1:9001"}
  - id: globex
    api_keys: [k2]
    connectors:
      - {id: other, provider: dhpay, base_url: "http://127.0.0.1:9002"}
      - {id: shared, provider: dhpay, base_url: "http://127.0.0.1:9003"}
)");
  CHECK_THAT(msg, StartsWith("merchants[1].connectors[1].id: duplicate connector id 'shared'"));
  CHECK_THAT(msg, Contains("merchants[0].connectors[0].id"));
}

TEST_CASE("routing may only name the merchant's own connectors", "[config]") {
  const std::string base = R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors:
      - {id: c1, provider: glocash, base_url: "http://127.0.0.1:9001"}
  - id: globex
    api_keys: [k2]
    connectors:
      - {id: g1, provider: dhpay, base_url: "http://127.0.0.1:9002"}
    routing:
      - {when: {currency: [EUR]}, connectors: [g1]}
)";
  CHECK_THAT(error_of(base + "      - {connectors: [g1, g2]}\n"),
             StartsWith("merchants[1].routing[1].connectors[1]: unknown connector 'g2'"));
  // c1 exists, but belongs to acme
  CHECK_THAT(error_of(base + "      - {connectors: [c1]}\n"),
             StartsWith("merchants[1].routing[1].connectors[0]: unknown connector 'c1'"));
  CHECK_NOTHROW(load_config_string(base));
}

TEST_CASE("webhook secrets must be whsec_ and base64", "[config]") {
  auto with_secret = [](const std::string& webhook) {
    return "merchants: [{id: acme, api_keys: [k1], webhook: " + webhook + "}]\n";
  };

  const std::string no_prefix = error_of(with_secret("{secret: \"hunter2-plain-secret\"}"));
  CHECK_THAT(no_prefix, StartsWith("merchants[0].webhook.secret: expected whsec_"));
  CHECK_THAT(no_prefix, !Contains("hunter2"));

  const std::string bad_b64 = error_of(with_secret("{secret: \"whsec_not*base64!\"}"));
  CHECK_THAT(bad_b64, StartsWith("merchants[0].webhook.secret: expected whsec_"));
  CHECK_THAT(bad_b64, !Contains("not*base64"));

  CHECK_THAT(error_of(with_secret("{secrets: [\"" + kWebhookSecret + "\", \"whsec_\"]}")),
             StartsWith("merchants[0].webhook.secrets[1]: expected whsec_"));
  CHECK_THAT(error_of(with_secret("{secret: \"" + kWebhookSecret + "\", secrets: [\"" + kWebhookSecret + "\"]}")),
             StartsWith("merchants[0].webhook.secrets: set either secret or secrets"));

  const Config rotated = load_config_string(
      with_secret("{url: \"http://127.0.0.1:7000/hook\", allow_private: true, secrets: [\"" + kWebhookSecret +
                  "\", \"whsec_dGVzdA==\"]}"));
  REQUIRE(rotated.merchants[0].webhook.secrets.size() == 2);
  CHECK(rotated.merchants[0].webhook.secrets[0].reveal() == kWebhookSecret);
  CHECK(rotated.merchants[0].webhook.secrets[1].reveal() == "whsec_dGVzdA==");
}

TEST_CASE("error messages do not reveal secret values", "[config]") {
  const std::string pg = error_of("storage: {url: \"mysql://admin:topsecretpw@db/x\"}\n");
  CHECK_THAT(pg, StartsWith("storage.url: "));
  CHECK_THAT(pg, !Contains("topsecretpw"));

  const std::string base = error_of(R"(
merchants:
  - id: acme
    api_keys: [k1]
    connectors: [{id: c1, provider: glocash, base_url: "gopher://tok3n-value@host"}]
)");
  CHECK_THAT(base, StartsWith("merchants[0].connectors[0].base_url: "));
  CHECK_THAT(base, !Contains("tok3n"));

  const std::string dup = error_of("merchants: [{id: a, api_keys: [sup3rkey]}, {id: b, api_keys: [sup3rkey]}]\n");
  CHECK_THAT(dup, StartsWith("merchants[1].api_keys[0]: "));
  CHECK_THAT(dup, !Contains("sup3rkey"));
}

TEST_CASE("sqlite_path is the path after sqlite://", "[config]") {
  StorageConfig s;
  s.url = "sqlite:///var/lib/x.db";
  CHECK(s.sqlite_path() == "/var/lib/x.db");
  s.url = "sqlite://./var/p.db";
  CHECK(s.sqlite_path() == "./var/p.db");
  s.url = "sqlite://var/p.db";
  CHECK(s.sqlite_path() == "var/p.db");
  s.url = "postgresql://u@h/db";
  CHECK_FALSE(s.is_sqlite());
  CHECK(s.sqlite_path().empty());

  CHECK_THAT(error_of("storage: {url: \"sqlite://\"}\n"), StartsWith("storage.url: sqlite:// URL without a path"));
}

TEST_CASE("a missing config file is a ConfigError naming the file", "[config]") {
  CHECK_THROWS_WITH(load_config_file("/nonexistent/paymux.yaml"),
                    StartsWith("/nonexistent/paymux.yaml: cannot read config file"));
}

TEST_CASE("webhook timeout_ms and retry_schedule_seconds", "[config][webhooks]") {
  auto merchant = [](const std::string& extra) {
    return "merchants: [{id: acme, api_keys: [k1], webhook: {url: \"https://shop.example/hook\", secret: \"" +
           kWebhookSecret + "\"" + extra + "}}]\n";
  };
  const Config defaults = load_config_string(merchant(""));
  const auto& d = defaults.merchants[0].webhook;
  CHECK(d.timeout == std::chrono::milliseconds(15000));
  CHECK(d.retry_schedule == default_webhook_retry_schedule());
  CHECK(defaults.webhooks.max_in_flight == 256);
  CHECK(defaults.webhooks.max_in_flight_per_merchant == 64);

  const Config custom = load_config_string(merchant(", timeout_ms: 2500, retry_schedule_seconds: [1, 2, 60]"));
  const auto& c = custom.merchants[0].webhook;
  CHECK(c.timeout == std::chrono::milliseconds(2500));
  REQUIRE(c.retry_schedule.size() == 3);
  CHECK(c.retry_schedule[2] == std::chrono::seconds(60));

  CHECK_THAT(error_of(merchant(", timeout_ms: 0")), StartsWith("merchants[0].webhook.timeout_ms: expected a positive"));
  CHECK_THAT(error_of(merchant(", timeout_ms: soon")), StartsWith("merchants[0].webhook.timeout_ms: "));
  CHECK_THAT(error_of(merchant(", retry_schedule_seconds: []")),
             StartsWith("merchants[0].webhook.retry_schedule_seconds: expected at least one"));
  CHECK_THAT(error_of(merchant(", retry_schedule_seconds: 5")),
             StartsWith("merchants[0].webhook.retry_schedule_seconds: expected a list"));
  CHECK_THAT(error_of(merchant(", retry_schedule_seconds: [5, 0]")),
             StartsWith("merchants[0].webhook.retry_schedule_seconds[1]: expected a positive"));
  CHECK_THAT(error_of(merchant(", retry_schedule_seconds: [5, 999999999]")),
             StartsWith("merchants[0].webhook.retry_schedule_seconds[1]: must be at most"));
  CHECK_THAT(error_of(merchant(", retries: [5]")), StartsWith("merchants[0].webhook.retries: unknown key"));
}

TEST_CASE("the webhooks sender section", "[config][webhooks]") {
  const Config cfg = load_config_string(
      "webhooks: {max_in_flight: 32, max_in_flight_per_merchant: 8, batch: 16, poll_ms: 50}\n");
  CHECK(cfg.webhooks.max_in_flight == 32);
  CHECK(cfg.webhooks.max_in_flight_per_merchant == 8);
  CHECK(cfg.webhooks.batch == 16);
  CHECK(cfg.webhooks.poll == std::chrono::milliseconds(50));
  CHECK_THAT(error_of("webhooks: {max_in_flight: 8, max_in_flight_per_merchant: 9}\n"),
             StartsWith("webhooks.max_in_flight_per_merchant: more than max_in_flight"));
  CHECK_THAT(error_of("webhooks: {concurrency: 8}\n"), StartsWith("webhooks.concurrency: unknown key"));
}

TEST_CASE("webhook URLs to loopback, private or link-local addresses need allow_private", "[config][webhooks]") {
  auto with_url = [](const std::string& url, const std::string& extra = "") {
    return "merchants: [{id: acme, api_keys: [k1], webhook: {url: \"" + url + "\", secret: \"" + kWebhookSecret +
           "\"" + extra + "}}]\n";
  };
  for (const char* url : {"http://127.0.0.1:9000/hook", "https://10.0.0.5/hook", "http://169.254.169.254/latest",
                          "https://[::1]:8443/hook", "http://localhost:8080/hook", "https://192.168.1.20",
                          "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/"}) {
    INFO(url);
    const std::string msg = error_of(with_url(url));
    CHECK_THAT(msg, StartsWith("merchants[0].webhook.url: a loopback, private or link-local address is refused"));
    CHECK_NOTHROW(load_config_string(with_url(url, ", allow_private: true")));
  }
  // Public addresses and names are accepted here (names are checked again after each resolution).
  CHECK_NOTHROW(load_config_string(with_url("https://93.184.216.34/hook")));
  CHECK_NOTHROW(load_config_string(with_url("https://shop.example/hook")));
}

TEST_CASE("circuit, query_rate and the reconciler schedule are configured", "[config]") {
  const Config cfg = load_config_string(
      "reconciler: {first_check_ms: 2000, max_interval_ms: 9000, query_rate: 2.5, lease_ms: 60000,\n"
      "             schedule: {processing: {first_check_ms: 500}, requires_action: {max_interval_ms: 4000}}}\n"
      "merchants:\n"
      "  - id: acme\n"
      "    api_keys: [k1]\n"
      "    connectors:\n"
      "      - {id: g1, provider: glocash, base_url: \"https://gc.example\",\n"
      "         credentials: {email: a@b.c, secret_key: s},\n"
      "         circuit: {failure_threshold: 2, cool_down_ms: 1500}, query_rate: 40}\n"
      "      - {id: g2, provider: glocash, base_url: \"https://gc.example\",\n"
      "         credentials: {email: a@b.c, secret_key: s}}\n");
  const auto& r = cfg.reconciler;
  CHECK(r.query_rate == 2.5);
  CHECK(r.lease == 60000ms);
  CHECK(r.schedule_for("processing").first_check == 500ms);
  CHECK(r.schedule_for("processing").max_interval == 9000ms);  // inherited
  CHECK(r.schedule_for("requires_action").first_check == 2000ms);
  CHECK(r.schedule_for("requires_action").max_interval == 4000ms);
  CHECK(r.schedule_for("created").first_check == 2000ms);
  const auto& g1 = cfg.merchants[0].connectors[0];
  CHECK(g1.circuit.failure_threshold == 2);
  CHECK(g1.circuit.cool_down == 1500ms);
  CHECK(g1.query_rate == 40);
  const auto& g2 = cfg.merchants[0].connectors[1];
  CHECK(g2.circuit.failure_threshold == 5);  // the defaults
  CHECK(g2.circuit.cool_down == 30000ms);
  CHECK(g2.query_rate == 0);

  CHECK_THAT(error_of("reconciler: {query_rate: 0}\n"), StartsWith("reconciler.query_rate: expected a number"));
  CHECK_THAT(error_of("reconciler: {query_rate: fast}\n"), StartsWith("reconciler.query_rate: expected a number"));
  CHECK_THAT(error_of("reconciler: {schedule: {succeeded: {first_check_ms: 1}}}\n"),
             StartsWith("reconciler.schedule.succeeded: unknown key"));
  CHECK_THAT(error_of("reconciler: {schedule: {processing: {every_ms: 1}}}\n"),
             StartsWith("reconciler.schedule.processing.every_ms: unknown key"));
  const std::string connector =
      "merchants: [{id: acme, api_keys: [k1], connectors: [{id: g1, provider: glocash, base_url: \"https://gc.example\", "
      "credentials: {email: a@b.c, secret_key: s}, ";
  CHECK_THAT(error_of(connector + "circuit: {failure_threshold: 0}}]}]\n"),
             StartsWith("merchants[0].connectors[0].circuit.failure_threshold: "));
  CHECK_THAT(error_of(connector + "circuit: {open_ms: 5}}]}]\n"),
             StartsWith("merchants[0].connectors[0].circuit.open_ms: unknown key"));
}
