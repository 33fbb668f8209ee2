//! Reading JSON object bodies field by field, with errors that name the field (400). Absent
//! and `null` fields read as "not given".

use serde_json::{Map, Value};

use super::ApiError;

pub type Object = Map<String, Value>;

/// The body as a JSON object.
pub fn object(body: &[u8]) -> Result<Object, ApiError> {
    if let Some(key) = hermes_control::validate::duplicate_key(body) {
        return Err(ApiError::bad_request(format!(
            "invalid JSON: duplicate key {key}"
        )));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(ApiError::bad_request("invalid JSON: expected an object")),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
    }
}

/// Refuses fields other than `allowed`.
pub fn only(body: &Object, allowed: &[&str]) -> Result<(), ApiError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(ApiError::bad_request(format!("unknown field {unknown:?}"))),
        None => Ok(()),
    }
}

fn given<'a>(body: &'a Object, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| !v.is_null())
}

pub fn string(body: &Object, key: &str) -> Result<Option<String>, ApiError> {
    match given(body, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a string"))),
    }
}

/// A string field trimmed, empty when not given.
pub fn trimmed(body: &Object, key: &str) -> Result<String, ApiError> {
    Ok(string(body, key)?.unwrap_or_default().trim().to_string())
}

pub fn boolean(body: &Object, key: &str) -> Result<Option<bool>, ApiError> {
    match given(body, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a boolean"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_typed_and_named_in_errors() {
        let Value::Object(o) = json!({"a": " x ", "b": true, "n": null, "i": 1}) else {
            unreachable!()
        };
        assert_eq!(trimmed(&o, "a").unwrap(), "x");
        assert_eq!(boolean(&o, "b").unwrap(), Some(true));
        assert_eq!(string(&o, "n").unwrap(), None);
        assert_eq!(string(&o, "missing").unwrap(), None);
        assert_eq!(string(&o, "i").unwrap_err().message, "i must be a string");
        assert_eq!(boolean(&o, "a").unwrap_err().message, "a must be a boolean");
        assert!(only(&o, &["a", "b", "n"]).is_err());
        assert!(only(&o, &["a", "b", "n", "i"]).is_ok());
        assert!(object(b"[]").is_err() && object(b"{").is_err());
    }
}
