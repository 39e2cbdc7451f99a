//! Where the lock tables live: the schema name (validated), the qualified table names, the
//! notification channel, and the install SQL shipped in `sql/`.

use crate::error::PostgresBackendError;

/// The longest schema name accepted (the notification channel adds a few bytes, and PostgreSQL
/// cuts identifiers at 63).
pub const MAX_SCHEMA_LEN: usize = 48;

/// The install SQL as shipped (`sql/install.sql`), with the psql variable `:"schema"`.
const INSTALL_SQL: &str = include_str!("../sql/install.sql");

/// The grants of a least-privilege role as shipped (`sql/grant.sql`), with the psql variables
/// `:"schema"` and `:"role"`.
const GRANT_SQL: &str = include_str!("../sql/grant.sql");

/// The schema of the lock tables, and every name derived from it.
#[derive(Debug, Clone)]
pub(crate) struct Schema {
    /// As given.
    pub(crate) name: String,
    /// `"name".locks_leases`.
    pub(crate) leases: String,
    /// `"name".locks_fences`.
    pub(crate) fences: String,
    /// The LISTEN/NOTIFY channel of this schema's releases: `locks:name`.
    pub(crate) channel: String,
    /// The first key of the advisory locks that serialise the operations on one lock name
    /// (a hash of the schema name, so two schemas never share a lock).
    pub(crate) lock_class: i32,
}

impl Schema {
    /// Validate `name` and derive the table and channel names.
    pub(crate) fn new(name: &str) -> Result<Self, PostgresBackendError> {
        validate(name)?;
        Ok(Schema {
            name: name.to_owned(),
            leases: format!("\"{name}\".locks_leases"),
            fences: format!("\"{name}\".locks_fences"),
            channel: format!("locks:{name}"),
            lock_class: class_of(name),
        })
    }

    /// The install SQL for this schema (the statements of `sql/install.sql`).
    pub(crate) fn install_sql(&self) -> String {
        INSTALL_SQL.replace(":\"schema\"", &quoted(&self.name))
    }
}

/// The install SQL (`CREATE TABLE IF NOT EXISTS ...`) for `schema`, for an operator who
/// creates the tables ahead of time (see the crate docs on least privilege).
pub(crate) fn install_sql(schema: &str) -> Result<String, PostgresBackendError> {
    Ok(Schema::new(schema)?.install_sql())
}

/// The grants that let `role` use the lock tables of `schema` and nothing more.
pub(crate) fn grant_sql(schema: &str, role: &str) -> Result<String, PostgresBackendError> {
    validate(schema)?;
    validate_role(role)?;
    Ok(GRANT_SQL
        .replace(":\"schema\"", &quoted(schema))
        .replace(":\"role\"", &quoted(role)))
}

fn quoted(identifier: &str) -> String {
    format!("\"{identifier}\"")
}

/// A schema name: an ASCII letter or `_`, then letters, digits or `_`, at most
/// [`MAX_SCHEMA_LEN`] bytes. It is written into SQL as a quoted identifier, so these rules are
/// what keeps it from being anything else.
fn validate(name: &str) -> Result<(), PostgresBackendError> {
    check_identifier(name, MAX_SCHEMA_LEN).map_err(|reason| PostgresBackendError::InvalidOption {
        option: "schema",
        reason: format!("{name:?} {reason}"),
    })
}

fn validate_role(name: &str) -> Result<(), PostgresBackendError> {
    check_identifier(name, 63).map_err(|reason| PostgresBackendError::InvalidOption {
        option: "role",
        reason: format!("{name:?} {reason}"),
    })
}

fn check_identifier(name: &str, max: usize) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("is empty".into());
    };
    if name.len() > max {
        return Err(format!("is longer than {max} bytes"));
    }
    if !(first.is_ascii_alphabetic() || first == '_') {
        return Err("must start with an ASCII letter or `_`".into());
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err("may hold only ASCII letters, digits and `_`".into());
    }
    Ok(())
}

/// FNV-1a of the schema name, as the class key of the advisory locks.
fn class_of(name: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    i32::from_ne_bytes(h.to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        for good in ["public", "locks", "_t1", "A_b_9"] {
            assert!(Schema::new(good).is_ok(), "{good}");
        }
        let long = "s".repeat(MAX_SCHEMA_LEN + 1);
        for bad in [
            "",
            "1abc",
            "a-b",
            "a\"b",
            "a b",
            "pub;lic",
            long.as_str(),
            "é",
        ] {
            assert!(
                matches!(
                    Schema::new(bad),
                    Err(PostgresBackendError::InvalidOption {
                        option: "schema",
                        ..
                    })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn install_sql_names_the_schema_and_nothing_else() {
        let sql = install_sql("locks").unwrap();
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS \"locks\".locks_leases"));
        assert!(sql.contains("CREATE TABLE IF NOT EXISTS \"locks\".locks_fences"));
        assert!(!sql.contains(":\"schema\""));
        let grants = grant_sql("locks", "app").unwrap();
        assert!(grants.contains("TO \"app\""));
        assert!(grant_sql("locks", "app; DROP").is_err());
    }

    #[test]
    fn schemas_get_distinct_lock_classes() {
        assert_ne!(class_of("public"), class_of("locks"));
        assert_eq!(
            class_of("public"),
            Schema::new("public").unwrap().lock_class
        );
    }
}
