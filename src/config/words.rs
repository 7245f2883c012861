//! Making configuration errors readable: where a dotted key is written in a TOML text (so a
//! semantic error gets `file:line:col` like a syntax error), and serde's type names (`usize`,
//! `u32`, `a sequence`) said as what to write.

use toml::de::{DeTable, DeValue};

use super::load::line_col;

/// The 1-based (line, column) where `key` (`realms.demo.registrar.renew_before`) is written in
/// `text`: the deepest part of it that is there, or `None` when not even its first part is.
pub fn key_position(text: &str, key: &str) -> Option<(usize, usize)> {
    let doc = DeTable::parse(text).ok()?;
    let mut table: &DeTable<'_> = doc.get_ref();
    let mut found = None;
    for part in key.split('.') {
        let Some((k, v)) = table.iter().find(|(k, _)| &**k.get_ref() == part) else {
            break;
        };
        found = Some(k.span().start);
        match v.get_ref() {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found.map(|offset| line_col(text, offset))
}

/// Keys that must be whole numbers of at least 1 (validated after parsing as well).
const AT_LEAST_ONE: &[&str] = &[
    "max_in_flight",
    "max_in_flight_per_peer",
    "max_connections",
    "max_connections_per_peer",
];

/// Rewrites serde's `expected usize` (and the like) in `message`, about `key`, in words.
pub fn in_words(message: &str, key: &str) -> String {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    let whole = match AT_LEAST_ONE.contains(&leaf) {
        true => "a whole number ≥ 1 (e.g. 1024), without quotes",
        false => "a whole number ≥ 0 (e.g. 1024), without quotes",
    };
    let mut out = message.to_owned();
    for (serde, words) in [
        ("expected usize", format!("expected {whole}")),
        ("expected u64", format!("expected {whole}")),
        ("expected u32", format!("expected {whole}")),
        (
            "expected u16",
            "expected a whole number from 0 to 65535, without quotes".to_owned(),
        ),
        (
            "expected u8",
            "expected a whole number from 0 to 255, without quotes".to_owned(),
        ),
        (
            "expected a boolean",
            "expected true or false, without quotes".to_owned(),
        ),
        (
            "expected a sequence",
            "expected a list in brackets, e.g. [\"a\", \"b\"]".to_owned(),
        ),
        ("expected a string", "expected a string in double quotes".to_owned()),
    ] {
        if let Some(i) = out.find(serde) {
            let end = i + serde.len();
            // Only whole words: `expected u32` is not the start of `expected u325`.
            if !out[end..].starts_with(|c: char| c.is_ascii_alphanumeric()) {
                out.replace_range(i..end, &words);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_in_tables_headers_and_inline_tables() {
        let text = "listen = \"127.0.0.1:1\"\nmax_in_flight = 0\n\n[jwks]\nrefresh_interval = \"0s\"\n\n[realms.demo.registrar]\nclient_id = \"r\"\n";
        assert_eq!(key_position(text, "max_in_flight"), Some((2, 1)));
        assert_eq!(key_position(text, "jwks.refresh_interval"), Some((5, 1)));
        assert_eq!(key_position(text, "realms.demo.registrar"), Some((7, 14)));
        assert_eq!(key_position(text, "realms.demo.registrar.renew_before"), Some((7, 14)));
        assert_eq!(key_position(text, "timeouts.connect"), None);
        assert_eq!(
            key_position("jwt = { algorithms = [\"HS256\"] }\n", "jwt.algorithms"),
            Some((1, 9))
        );
    }

    #[test]
    fn type_names_in_words() {
        let m = in_words("invalid type: string \"many\", expected usize", "max_in_flight");
        assert_eq!(
            m,
            "invalid type: string \"many\", expected a whole number ≥ 1 (e.g. 1024), without quotes"
        );
        let m = in_words("invalid value: integer `-1`, expected usize", "max_body_bytes");
        assert!(
            m.ends_with("expected a whole number ≥ 0 (e.g. 1024), without quotes"),
            "{m}"
        );
        assert_eq!(
            in_words("invalid type: string \"yes\", expected a boolean", "preserve_host"),
            "invalid type: string \"yes\", expected true or false, without quotes"
        );
        assert_eq!(in_words("unknown field `x`", "x"), "unknown field `x`");
    }
}
