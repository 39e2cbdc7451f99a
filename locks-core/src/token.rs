//! Owner tokens: who holds a lease.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The identity of one lease holder: a random UUID v4 (122 random bits from a cryptographically
/// secure generator: `uuid`'s `fast-rng`, i.e. `rand`'s thread-local ChaCha generator seeded and
/// periodically reseeded from the operating system), new for every acquisition and never
/// reused.
///
/// Stores compare it on every release and extend, so nobody can release or extend a lease
/// they do not hold.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OwnerToken(Uuid);

impl OwnerToken {
    /// A fresh random token.
    pub fn new() -> Self {
        OwnerToken(Uuid::new_v4())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The token in its canonical 36-character hyphenated form, as stores keep it.
    pub fn to_hyphenated(&self) -> String {
        self.0.hyphenated().to_string()
    }
}

impl Default for OwnerToken {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for OwnerToken {
    fn from(u: Uuid) -> Self {
        OwnerToken(u)
    }
}

impl fmt::Display for OwnerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for OwnerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerToken({})", self.0.hyphenated())
    }
}

/// The string was not a UUID.
#[derive(Debug, Clone, thiserror::Error)]
#[error("not an owner token (expected a UUID): {0}")]
pub struct ParseTokenError(String);

impl FromStr for OwnerToken {
    type Err = ParseTokenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(OwnerToken)
            .map_err(|e| ParseTokenError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_v4_unique_and_round_trip() {
        let a = OwnerToken::new();
        let b = OwnerToken::new();
        assert_ne!(a, b);
        assert_eq!(a.as_uuid().get_version_num(), 4);
        let parsed: OwnerToken = a.to_hyphenated().parse().unwrap();
        assert_eq!(parsed, a);
        assert!("not-a-token".parse::<OwnerToken>().is_err());
    }
}
