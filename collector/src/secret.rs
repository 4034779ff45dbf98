//! [`SensitiveString`]: a configuration string (password, token) that never shows up in logs,
//! `Debug` output or error messages; like Vector's `SensitiveString`
//! (vectordotdev/vector `lib/vector-common/src/sensitive_string.rs`).

use std::fmt;

use serde::Deserialize;

/// What `Debug` and `Display` print instead of the value.
pub const REDACTED: &str = "**REDACTED**";

/// A secret read from configuration. Deserializes from a plain string (serde transparent);
/// `Debug` and `Display` print `**REDACTED**`; [`SensitiveString::expose`] gives the value
/// to the one place that needs it.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SensitiveString(String);

impl SensitiveString {
    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SensitiveString {
    fn from(s: String) -> Self {
        SensitiveString(s)
    }
}

impl From<&str> for SensitiveString {
    fn from(s: &str) -> Self {
        SensitiveString(s.to_string())
    }
}

impl fmt::Debug for SensitiveString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SensitiveString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sasl {
        username: String,
        password: SensitiveString,
    }

    #[test]
    fn deserializes_from_a_plain_string_and_never_prints_it() {
        let s: Sasl = toml::from_str("username = 'app'\npassword = 'hunter2'\n").unwrap();
        assert_eq!(s.password.expose(), "hunter2");
        assert_eq!(s.username, "app");
        let debug = format!("{s:?}");
        assert_eq!(debug, "Sasl { username: \"app\", password: **REDACTED** }");
        assert_eq!(format!("{}", s.password), "**REDACTED**");
        assert_eq!(format!("{:#?}", s.password), "**REDACTED**");
        let j: SensitiveString = serde_json::from_str("\"tok\"").unwrap();
        assert_eq!(j, SensitiveString::from("tok"));
        assert!(serde_json::from_str::<SensitiveString>("42").is_err());
        assert!(SensitiveString::default().is_empty());
    }
}
