//! The permissions file: users, their token (hashed at load) and their per-table grants.
//! [`Permissions::authenticate`] turns a bearer token into a [`Caller`] that checks table access.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::grants::{Access, Caller, Grant, Scope};
use super::names::Pattern;
use super::outline::Outline;
use crate::error::{Error, Location, Result};
use crate::pipeline::spec::yaml_error;

/// The lowercase hex SHA-256 of a token, as written in `token_sha256`.
pub fn hash_token(token: &str) -> String {
    hex::encode(digest(token))
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Overwrites a string that held a secret before it is freed (best effort: copies made by the
/// YAML parser or the allocator are out of reach).
fn wipe(secret: String) {
    let mut bytes = secret.into_bytes();
    bytes.fill(0);
    std::hint::black_box(&bytes);
}

/// A user of the permissions file. The token is kept only as its SHA-256.
struct User {
    name: String,
    token_hash: [u8; 32],
    grants: Arc<[Grant]>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("grants", &self.grants)
            .finish()
    }
}

/// The users of one permissions file.
#[derive(Debug, Default)]
pub struct Permissions {
    users: Vec<User>,
}

/// `config/permissions.yaml`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    /// The API's users.
    #[serde(default)]
    users: Vec<UserSpec>,
}

/// One user: a name, a token (or its hash) and grants.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSpec {
    /// Recorded in the audit log and in job history.
    name: String,
    /// The bearer token, in plain text. Exactly one of `token` and `token_sha256`.
    #[serde(default)]
    token: Option<String>,
    /// The lowercase or uppercase hex SHA-256 of the bearer token.
    #[serde(default)]
    token_sha256: Option<String>,
    /// Grants; none = the user can authenticate but touch no table.
    #[serde(default)]
    permissions: Vec<GrantSpec>,
}

/// One grant of a user: exactly one of `table` and `lakehouse_table`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantSpec {
    /// A SQL Server table: `schema.table`, `table` (schema `dbo`), `schema.*` or `*`.
    #[serde(default)]
    table: Option<String>,
    /// A lakehouse table: `catalog.schema.table`, `catalog.schema.*`, `catalog.*` or `*`.
    #[serde(default)]
    lakehouse_table: Option<String>,
    /// `read`, `write` or `read_write`.
    access: Access,
    /// The most rows one delete may remove; absent = no limit, 0 = no deletes.
    #[serde(default)]
    max_delete_rows: Option<u64>,
}

impl Permissions {
    /// No users: every token is refused.
    pub fn empty() -> Self {
        Permissions::default()
    }

    /// Reads and validates a permissions file. Errors are [`Error::Spec`] naming file, line and user.
    pub fn load(path: &Path) -> Result<Permissions> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let parsed = Permissions::parse(path, &text);
        wipe(text);
        parsed
    }

    /// Validates the text of a permissions file; `file` is used in error locations only.
    pub fn parse(file: &Path, text: &str) -> Result<Permissions> {
        let blank = text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#') || l == "---"
        });
        if blank {
            // Also what a reload sees in the middle of a non-atomic save: refused, not "no users".
            return Err(Error::Spec {
                location: Location::file(file),
                message:
                    "the file is empty; expected `users:` (write `users: []` to refuse every token)"
                        .into(),
            });
        }
        let spec: FileSpec = serde_yaml::from_str(text).map_err(|e| yaml_error(file, text, &e))?;
        let outline = Outline::new(text);
        let fail = |line: Option<usize>, message: String| Error::Spec {
            location: Location::at(file, line),
            message,
        };
        let empty_hash = digest("");
        let mut users: Vec<User> = Vec::with_capacity(spec.users.len());
        let mut names: HashMap<String, usize> = HashMap::new();
        for (i, user) in spec.users.into_iter().enumerate() {
            let UserSpec {
                name,
                token,
                token_sha256,
                permissions,
            } = user;
            if name.trim().is_empty() {
                return Err(fail(
                    outline.user_field(i, "name"),
                    format!("user #{}: `name` is empty", i + 1),
                ));
            }
            if let Some(first) = names.insert(name.to_lowercase(), i) {
                return Err(fail(
                    outline.user_field(i, "name"),
                    format!(
                        "user `{name}` is declared twice (first at line {}); names must be unique",
                        outline
                            .user(first)
                            .map_or_else(|| "?".to_string(), |l| l.to_string())
                    ),
                ));
            }
            let (token_hash, field) = match (token, token_sha256) {
                (Some(token), None) => {
                    if token.is_empty() {
                        return Err(fail(
                            outline.user_field(i, "token"),
                            format!("user `{name}`: `token` is empty"),
                        ));
                    }
                    let hash = digest(&token);
                    wipe(token);
                    (hash, "token")
                }
                (None, Some(hex_hash)) => {
                    let mut hash = [0u8; 32];
                    if hex_hash.len() != 64 || hex::decode_to_slice(&hex_hash, &mut hash).is_err() {
                        return Err(fail(
                            outline.user_field(i, "token_sha256"),
                            format!(
                                "user `{name}`: `token_sha256` must be 64 hex digits (the SHA-256 of the token)"
                            ),
                        ));
                    }
                    if hash == empty_hash {
                        return Err(fail(
                            outline.user_field(i, "token_sha256"),
                            format!("user `{name}`: `token_sha256` is the hash of an empty token"),
                        ));
                    }
                    (hash, "token_sha256")
                }
                (Some(token), Some(_)) => {
                    wipe(token);
                    return Err(fail(
                        outline.user_field(i, "token_sha256"),
                        format!(
                            "user `{name}` has both `token` and `token_sha256`; keep exactly one"
                        ),
                    ));
                }
                (None, None) => {
                    return Err(fail(
                        outline.user(i),
                        format!("user `{name}` has neither `token` nor `token_sha256`; add one"),
                    ));
                }
            };
            if let Some(other) = users
                .iter()
                .find(|u| bool::from(u.token_hash.ct_eq(&token_hash)))
            {
                return Err(fail(
                    outline.user_field(i, field),
                    format!(
                        "user `{name}` has the same token as user `{}`; every user needs its own token",
                        other.name
                    ),
                ));
            }
            let mut grants: Vec<Grant> = Vec::with_capacity(permissions.len());
            for (j, g) in permissions.into_iter().enumerate() {
                let (scope, field, text) = match (g.table, g.lakehouse_table) {
                    (Some(t), None) => (Scope::Sqlserver, "table", t),
                    (None, Some(t)) => (Scope::Lakehouse, "lakehouse_table", t),
                    (a, _) => {
                        return Err(fail(
                            outline.grant_field(i, j, "table"),
                            format!(
                                "user `{name}`: grant #{} needs exactly one of `table` (SQL Server) and `lakehouse_table`{}",
                                j + 1,
                                if a.is_some() { ", not both" } else { "" }
                            ),
                        ));
                    }
                };
                let parsed = match scope {
                    Scope::Sqlserver => Pattern::sqlserver(&text),
                    Scope::Lakehouse => Pattern::lakehouse(&text),
                };
                let pattern = parsed.map_err(|e| {
                    fail(
                        outline.grant_field(i, j, field),
                        format!(
                            "user `{name}`: invalid table `{text}` in `permissions`: {}",
                            e.reason
                        ),
                    )
                })?;
                if let Some(first) = grants
                    .iter()
                    .position(|o| o.scope == scope && o.pattern.key == pattern.key)
                {
                    return Err(fail(
                        outline.grant_field(i, j, field),
                        format!(
                            "user `{name}`: table `{}` is granted twice (also grant #{}); merge the grants",
                            pattern.shown,
                            first + 1
                        ),
                    ));
                }
                grants.push(Grant {
                    table: pattern.shown.clone(),
                    scope,
                    access: g.access,
                    max_delete_rows: g.max_delete_rows,
                    pattern,
                });
            }
            users.push(User {
                name,
                token_hash,
                grants: grants.into(),
            });
        }
        Ok(Permissions { users })
    }

    /// The caller whose token this is. The token is hashed once and compared with every user's
    /// hash in constant time, without stopping at a match, so timing does not reveal which user.
    pub fn authenticate(&self, bearer_token: &str) -> Option<Caller> {
        if bearer_token.is_empty() {
            return None;
        }
        let presented = digest(bearer_token);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, user) in self.users.iter().enumerate() {
            let eq = presented.ct_eq(&user.token_hash);
            index = u64::conditional_select(&index, &(i as u64), eq);
            found |= eq;
        }
        if !bool::from(found) {
            return None;
        }
        let user = usize::try_from(index)
            .ok()
            .and_then(|i| self.users.get(i))?;
        Some(Caller {
            name: user.name.clone(),
            grants: Arc::clone(&user.grants),
        })
    }

    /// The user with exactly this name, as a caller (for events, which name their user instead of
    /// presenting a token).
    pub fn caller(&self, name: &str) -> Option<Caller> {
        self.users.iter().find(|u| u.name == name).map(|u| Caller {
            name: u.name.clone(),
            grants: Arc::clone(&u.grants),
        })
    }

    /// The number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users (every request is refused).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The users' names, in file order.
    pub fn user_names(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|u| u.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::grants::{Denied, TableRef};
    use crate::auth::names::LakehouseTable;

    const FILE: &str = "config/permissions.yaml";

    fn parse(text: &str) -> Result<Permissions> {
        Permissions::parse(Path::new(FILE), text)
    }

    fn err(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    fn sample() -> Permissions {
        let hashed = hash_token("hashed-token").to_uppercase();
        parse(&format!(
            "\
users:
  - name: calibration-team
    token: plain-token
    permissions:
      - table: dbo.CalibrationResults
        access: read_write
        max_delete_rows: 10000
      - table: Sales
        access: read
  - name: analysts
    token_sha256: \"{hashed}\"
    permissions:
      - table: \"*\"
        access: read
      - table: staging.*
        access: read_write
        max_delete_rows: 100
      - table: \"[staging].[Locked]\"
        access: read
      - table: staging.Big
        access: write
"
        ))
        .unwrap()
    }

    #[test]
    fn hash_token_is_lowercase_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn plain_and_hashed_tokens_authenticate() {
        let p = sample();
        assert_eq!(p.len(), 2);
        assert_eq!(
            p.authenticate("plain-token").unwrap().name,
            "calibration-team"
        );
        assert_eq!(p.authenticate("hashed-token").unwrap().name, "analysts");
        assert_eq!(p.caller("analysts").unwrap().grants().len(), 4);
        assert!(p.caller("Analysts").is_none());
        assert_eq!(
            p.user_names().collect::<Vec<_>>(),
            ["calibration-team", "analysts"]
        );
    }

    #[test]
    fn wrong_token_fails() {
        let p = sample();
        assert!(p.authenticate("plain-token ").is_none());
        assert!(p.authenticate("").is_none());
        assert!(p.authenticate(&hash_token("hashed-token")).is_none());
        assert!(Permissions::empty().authenticate("plain-token").is_none());
    }

    #[test]
    fn writing_every_table_needs_a_star_grant_no_other_grant_narrows() {
        let everything = parse(
            "users:\n  - name: ops\n    token: t1\n    permissions:\n      - table: \"*\"\n        access: read_write\n      - table: dbo.Audit\n        access: write\n",
        )
        .unwrap();
        assert!(
            everything
                .authenticate("t1")
                .unwrap()
                .may_write_every_table()
        );
        let narrowed = parse(
            "users:\n  - name: ops\n    token: t1\n    permissions:\n      - table: \"*\"\n        access: read_write\n      - table: dbo.Audit\n        access: read\n",
        )
        .unwrap();
        assert!(!narrowed.authenticate("t1").unwrap().may_write_every_table());
        let p = sample();
        assert!(
            !p.authenticate("plain-token")
                .unwrap()
                .may_write_every_table()
        );
        assert!(
            !p.authenticate("hashed-token")
                .unwrap()
                .may_write_every_table()
        );
        let nothing =
            parse("users:\n  - name: idle\n    token: t2\n    permissions: []\n").unwrap();
        assert!(!nothing.authenticate("t2").unwrap().may_write_every_table());
    }

    #[test]
    fn read_only_caller_refused_write() {
        let c = sample().authenticate("plain-token").unwrap();
        assert!(c.check("dbo.Sales", Access::Read).is_ok());
        let e = c.check("dbo.Sales", Access::Write).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`calibration-team` may not write dbo.Sales (has read)"
        );
        let e = c.check("dbo.Other", Access::Read).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`calibration-team` has no access to dbo.Other (needs read)"
        );
        let e = c.check("Sales", Access::ReadWrite).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`calibration-team` may not read and write dbo.Sales (has read)"
        );
        let e = c.check("dbo.Sales; DROP", Access::Read).unwrap_err();
        assert!(matches!(e, Denied::InvalidTable { .. }), "{e}");
    }

    #[test]
    fn delete_limit() {
        let c = sample().authenticate("plain-token").unwrap();
        assert_eq!(c.max_delete_rows("dbo.CalibrationResults"), Some(10000));
        assert!(c.check_delete("dbo.CalibrationResults", 10000).is_ok());
        let e = c.check_delete("dbo.CalibrationResults", 10001).unwrap_err();
        assert_eq!(
            e.to_string(),
            "`calibration-team` may delete at most 10000 rows of dbo.CalibrationResults; this would delete 10001"
        );
        assert!(matches!(
            c.check_delete("dbo.Sales", 1),
            Err(Denied::Insufficient { .. })
        ));
        let a = sample().authenticate("hashed-token").unwrap();
        assert_eq!(a.max_delete_rows("staging.Big"), None);
        assert!(a.check_delete("staging.Big", u64::MAX).is_ok());
    }

    #[test]
    fn wildcards_and_specificity() {
        let a = sample().authenticate("hashed-token").unwrap();
        // `*` gives read on everything, but not write.
        assert!(a.check("dbo.Anything", Access::Read).is_ok());
        assert!(a.check("Anything", Access::Read).is_ok());
        // A three-part name needs the configured database to be resolved.
        assert!(a.check("db.dbo.Anything", Access::Read).is_err());
        assert!(matches!(
            a.check("dbo.Anything", Access::Write),
            Err(Denied::Insufficient {
                has: Access::Read,
                ..
            })
        ));
        // `staging.*` beats `*`.
        assert!(a.check("staging.Foo", Access::ReadWrite).is_ok());
        assert_eq!(a.max_delete_rows("STAGING.foo"), Some(100));
        // An exact grant beats `staging.*`, even when it grants less.
        assert_eq!(
            a.check("staging.Locked", Access::Write)
                .unwrap_err()
                .to_string(),
            "`analysts` may not write staging.Locked (has read)"
        );
        assert_eq!(a.max_delete_rows("staging.Locked"), None);
        assert!(a.check("staging.Big", Access::Write).is_ok());
        assert!(a.check("staging.Big", Access::Read).is_err());
        // `staging.*` does not reach three-part names.
        assert_eq!(a.max_delete_rows("db.staging.Foo"), None);
    }

    #[test]
    fn table_names_are_normalised() {
        let c = sample().authenticate("plain-token").unwrap();
        for name in [
            "dbo.CalibrationResults",
            "CalibrationResults",
            "calibrationresults",
            "[dbo].[CalibrationResults]",
            "[DBO].calibrationRESULTS",
            "\"dbo\".\"CalibrationResults\"",
        ] {
            assert!(c.check(name, Access::Write).is_ok(), "{name}");
            assert_eq!(c.max_delete_rows(name), Some(10000), "{name}");
        }
        assert!(c.check("other.CalibrationResults", Access::Read).is_err());
        // Spaces at the edge of a part are refused, not trimmed: SQL Server would keep them.
        for name in [
            " dbo.CalibrationResults",
            "dbo .CalibrationResults",
            "[CalibrationResults ]",
        ] {
            assert!(
                matches!(
                    c.check(name, Access::Write),
                    Err(Denied::InvalidTable { .. })
                ),
                "{name}"
            );
        }
        assert_eq!(c.grants()[1].table, "dbo.Sales");
    }

    #[test]
    fn lakehouse_grants_cover_only_lakehouse_tables() {
        let p = parse(
            "users:\n  - name: a\n    token: t\n    permissions:\n      - {table: \"*\", access: read_write}\n      - {lakehouse_table: main.sales.*, access: read}\n      - {lakehouse_table: main.sales.secret, access: write}\n",
        )
        .unwrap();
        let c = p.authenticate("t").unwrap();
        let lake = |name: &str| TableRef::Lakehouse(LakehouseTable::parse(name).unwrap());
        assert!(
            c.check_table(&lake("MAIN.sales.orders"), Access::Read)
                .is_ok()
        );
        assert!(
            c.check_table(&lake("main.sales.orders"), Access::Write)
                .is_err()
        );
        assert!(
            c.check_table(&lake("main.sales.secret"), Access::Read)
                .is_err()
        );
        assert!(c.check_table(&lake("main.hr.pay"), Access::Read).is_err());
        // The form job records keep reads back to the same table.
        assert!(
            c.check("lakehouse table main.sales.orders", Access::Read)
                .is_ok()
        );
        assert!(
            c.check("lakehouse table main.hr.pay", Access::Read)
                .is_err()
        );
        let e = err(
            "users:\n  - name: a\n    token: t\n    permissions:\n      - {table: x, lakehouse_table: y, access: read}\n",
        );
        assert!(e.contains("exactly one of `table`"), "{e}");
    }

    #[test]
    fn debug_never_prints_tokens() {
        let p = sample();
        let debug = format!("{p:?} {:?}", p.authenticate("plain-token").unwrap());
        assert!(!debug.contains("plain-token"), "{debug}");
        assert!(!debug.contains(&hash_token("plain-token")), "{debug}");
        assert!(!debug.contains(&hash_token("hashed-token")), "{debug}");
        assert!(
            !debug
                .to_lowercase()
                .contains(&hash_token("hashed-token")[..16])
        );
    }

    #[test]
    fn both_or_neither_token() {
        let e = err(
            "users:\n  - name: a\n    token: x\n    token_sha256: \"00\"\n    permissions: []\n",
        );
        assert_eq!(
            e,
            "config/permissions.yaml:4: user `a` has both `token` and `token_sha256`; keep exactly one"
        );
        let e = err("users:\n  - name: a\n    permissions: []\n");
        assert_eq!(
            e,
            "config/permissions.yaml:2: user `a` has neither `token` nor `token_sha256`; add one"
        );
    }

    #[test]
    fn bad_hash() {
        for bad in ["abc", &"g".repeat(64), &format!("{}0", hash_token("x"))] {
            let e = err(&format!(
                "users:\n  - name: a\n    token_sha256: \"{bad}\"\n"
            ));
            assert!(
                e.starts_with(
                    "config/permissions.yaml:3: user `a`: `token_sha256` must be 64 hex digits"
                ),
                "{e}"
            );
        }
        let e = err(&format!(
            "users:\n  - name: a\n    token_sha256: {}\n",
            hash_token("")
        ));
        assert!(e.starts_with("config/permissions.yaml:3: "), "{e}");
        assert!(e.contains("empty token"), "{e}");
    }

    #[test]
    fn duplicate_names_and_tokens() {
        let e = err("users:\n  - name: a\n    token: x\n  - name: A\n    token: y\n");
        assert_eq!(
            e,
            "config/permissions.yaml:4: user `A` is declared twice (first at line 2); names must be unique"
        );
        let e = err(&format!(
            "users:\n  - name: a\n    token: x\n  - name: b\n    token_sha256: {}\n",
            hash_token("x")
        ));
        assert_eq!(
            e,
            "config/permissions.yaml:5: user `b` has the same token as user `a`; every user needs its own token"
        );
    }

    #[test]
    fn empty_token_and_name() {
        let e = err("users:\n  - name: a\n    token: \"\"\n");
        assert_eq!(e, "config/permissions.yaml:3: user `a`: `token` is empty");
        let e = err("users:\n  - name: \"\"\n    token: x\n");
        assert_eq!(e, "config/permissions.yaml:2: user #1: `name` is empty");
    }

    #[test]
    fn invalid_table() {
        let e = err(
            "users:\n  - name: a\n    token: x\n    permissions:\n      - access: read\n        table: \"dbo.x; drop\"\n",
        );
        assert!(
            e.starts_with(
                "config/permissions.yaml:6: user `a`: invalid table `dbo.x; drop` in `permissions`: "
            ),
            "{e}"
        );
        for bad in ["*.x", "a.b.*", "", "x.*.y"] {
            let e = err(&format!(
                "users:\n  - name: a\n    token: x\n    permissions:\n      - table: \"{bad}\"\n        access: read\n"
            ));
            assert!(
                e.starts_with("config/permissions.yaml:5: user `a`: invalid table"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn empty_file() {
        for text in ["", "# nothing yet\n\n"] {
            assert_eq!(
                err(text),
                "config/permissions.yaml: the file is empty; expected `users:` (write `users: []` to refuse every token)"
            );
        }
        assert!(parse("users: []\n").unwrap().is_empty());
    }

    #[test]
    fn duplicate_grant() {
        let e = err(
            "users:\n  - name: a\n    token: x\n    permissions:\n      - {table: Sales, access: read}\n      - {table: \"[dbo].[sales]\", access: write}\n",
        );
        assert_eq!(
            e,
            "config/permissions.yaml:6: user `a`: table `dbo.sales` is granted twice (also grant #1); merge the grants"
        );
    }

    #[test]
    fn bad_access_and_unknown_fields() {
        let e = err(
            "users:\n  - name: a\n    token: x\n    permissions:\n      - table: t\n        access: readwrite\n",
        );
        assert!(e.starts_with("config/permissions.yaml:6"), "{e}");
        assert!(e.contains("unknown variant `readwrite`"), "{e}");
        assert!(e.contains("read_write"), "{e}");
        let e = err("users:\n  - name: a\n    tokn: x\n");
        assert!(e.starts_with("config/permissions.yaml:3"), "{e}");
        assert!(e.contains("unknown field `tokn`"), "{e}");
        let e = err(
            "users:\n  - name: a\n    token: x\n    permissions:\n      - table: t\n        access: read\n        max_delete_rows: -1\n",
        );
        assert!(e.starts_with("config/permissions.yaml:7"), "{e}");
    }
}
