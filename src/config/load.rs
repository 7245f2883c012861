//! Loading settings: embedded defaults ← TOML file ← flags and environment, then validation.
//!
//! Every failure names the file, line and key (or the flag) at fault; `main` exits with code 2.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::types::{Addr, BaseUrl};
use super::{FileConfig, JwksSettings, JwtSettings, LogFormat, Mode, OtherPaths, Settings, Timeouts, tls};

/// A configuration error: where, which key, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file at fault, or `None` for a flag or environment variable.
    pub file: Option<PathBuf>,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// The key (`jwks.max_staleness`) or flag (`--listen`).
    pub key: String,
    /// What is wrong and what is expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.position) {
            (Some(file), Some((l, c))) => write!(f, "{}:{l}:{c}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            _ => {}
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Values given on the command line or in `DCR_GATEWAY_*` variables; they win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--admin-listen`.
    pub admin_listen: Option<String>,
    /// `--upstream`.
    pub upstream: Option<String>,
    /// `--public-url`.
    pub public_url: Option<String>,
    /// `--policies`.
    pub policies: Option<PathBuf>,
    /// `--mode`.
    pub mode: Option<String>,
    /// `--log-format`.
    pub log_format: Option<String>,
    /// `--path-prefix`.
    pub path_prefix: Option<String>,
    /// Flags whose value came from their environment variable: `--listen` → `DCR_GATEWAY_LISTEN`.
    pub from_env: std::collections::BTreeMap<String, String>,
}

impl Overrides {
    /// How an error names a flag's value: `--listen`, or `DCR_GATEWAY_LISTEN (--listen)` when
    /// the value came from the environment.
    pub fn name(&self, flag: &str) -> String {
        match self.from_env.get(flag) {
            Some(var) => format!("{var} (--{})", flag.trim_start_matches('-')),
            None => flag.to_owned(),
        }
    }
}

/// Turns a byte offset into a 1-based (line, column).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

/// The key written at the start of `line` (text before `=`), or the table header.
pub fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?.trim();
    if let Some((k, _)) = l.split_once('=') {
        return Some(k.trim().trim_matches('"').to_owned());
    }
    l.strip_prefix('[')
        .map(|t| t.trim_end_matches(']').trim_matches('[').to_owned())
}

/// Parses a TOML document into `T`, turning errors into `ConfigError` with position and key.
pub fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let position = e.span().map(|s| line_col(text, s.start));
        let key = position
            .and_then(|(l, _)| key_on_line(text, l))
            .unwrap_or_else(|| "(document)".to_owned());
        ConfigError {
            file: Some(file.to_owned()),
            position,
            message: super::words::in_words(e.message().trim(), &key),
            key,
        }
    })
}

fn flag<T: FromStr<Err = String>>(name: String, v: &Option<String>) -> Result<Option<T>, ConfigError> {
    v.as_deref()
        .map(|s| {
            s.parse().map_err(|m| ConfigError {
                file: None,
                position: None,
                key: name.clone(),
                message: m,
            })
        })
        .transpose()
}

fn enum_flag<T: serde::de::DeserializeOwned>(
    name: String,
    v: &Option<String>,
    allowed: &str,
) -> Result<Option<T>, ConfigError> {
    v.as_deref()
        .map(|s| {
            serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| ConfigError {
                file: None,
                position: None,
                key: name.clone(),
                message: format!("`{s}` is not one of {allowed}"),
            })
        })
        .transpose()
}

/// Loads settings from an optional file plus overrides, fully validated.
pub fn load(file: Option<&Path>, over: &Overrides) -> Result<Settings, ConfigError> {
    let raw: FileConfig = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: Some(path.to_owned()),
                position: None,
                key: over.name("--config"),
                message: format!("cannot read the file: {e}"),
            })?;
            let raw = parse_toml(&text, path)?;
            // A semantic error names a key: say where in the file it is written.
            return build(raw, file, over).map_err(|mut e| {
                if e.file.is_some() && e.position.is_none() {
                    e.position = super::words::key_position(&text, &e.key);
                }
                e
            });
        }
        None => FileConfig::default(),
    };
    build(raw, file, over)
}

fn file_err(file: Option<&Path>, key: &str, message: String) -> ConfigError {
    ConfigError {
        file: file.map(Path::to_owned),
        position: None,
        key: key.to_owned(),
        message,
    }
}

fn algorithms(raw: Option<Vec<String>>, file: Option<&Path>) -> Result<Vec<Algorithm>, ConfigError> {
    let names = raw.unwrap_or_else(|| vec!["RS256".into(), "PS256".into(), "ES256".into()]);
    if names.is_empty() {
        return Err(file_err(
            file,
            "jwt.algorithms",
            "at least one algorithm is needed".into(),
        ));
    }
    names
        .iter()
        .map(|n| match Algorithm::from_str(n) {
            Ok(a) if !n.starts_with("HS") => Ok(a),
            _ => Err(file_err(
                file,
                "jwt.algorithms",
                format!("`{n}` is not allowed for bearer tokens; use RS256/384/512, PS256/384/512, ES256/384 or EdDSA (never none or HS*)"),
            )),
        })
        .collect()
}

/// A duration from the file, else `default` seconds.
fn secs(v: Option<super::Dur>, default: u64) -> Duration {
    v.map(|d| d.0).unwrap_or(Duration::from_secs(default))
}

/// `path_prefix` (flag over file): empty, or starting with `/`, without a trailing `/`.
fn path_prefix(from_file: Option<String>, file: Option<&Path>, over: &Overrides) -> Result<String, ConfigError> {
    let (source, key) = match over.path_prefix {
        Some(_) => (None, over.name("--path-prefix")),
        None => (file, "path_prefix".to_owned()),
    };
    let prefix = over.path_prefix.clone().or(from_file).unwrap_or_default();
    let prefix = prefix.trim_end_matches('/').to_owned();
    if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.contains("//")) {
        return Err(file_err(
            source,
            &key,
            format!("`{prefix}` must start with / (e.g. /auth)"),
        ));
    }
    Ok(prefix)
}

/// `[timeouts]` with their defaults.
fn timeouts(t: &super::FileTimeouts) -> Timeouts {
    Timeouts {
        connect: secs(t.connect, 5),
        response: secs(t.response, 30),
        body_read: secs(t.body_read, 30),
        pool_idle: secs(t.pool_idle, 90),
        shutdown_grace: secs(t.shutdown_grace, 30),
        drain_delay: secs(t.drain_delay, 5),
        policy_poll: secs(t.policy_poll, 5),
        policy_settle: t.policy_settle.map(|v| v.0).unwrap_or(Duration::from_secs(1)),
        header_read: secs(t.header_read, 10),
        idle: secs(t.idle, 60),
        response_write: secs(t.response_write, 30),
    }
}

/// `[jwks]` with its defaults.
fn jwks(j: &super::FileJwks) -> JwksSettings {
    JwksSettings {
        refresh_interval: secs(j.refresh_interval, 300),
        min_refetch_interval: secs(j.min_refetch_interval, 10),
        max_staleness: secs(j.max_staleness, 3600),
        fetch_timeout: secs(j.fetch_timeout, 5),
        unknown_kid_ttl: secs(j.unknown_kid_ttl, 60),
        discovery: j.discovery.unwrap_or(false),
        prefetch: j.prefetch.clone().unwrap_or_default(),
    }
}

/// Settings from the file's model and the overrides, validated.
pub(crate) fn build(raw: FileConfig, file: Option<&Path>, over: &Overrides) -> Result<Settings, ConfigError> {
    let upstream = flag::<BaseUrl>(over.name("--upstream"), &over.upstream)?
        .or(raw.upstream)
        .unwrap_or_else(BaseUrl::local_default);
    let public_url = flag::<BaseUrl>(over.name("--public-url"), &over.public_url)?
        .or(raw.public_url)
        .unwrap_or_else(|| upstream.clone());
    let prefix = path_prefix(raw.path_prefix.clone(), file, over)?;
    let server_tls = raw
        .tls
        .as_ref()
        .map(tls::server_config)
        .transpose()
        .map_err(|e| file_err(file, e.key, e.message))?;
    let upstream_tls = tls::client_config(&raw.upstream_tls).map_err(|e| file_err(file, e.key, e.message))?;
    let max_in_flight = raw.max_in_flight.unwrap_or(1024);
    if max_in_flight == 0 {
        return Err(file_err(file, "max_in_flight", "must be at least 1".into()));
    }
    let positive = |key: &'static str, v: Option<usize>, default: usize| match v {
        Some(0) => Err(file_err(file, key, "must be at least 1".into())),
        v => Ok(v.unwrap_or(default)),
    };
    let max_in_flight_per_peer = positive("max_in_flight_per_peer", raw.max_in_flight_per_peer, 256)?;
    let max_connections = positive("max_connections", raw.max_connections, 4096)?;
    let max_connections_per_peer = positive("max_connections_per_peer", raw.max_connections_per_peer, 256)?;
    let settings = Settings {
        source: file.map(Path::to_owned),
        listen: flag::<Addr>(over.name("--listen"), &over.listen)?
            .or(raw.listen)
            .map(|a| a.0)
            .unwrap_or(([127, 0, 0, 1], 8000).into()),
        admin_listen: flag::<Addr>(over.name("--admin-listen"), &over.admin_listen)?
            .or(raw.admin_listen)
            .map(|a| a.0)
            .unwrap_or(([127, 0, 0, 1], 9100).into()),
        upstream,
        public_url,
        policies_explicit: over.policies.is_some() || raw.policies.is_some(),
        policies: over
            .policies
            .clone()
            .or(raw.policies)
            .unwrap_or_else(|| PathBuf::from("./policies")),
        path_prefix: prefix,
        other_paths: raw.other_paths.unwrap_or(OtherPaths::Forward),
        mode: enum_flag(over.name("--mode"), &over.mode, "enforce, shadow")?
            .or(raw.mode)
            .unwrap_or(Mode::Enforce),
        log_format: enum_flag(over.name("--log-format"), &over.log_format, "human, json")?
            .or(raw.log_format)
            .unwrap_or(LogFormat::Human),
        preserve_host: raw.preserve_host.unwrap_or(true),
        trusted_proxies: raw.trusted_proxies.unwrap_or_default(),
        max_body_bytes: raw.max_body_bytes.unwrap_or(256 * 1024),
        max_in_flight,
        max_in_flight_per_peer,
        max_connections,
        max_connections_per_peer,
        timeouts: timeouts(&raw.timeouts),
        tls: server_tls,
        upstream_tls,
        jwt: JwtSettings {
            algorithms: algorithms(raw.jwt.algorithms, file)?,
            leeway: secs(raw.jwt.leeway, 30),
            token_cache_capacity: raw.jwt.token_cache_capacity.unwrap_or(10_000),
        },
        jwks: jwks(&raw.jwks),
        realms: raw.realms,
        quota_store: super::store::build(&raw.quota_store).map_err(|(k, m)| file_err(file, k, m))?,
    };
    nonzero(&settings, file)?;
    registrars(&settings, file)?;
    Ok(settings)
}

/// Each `[realms.NAME.registrar]` names exactly one credential, completely.
fn registrars(s: &Settings, file: Option<&Path>) -> Result<(), ConfigError> {
    for (realm, r) in &s.realms {
        let Some(g) = &r.registrar else { continue };
        let key = format!("realms.{realm}.registrar");
        let secret = usize::from(g.secret_file.is_some()) + usize::from(g.secret_env.is_some());
        let why = match (&g.client_id, &g.initial_access_token_file) {
            (Some(_), Some(_)) => {
                Some("name either client_id (a service account) or initial_access_token_file, not both")
            }
            (None, None) => Some("needs client_id with secret_file or secret_env, or initial_access_token_file"),
            (Some(id), None) if id.is_empty() => Some("client_id must not be empty"),
            (Some(_), None) if secret != 1 => Some("a service account needs exactly one of secret_file and secret_env"),
            (None, Some(_)) if secret > 0 || g.token_url.is_some() || g.renew_before.is_some() => {
                Some("secret_file, secret_env, token_url and renew_before belong to a service account (client_id)")
            }
            _ => None,
        };
        if let Some(why) = why {
            return Err(file_err(file, &key, why.into()));
        }
        if g.renew_before.is_some_and(|d| d.0.is_zero()) {
            return Err(file_err(
                file,
                &format!("{key}.renew_before"),
                "must be longer than 0s".into(),
            ));
        }
    }
    Ok(())
}

/// Durations that must not be zero (a zero would fail every request or spin a loop).
fn nonzero(s: &Settings, file: Option<&Path>) -> Result<(), ConfigError> {
    let t = &s.timeouts;
    let j = &s.jwks;
    for (key, d) in [
        ("timeouts.connect", t.connect),
        ("timeouts.response", t.response),
        ("timeouts.body_read", t.body_read),
        ("timeouts.policy_poll", t.policy_poll),
        ("timeouts.header_read", t.header_read),
        ("timeouts.idle", t.idle),
        ("timeouts.response_write", t.response_write),
        ("jwks.refresh_interval", j.refresh_interval),
        ("jwks.min_refetch_interval", j.min_refetch_interval),
        ("jwks.fetch_timeout", j.fetch_timeout),
    ] {
        if d.is_zero() {
            return Err(file_err(file, key, "must be longer than 0s".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        let raw: FileConfig = parse_toml(text, Path::new("gw.toml"))?;
        build(raw, Some(Path::new("gw.toml")), &Overrides::default())
    }

    #[test]
    fn defaults_without_file() {
        let s = load(None, &Overrides::default()).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(s.admin_listen.to_string(), "127.0.0.1:9100");
        assert_eq!(s.upstream.as_string(), "http://127.0.0.1:8080");
        assert_eq!(s.public_url, s.upstream);
        assert_eq!(
            s.jwt.algorithms,
            vec![Algorithm::RS256, Algorithm::PS256, Algorithm::ES256]
        );
        assert_eq!(s.issuer_for("demo"), "http://127.0.0.1:8080/realms/demo");
    }

    #[test]
    fn issuer_is_one_url_or_a_list() {
        let one = parse("[realms.demo]\nissuer = \"https://sso.example.com/realms/demo\"\n").unwrap();
        assert_eq!(one.issuers_for("demo"), ["https://sso.example.com/realms/demo"]);
        let two =
            parse("[realms.demo]\nissuer = [\"https://a/realms/demo\", \"http://b:8080/realms/demo\"]\n").unwrap();
        assert_eq!(
            two.issuers_for("demo"),
            ["https://a/realms/demo", "http://b:8080/realms/demo"]
        );
        assert_eq!(two.issuer_for("demo"), "https://a/realms/demo");
        assert_eq!(two.issuers_for("other"), ["http://127.0.0.1:8080/realms/other"]);
        for bad in [
            "issuer = []",
            "issuer = \"sso/realms/demo\"",
            "issuer = [\"https://a/realms/demo/\"]",
            "issuer = 3",
        ] {
            assert!(parse(&format!("[realms.demo]\n{bad}\n")).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = parse("listen = \"127.0.0.1:1\"\n\n[jwks]\nmax_stalenes = \"1h\"\n").unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(4));
        assert_eq!(e.key, "max_stalenes");
        assert!(e.message.contains("unknown field"), "{}", e.message);
        assert!(e.to_string().starts_with("gw.toml:4:"));
    }

    #[test]
    fn bad_value_names_line_and_key() {
        let e = parse("[timeouts]\nconnect = \"5 parsecs\"\n").unwrap_err();
        assert_eq!(e.position.map(|p| p.0), Some(2));
        assert_eq!(e.key, "connect");
        let e = parse("listen = \"localhost\"\n").unwrap_err();
        assert_eq!(e.key, "listen");
        assert!(e.message.contains("IP:PORT"));
    }

    #[test]
    fn zero_durations_refused() {
        let e = parse("[timeouts]\npolicy_poll = \"0s\"\n").unwrap_err();
        assert_eq!(e.key, "timeouts.policy_poll");
        let e = parse("[jwks]\nrefresh_interval = \"0ms\"\n").unwrap_err();
        assert_eq!(e.key, "jwks.refresh_interval");
        assert!(parse("[timeouts]\nshutdown_grace = \"0s\"\n").is_ok());
    }

    #[test]
    fn registrar_needs_one_complete_credential() {
        let ok = parse("[realms.demo.registrar]\nclient_id = \"r\"\nsecret_env = \"S\"\n").unwrap();
        assert!(ok.realm("demo").registrar.is_some());
        assert!(parse("[realms.demo.registrar]\ninitial_access_token_file = \"/x\"\n").is_ok());
        for bad in [
            "[realms.demo.registrar]\nclient_id = \"r\"\n",
            "[realms.demo.registrar]\nclient_id = \"r\"\nsecret_env = \"S\"\nsecret_file = \"/s\"\n",
            "[realms.demo.registrar]\nclient_id = \"r\"\nsecret_env = \"S\"\ninitial_access_token_file = \"/x\"\n",
            "[realms.demo.registrar]\ninitial_access_token_file = \"/x\"\nsecret_env = \"S\"\n",
            "[realms.demo.registrar]\n",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.key, "realms.demo.registrar", "{bad}");
        }
        let e = parse("[realms.demo.registrar]\nclient_id = \"r\"\nsecret_env = \"S\"\nrenew_before = \"0s\"\n")
            .unwrap_err();
        assert_eq!(e.key, "realms.demo.registrar.renew_before");
    }

    #[test]
    fn hmac_and_none_refused_in_config() {
        let e = parse("[jwt]\nalgorithms = [\"RS256\", \"HS256\"]\n").unwrap_err();
        assert_eq!(e.key, "jwt.algorithms");
        let e = parse("[jwt]\nalgorithms = [\"none\"]\n").unwrap_err();
        assert_eq!(e.key, "jwt.algorithms");
    }

    #[test]
    fn flags_win_and_are_named() {
        let over = Overrides {
            listen: Some("127.0.0.1:7".into()),
            ..Default::default()
        };
        let s = load(None, &over).unwrap();
        assert_eq!(s.listen.port(), 7);
        let over = Overrides {
            upstream: Some("keycloak:8080".into()),
            ..Default::default()
        };
        let e = load(None, &over).unwrap_err();
        assert_eq!(e.key, "--upstream");
        let over = Overrides {
            mode: Some("loud".into()),
            ..Default::default()
        };
        assert_eq!(load(None, &over).unwrap_err().key, "--mode");
    }
}
