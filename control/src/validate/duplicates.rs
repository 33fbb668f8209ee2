//! Refusing JSON that names a member twice. `serde_json` keeps the last of two equal keys, a
//! typed parse refuses the document, and other JSON parsers keep the first: a document with
//! duplicates means different things to different readers, so the API takes none.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

/// The JSON path of the first member named twice in `body`, if any. Not a JSON validator:
/// unparseable input answers `None` and is left to the real parse.
pub fn duplicate_key(body: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    match (Walk {
        path: String::new(),
    })
    .deserialize(&mut de)
    {
        Err(e) => e
            .to_string()
            .strip_prefix("duplicate key ")
            .map(|rest| rest.split(" at line").next().unwrap_or(rest).to_string()),
        Ok(()) => None,
    }
}

struct Walk {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if !seen.insert(key) {
                return Err(A::Error::custom(format!("duplicate key {path}")));
            }
            map.next_value_seed(Walk { path })?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Walk {
                path: format!("{}[{i}]", self.path),
            })?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_duplicate_is_named_by_its_path() {
        assert_eq!(duplicate_key(br#"{"a":1,"b":{"c":[1,{"d":2}]}}"#), None);
        assert_eq!(duplicate_key(br#"{"a":1,"a":2}"#).as_deref(), Some("a"));
        assert_eq!(
            duplicate_key(br#"{"routes":[{"name":"x"},{"uri":"/","uri":"/admin"}]}"#).as_deref(),
            Some("routes[1].uri")
        );
        assert_eq!(duplicate_key(b"{not json"), None);
        assert_eq!(duplicate_key(b"[]"), None);
    }
}
