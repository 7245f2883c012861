//! How Keycloak reads JSON values, modelled exactly where policy depends on them: Jackson's
//! coercions into `Boolean` fields and into the `Map<String, String>` of client attributes,
//! Java's `Boolean.parseBoolean`, and "does this body change what the client already has".

use serde_json::Value;

/// A JSON value Keycloak's Jackson cannot bind to the member's type (Keycloak answers 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unbindable;

/// What Jackson makes of a JSON value bound to a `java.lang.Boolean` field of a
/// representation: `Ok(None)` for null, `Err` where Keycloak answers 400.
///
/// Jackson 2 (as in Keycloak 26) accepts `true`/`false`; the strings `true`, `True`, `TRUE`,
/// `false`, `False`, `FALSE` (after trimming), the empty string and `"null"` as null; integers
/// (`0` is false, any other is true). Anything else is refused.
pub fn jackson_bool(v: &Value) -> Result<Option<bool>, Unbindable> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.as_i64() != Some(0))),
        Value::String(s) => match s.trim() {
            "true" | "True" | "TRUE" => Ok(Some(true)),
            "false" | "False" | "FALSE" => Ok(Some(false)),
            "" | "null" => Ok(None),
            _ => Err(Unbindable),
        },
        _ => Err(Unbindable),
    }
}

/// What Jackson stores for a JSON value bound to a `String` (an attribute value):
/// `Ok(None)` for null, `Err` for arrays and objects (Keycloak answers 400).
pub fn jackson_string(v: &Value) -> Result<Option<String>, Unbindable> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(Unbindable),
    }
}

/// Java's `Boolean.parseBoolean`: `"true"` in any case (`String.equalsIgnoreCase`), nothing
/// else (no trimming).
pub fn parse_boolean(s: &str) -> bool {
    let units: Vec<u16> = s.encode_utf16().collect();
    units.len() == 4 && s.chars().zip("true".chars()).all(|(a, b)| java_eq_ignore_case(a, b))
}

/// `Character.toUpperCase` / `toLowerCase` comparison as `String.equalsIgnoreCase` does it.
fn java_eq_ignore_case(a: char, b: char) -> bool {
    let upper = |c: char| {
        let mut u = c.to_uppercase();
        match (u.next(), u.next()) {
            (Some(x), None) => x,
            _ => c,
        }
    };
    let lower = |c: char| {
        let mut l = c.to_lowercase();
        match (l.next(), l.next()) {
            (Some(x), None) => x,
            _ => c,
        }
    };
    a == b || upper(a) == upper(b) || lower(upper(a)) == lower(upper(b))
}

/// Whether two JSON values mean the same to Keycloak: equal after Jackson's scalar coercion
/// (`true` and `"true"`, `1` and `"1"`), objects key by key, arrays element by element.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same(v, w)),
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        _ => jackson_string(a) == jackson_string(b),
    }
}

/// Whether writing `body` over `current` changes nothing: every member of a body object is in
/// the current one with the same value (members the body leaves out stay as they are), and
/// every element of a body array is already in the current array (an update that drops
/// elements only removes). Scalars compare with `same`.
pub fn unchanged(body: &Value, current: &Value) -> bool {
    match (body, current) {
        (Value::Object(b), Value::Object(c)) => b.iter().all(|(k, v)| c.get(k).is_some_and(|w| same(v, w))),
        (Value::Array(b), Value::Array(c)) => b.iter().all(|v| c.iter().any(|w| same(v, w))),
        _ => same(body, current),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn jackson_booleans() {
        for t in [
            json!(true),
            json!("true"),
            json!("TRUE"),
            json!("True"),
            json!(" true "),
            json!(1),
            json!(-3),
        ] {
            assert_eq!(jackson_bool(&t), Ok(Some(true)), "{t}");
        }
        for f in [json!(false), json!("false"), json!("FALSE"), json!(0)] {
            assert_eq!(jackson_bool(&f), Ok(Some(false)), "{f}");
        }
        for n in [json!(null), json!(""), json!("null")] {
            assert_eq!(jackson_bool(&n), Ok(None), "{n}");
        }
        for bad in [json!("tRUE"), json!("yes"), json!(1.5), json!([true]), json!({})] {
            assert!(jackson_bool(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn java_parse_boolean() {
        for t in ["true", "TRUE", "True", "tRuE"] {
            assert!(parse_boolean(t), "{t}");
        }
        for f in [" true", "true ", "yes", "1", "", "truee", "t"] {
            assert!(!parse_boolean(f), "{f}");
        }
    }

    #[test]
    fn attribute_strings() {
        assert_eq!(jackson_string(&json!(true)), Ok(Some("true".into())));
        assert_eq!(jackson_string(&json!(12)), Ok(Some("12".into())));
        assert_eq!(jackson_string(&json!(null)), Ok(None));
        assert!(jackson_string(&json!(["true"])).is_err());
    }

    #[test]
    fn unchanged_compares_as_keycloak_reads() {
        assert!(unchanged(&json!({"a": true}), &json!({"a": "true", "b": "x"})));
        assert!(!unchanged(&json!({"a": "TRUE"}), &json!({"a": "true"})));
        assert!(!unchanged(&json!({"c": "1"}), &json!({"a": "1"})));
        let m = json!({"name": "m", "config": {"claim.value": "y"}});
        assert!(unchanged(&json!([m.clone()]), &json!([m.clone(), {"name": "n"}])));
        assert!(!unchanged(
            &json!([{"name": "m", "config": {"claim.value": "z"}}]),
            &json!([m])
        ));
        assert!(unchanged(&json!(true), &json!("true")));
    }
}
