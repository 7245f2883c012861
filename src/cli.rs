//! The command line: `serve`, `check`, `explain` and `doctor`; which values came from
//! `DCR_GATEWAY_*` variables, and which such variables nothing reads (misspelt).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, Parser, Subcommand};

use crate::config::Overrides;

/// A policy gateway in front of Keycloak's client-registration endpoint.
#[derive(Debug, Parser)]
#[command(name = "dcr-gateway", version = crate::LONG_VERSION, about, long_about = None)]
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
    /// The flag and environment overrides; `from_env` maps the flags whose value came from
    /// their environment variable to that variable (see [`env_sourced`]), so errors name it.
    pub fn overrides(&self, from_env: BTreeMap<String, String>) -> Overrides {
        Overrides {
            from_env,
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

/// Variables read by the build or by tools around the gateway, not by a flag (`cargo run` and
/// `cargo test` also put build.rs's `DCR_GATEWAY_COMMIT` in the binary's environment).
const OTHER_KNOWN: &[&str] = &["DCR_GATEWAY_BUILD_COMMIT", "DCR_GATEWAY_COMMIT"];

/// Every `DCR_GATEWAY_*` variable a flag of any subcommand reads.
pub fn known_variables() -> BTreeSet<String> {
    let cmd = Cli::command();
    let mut out: BTreeSet<String> = OTHER_KNOWN.iter().map(|s| (*s).to_owned()).collect();
    for sub in cmd.get_subcommands() {
        for arg in sub.get_arguments() {
            if let Some(env) = arg.get_env().and_then(|e| e.to_str()) {
                out.insert(env.to_owned());
            }
        }
    }
    out
}

/// The flags of a subcommand whose value came from their environment variable, as
/// `--flag` → `VARIABLE`; `sub` is that subcommand's matches, `name` its name.
pub fn env_sourced(name: &str, sub: &ArgMatches) -> BTreeMap<String, String> {
    let cmd = Cli::command();
    let Some(def) = cmd.find_subcommand(name) else {
        return BTreeMap::new();
    };
    def.get_arguments()
        .filter(|a| sub.value_source(a.get_id().as_str()) == Some(ValueSource::EnvVariable))
        .filter_map(|a| {
            let env = a.get_env()?.to_str()?.to_owned();
            Some((format!("--{}", a.get_long()?), env))
        })
        .collect()
}

/// `DCR_GATEWAY_*` names among `names` that nothing reads, each with the known variable it is
/// probably a misspelling of (at most two edits away). `also_known`: variables the settings
/// file names (a registrar's `secret_env`), which are read too.
pub fn unknown_variables<I: IntoIterator<Item = String>>(
    names: I,
    also_known: &BTreeSet<String>,
) -> Vec<(String, Option<String>)> {
    let known = known_variables();
    names
        .into_iter()
        .filter(|n| n.starts_with("DCR_GATEWAY_") && !known.contains(n) && !also_known.contains(n))
        .map(|n| {
            let near = known
                .iter()
                .map(|k| (edits(&n, k), k))
                .filter(|(d, _)| *d <= 2)
                .min()
                .map(|(_, k)| k.clone());
            (n, near)
        })
        .collect()
}

/// Levenshtein distance (names are short ASCII).
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_variables_with_suggestions() {
        let known = known_variables();
        assert!(known.contains("DCR_GATEWAY_LISTEN") && known.contains("DCR_GATEWAY_POLICIES"));
        let names = [
            "DCR_GATEWAY_LISTN",
            "DCR_GATEWAY_LISTEN",
            "DCR_GATEWAY_SOMETHING_ELSE",
            "HOME",
            "DCR_GATEWAY_S",
        ];
        let extra = BTreeSet::from(["DCR_GATEWAY_S".to_owned()]);
        let got = unknown_variables(names.iter().map(|s| (*s).to_owned()), &extra);
        assert_eq!(
            got,
            vec![
                ("DCR_GATEWAY_LISTN".to_owned(), Some("DCR_GATEWAY_LISTEN".to_owned())),
                ("DCR_GATEWAY_SOMETHING_ELSE".to_owned(), None),
            ]
        );
        assert_eq!(edits("kitten", "sitting"), 3);
    }

    #[test]
    fn env_sourced_names_the_variable() {
        let m = Cli::command()
            .try_get_matches_from(["dcr-gateway", "serve", "--listen", "127.0.0.1:1"])
            .unwrap();
        let (name, sub) = m.subcommand().unwrap();
        assert!(env_sourced(name, sub).is_empty(), "a flag is not from the environment");
    }
}
