//! Lock keys: validation at the edge, prefix kept apart from the caller's name.

use std::fmt;
use std::sync::Arc;

use crate::error::LockError;

/// The longest key a caller may pass, in bytes (UTF-8), not counting the prefix.
pub const MAX_KEY_LEN: usize = 1024;

/// The longest key prefix, in bytes.
pub const MAX_PREFIX_LEN: usize = 128;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "_lock:";

/// A validated lock key: the service's prefix plus the caller's name.
///
/// Backends choose their own layout from the two parts (the Redis backend writes
/// `_lock:{name}` so that every key of one lock lands in one cluster slot; the memory
/// backend uses `prefix + name`).
///
/// Rules, checked by [`LockKey::new`]: the name is 1 to [`MAX_KEY_LEN`] bytes of UTF-8 with no
/// control characters (spaces, braces, colons and any non-ASCII text are fine); the prefix is
/// at most [`MAX_PREFIX_LEN`] bytes, with no control characters and no `{` or `}` (they would
/// change the Redis Cluster hash tag).
///
/// ```
/// use locks_core::LockKey;
/// let key = LockKey::new("_lock:", "payment:42").unwrap();
/// assert_eq!(key.full(), "_lock:payment:42");
/// assert!(LockKey::new("_lock:", "").is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct LockKey {
    prefix: Arc<str>,
    name: Arc<str>,
}

impl LockKey {
    /// Validate `prefix` and `name` and build a key.
    pub fn new(prefix: &str, name: &str) -> Result<Self, LockError> {
        validate_prefix(prefix)?;
        validate_name(name)?;
        Ok(LockKey {
            prefix: Arc::from(prefix),
            name: Arc::from(name),
        })
    }

    pub(crate) fn with_prefix(prefix: &Arc<str>, name: &str) -> Result<Self, LockError> {
        validate_name(name)?;
        Ok(LockKey {
            prefix: Arc::clone(prefix),
            name: Arc::from(name),
        })
    }

    /// The caller's name for the lock, without prefix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The service's key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix + name`.
    pub fn full(&self) -> String {
        let mut s = String::with_capacity(self.prefix.len() + self.name.len());
        s.push_str(&self.prefix);
        s.push_str(&self.name);
        s
    }
}

impl fmt::Debug for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LockKey({:?})", self.full())
    }
}

impl fmt::Display for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.prefix, self.name)
    }
}

pub(crate) fn validate_name(name: &str) -> Result<(), LockError> {
    let invalid = |reason: String| Err(LockError::InvalidKey { reason });
    if name.is_empty() {
        return invalid("the key is empty".into());
    }
    if name.len() > MAX_KEY_LEN {
        return invalid(format!(
            "the key is {} bytes long; at most {MAX_KEY_LEN} are allowed",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return invalid(format!("the key contains the control character {:?}", c));
    }
    Ok(())
}

pub(crate) fn validate_prefix(prefix: &str) -> Result<(), LockError> {
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(LockError::invalid_option(
            "key_prefix",
            format!("{} bytes long; at most {MAX_PREFIX_LEN}", prefix.len()),
        ));
    }
    if let Some(c) = prefix
        .chars()
        .find(|c| c.is_control() || *c == '{' || *c == '}')
    {
        return Err(LockError::invalid_option(
            "key_prefix",
            format!("contains {c:?}; control characters and braces are not allowed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_spaces_braces_colons_and_unicode() {
        for name in ["a b", "{tag}", "x:y:z", "zahlung-übersicht-支付", "}{"] {
            let k = LockKey::new(DEFAULT_PREFIX, name).unwrap();
            assert_eq!(k.name(), name);
            assert_eq!(k.full(), format!("_lock:{name}"));
        }
    }

    #[test]
    fn rejects_bad_names() {
        let long = "k".repeat(MAX_KEY_LEN + 1);
        for name in ["", "a\nb", "nul\0", long.as_str()] {
            assert!(matches!(
                LockKey::new("p:", name),
                Err(LockError::InvalidKey { .. })
            ));
        }
        assert!(LockKey::new("p:", &"k".repeat(MAX_KEY_LEN)).is_ok());
    }

    #[test]
    fn rejects_bad_prefixes() {
        for p in ["{x}", "a\tb", &"p".repeat(MAX_PREFIX_LEN + 1)] {
            assert!(matches!(
                LockKey::new(p, "k"),
                Err(LockError::InvalidOptions {
                    option: "key_prefix",
                    ..
                })
            ));
        }
        assert!(LockKey::new("", "k").is_ok());
    }
}
