//! The command line: `serve`, `check`, `explain` and `doctor`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

/// A policy gateway in front of Keycloak's client-registration endpoint.
#[derive(Debug, Parser)]
#[command(name = "dcr-gateway", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Validate policy files offline and print what each realm allows.
    Check(CheckArgs),
    /// Would this token be allowed to do this, and if not, what to change? (offline)
    Explain(crate::explain::ExplainArgs),
    /// Read a realm through Keycloak's admin API and list what will make registrations fail.
    Doctor(crate::doctor::DoctorArgs),
}

/// `dcr-gateway serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Settings file (TOML).
    #[arg(long, env = "DCR_GATEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Proxy listen address [default: 127.0.0.1:8000].
    #[arg(long, env = "DCR_GATEWAY_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Admin listen address (/metrics, /healthz, /readyz) [default: 127.0.0.1:9100].
    #[arg(long, env = "DCR_GATEWAY_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Keycloak's base URL as the gateway reaches it [default: http://127.0.0.1:8080].
    #[arg(long, env = "DCR_GATEWAY_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,
    /// Policy file or directory of *.toml [default: ./policies].
    #[arg(long, env = "DCR_GATEWAY_POLICIES", value_name = "PATH")]
    pub policies: Option<PathBuf>,
    /// Keycloak's base URL as clients reach it through the gateway [default: the upstream URL].
    #[arg(long, env = "DCR_GATEWAY_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
    /// enforce (default) or shadow (decisions logged and counted, never enforced).
    #[arg(long, env = "DCR_GATEWAY_MODE", value_name = "MODE")]
    pub mode: Option<String>,
    /// human (default) or json.
    #[arg(long, env = "DCR_GATEWAY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// Path prefix before /realms (e.g. /auth for Keycloak 16 and older).
    #[arg(long, env = "DCR_GATEWAY_PATH_PREFIX", value_name = "PREFIX")]
    pub path_prefix: Option<String>,
}

impl ServeArgs {
    /// The flag and environment overrides.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            admin_listen: self.admin_listen.clone(),
            upstream: self.upstream.clone(),
            public_url: self.public_url.clone(),
            policies: self.policies.clone(),
            mode: self.mode.clone(),
            log_format: self.log_format.clone(),
            path_prefix: self.path_prefix.clone(),
        }
    }
}

/// `dcr-gateway check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy file or directory of *.toml.
    #[arg(long, env = "DCR_GATEWAY_POLICIES", value_name = "PATH")]
    pub policies: PathBuf,
    /// Settings file to validate as well.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}
