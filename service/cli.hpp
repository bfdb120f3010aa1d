#pragma once
// Connector commands of the paymux binary, e.g.
//   paymux shouqianba activate --connector ID --code CODE [--config FILE]
// which asks the gateway for a connector's credentials with a one-time activation code and keeps
// them in the store (a running paymux picks them up within a reconciler tick).
namespace paymux {

// argv[1] is the provider name. Returns the process exit status.
int run_connector_command(int argc, char** argv);

}  // namespace paymux
