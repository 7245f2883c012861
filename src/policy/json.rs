//! Strict JSON for registration bodies: valid UTF-8, one object, no duplicate keys, bounded
//! nesting. serde_json alone keeps the last of two duplicate keys, which lets a body say one
//! thing to the gateway and another to Keycloak; here that is an error.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Detail, Reason, Refusal};

/// Deepest nesting accepted (objects and arrays).
pub const MAX_DEPTH: usize = 32;

struct Strict {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(de::Error::custom(format_args!("nesting deeper than {MAX_DEPTH}")));
        }
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict { depth })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let depth = self.depth + 1;
        if depth > MAX_DEPTH {
            return Err(de::Error::custom(format_args!("nesting deeper than {MAX_DEPTH}")));
        }
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            let v = map.next_value_seed(Strict { depth })?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parses a registration body into a JSON object, refusing anything ambiguous.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    let text = std::str::from_utf8(body).map_err(|e| {
        Refusal::new(
            Reason::BodyNotJson,
            format!(
                "The request body is not valid UTF-8 (bad byte at offset {}).",
                e.valid_up_to()
            ),
        )
    })?;
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = Strict { depth: 0 }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Refusal::new(
            Reason::BodyWrongType,
            "The request body must be a JSON object.",
        )),
        Err(e) => {
            let msg = e.to_string();
            let reason = if msg.contains("duplicate key") {
                Reason::BodyDuplicateKey
            } else if msg.contains("nesting deeper") {
                Reason::BodyTooDeep
            } else {
                Reason::BodyNotJson
            };
            Err(
                Refusal::new(reason, format!("The request body is not acceptable JSON: {msg}."))
                    .detail(Detail::Line, e.line())
                    .detail(Detail::Column, e.column()),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_objects() {
        let m = parse_object(br#"{"a": [1, {"b": null}], "c": "d"}"#).unwrap();
        assert_eq!(m["c"], "d");
    }

    #[test]
    fn refuses_ambiguity() {
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#).unwrap_err().reason,
            Reason::BodyDuplicateKey
        );
        assert_eq!(
            parse_object(br#"{"x":{"a":1,"a":2}}"#).unwrap_err().reason,
            Reason::BodyDuplicateKey
        );
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(parse_object(deep.as_bytes()).unwrap_err().reason, Reason::BodyTooDeep);
        let very_deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            parse_object(very_deep.as_bytes()).unwrap_err().reason,
            Reason::BodyTooDeep
        );
        assert_eq!(
            parse_object(b"{\"a\":\"\xff\"}").unwrap_err().reason,
            Reason::BodyNotJson
        );
        assert_eq!(parse_object(b"[1]").unwrap_err().reason, Reason::BodyWrongType);
        assert_eq!(parse_object(b"{\"a\":1} x").unwrap_err().reason, Reason::BodyNotJson);
        assert_eq!(parse_object(b"").unwrap_err().reason, Reason::BodyNotJson);
    }
}
