//! Who may change an account's settings. Exchange's sign-in tells ibex the account and the user, not whether that
//! user administers the account, and any user who can open the context card can also start a sign-in for the
//! configuration page. So the configuration page decides for itself, in this order:
//! 1. Infobip's token answer carries `roles` or `groups` (older Infobip documents show them) and one of them is
//!    the role the operator named (`IBEX_ADMIN_ROLE`): an admin;
//! 2. the user is on the account's admin list (`ibex admins add`, or added on the page by another admin);
//! 3. the account has admins listed, or the role decided "no": read-only;
//! 4. nothing decides: `IBEX_UNLISTED_ACCOUNTS` says (`open`, today's behaviour, loudly logged at start-up; or
//!    `closed`, read-only until the operator lists an admin).
//!
//! The decision is taken again at every server function from the sealed session and the list in the database,
//! so removing an admin takes effect at once, on every instance.

use serde::{Deserialize, Serialize};

/// What the signed-in user may do on the configuration page. Travels to the page, so it says why in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    /// A listed admin or a holder of the admin role: may change everything, and the admin list.
    Admin,
    /// No admin is listed and no role decides, and the operator left such accounts open: anyone signed in may
    /// change the settings, and may make themselves the account's first admin.
    Open,
    /// May look, not change: the settings without secrets, and who to ask.
    ReadOnly {
        /// The sentence shown on the page: who can change the settings.
        who: String,
    },
}

impl Access {
    pub fn can_configure(&self) -> bool {
        matches!(self, Access::Admin | Access::Open)
    }
}

/// One listed admin, as the page and `ibex admins list` show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminEntry {
    pub user_key: String,
    /// The name they last signed in with; empty until they have.
    pub username: String,
    pub added_by: String,
    pub added_at: i64,
}

impl AdminEntry {
    /// "ana.admin (U-ANA-7F21)", or the key alone for someone who has not signed in since being added.
    pub fn display(&self) -> String {
        if self.username.is_empty() {
            self.user_key.clone()
        } else {
            format!("{} ({})", self.username, self.user_key)
        }
    }
}

/// A user key as Infobip writes them; anything else is refused before it reaches the list.
pub fn valid_user_key(key: &str) -> bool {
    (1..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b':'))
}

/// What an account with no admin listed (and no role deciding) allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Unlisted {
    /// Anyone signed in configures (the behaviour before admins existed).
    #[default]
    Open,
    /// Nobody configures until the operator lists an admin.
    Closed,
}

/// The operator's choice, from `IBEX_ADMIN_ROLE` and `IBEX_UNLISTED_ACCOUNTS`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminPolicy {
    pub role: Option<String>,
    pub unlisted: Unlisted,
}

impl AdminPolicy {
    /// Whether `names` (the token answer's `roles` and `groups`) make an admin: `None` when no role is configured
    /// or the answer carried neither field, so the list decides.
    pub fn role_decision(&self, names: Option<&[String]>) -> Option<bool> {
        let role = self.role.as_deref()?;
        let names = names?;
        Some(names.iter().any(|n| n.eq_ignore_ascii_case(role)))
    }

    /// Whether anything restricts configuration at all: false means any user of any account configures, which
    /// the start-up log says loudly.
    pub fn restricts(&self) -> bool {
        self.role.is_some() || self.unlisted == Unlisted::Closed
    }

    /// The decision for one user, given the account's list.
    pub fn decide(
        &self,
        admin_role: Option<bool>,
        user_key: &str,
        admins: &[AdminEntry],
    ) -> Access {
        // A session sealed while a role was configured says nothing once the operator has unset it.
        let admin_role = admin_role.filter(|_| self.role.is_some());
        if admin_role == Some(true) || admins.iter().any(|a| a.user_key == user_key) {
            return Access::Admin;
        }
        if !admins.is_empty() {
            let names: Vec<String> = admins.iter().map(AdminEntry::display).collect();
            return Access::ReadOnly {
                who: format!(
                    "Only this account's admins can change them: {}. Ask one of them to make the change, or to \
                     add you as an admin by your user key, {user_key}.",
                    names.join(", ")
                ),
            };
        }
        if admin_role == Some(false) {
            let role = self.role.as_deref().unwrap_or_default();
            return Access::ReadOnly {
                who: format!(
                    "Only users with the {role} role in Infobip can change them. Ask one of your account's \
                     administrators."
                ),
            };
        }
        match self.unlisted {
            Unlisted::Open => Access::Open,
            Unlisted::Closed => Access::ReadOnly {
                who: format!(
                    "No admin is set for this account yet. The app's operator adds one (your user key is \
                     {user_key}); until then the settings cannot be changed here."
                ),
            },
        }
    }
}

/// The names in a token answer's `roles` or `groups`, however Infobip writes them: a list of strings, a list of
/// objects with a `name` (or `id`, `role`, `group`), or one string of names separated by commas. Both
/// fields absent (or `null`) is `None`: the answer says nothing about roles.
pub fn role_names(
    roles: Option<&serde_json::Value>,
    groups: Option<&serde_json::Value>,
) -> Option<Vec<String>> {
    use serde_json::Value;
    /// `split`: only a field's own string is a list of names; a string inside a list is one name, whole
    /// ("Billing Admin" is not "Admin").
    fn collect(value: &Value, split: bool, into: &mut Vec<String>) {
        match value {
            Value::String(s) if split => into.extend(
                s.split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned),
            ),
            Value::String(s) => {
                if !s.trim().is_empty() {
                    into.push(s.trim().to_owned());
                }
            }
            Value::Array(items) => items.iter().for_each(|item| collect(item, false, into)),
            Value::Object(map) => {
                if let Some(name) = ["name", "id", "role", "group"]
                    .iter()
                    .find_map(|k| map.get(*k))
                {
                    collect(name, false, into);
                }
            }
            Value::Number(n) => into.push(n.to_string()),
            Value::Null | Value::Bool(_) => {}
        }
    }
    let present: Vec<&Value> = [roles, groups]
        .into_iter()
        .flatten()
        .filter(|v| !v.is_null())
        .collect();
    if present.is_empty() {
        return None;
    }
    let mut names = Vec::new();
    present
        .into_iter()
        .for_each(|v| collect(v, true, &mut names));
    Some(names)
}

#[cfg(feature = "ssr")]
mod store {
    use super::AdminEntry;
    use crate::settings::store::{now_ms, SettingsStore, StoreError};
    use sqlx::Row;

    impl SettingsStore {
        /// The account's listed admins, oldest first.
        pub async fn admins(&self, account_key: &str) -> Result<Vec<AdminEntry>, StoreError> {
            let rows = sqlx::query(
                "SELECT user_key, username, added_by, added_at FROM account_admins \
                 WHERE account_key = $1 ORDER BY added_at, user_key",
            )
            .bind(account_key)
            .fetch_all(self.pool())
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(AdminEntry {
                        user_key: r.try_get(0)?,
                        username: r.try_get(1)?,
                        added_by: r.try_get(2)?,
                        added_at: r.try_get(3)?,
                    })
                })
                .collect()
        }

        /// Lists `user_key` as an admin of the account; false when it already was.
        pub async fn add_admin(
            &self,
            account_key: &str,
            user_key: &str,
            username: &str,
            added_by: &str,
        ) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "INSERT INTO account_admins (account_key, user_key, username, added_by, added_at) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_key, user_key) DO NOTHING",
            )
            .bind(account_key)
            .bind(user_key)
            .bind(username)
            .bind(added_by)
            .bind(now_ms())
            .execute(self.pool())
            .await?;
            Ok(done.rows_affected() == 1)
        }

        /// Lists `user_key` as the account's first admin, only while it has none (two users claiming at once:
        /// both were allowed to configure anyway, and both end up listed).
        pub async fn claim_first_admin(
            &self,
            account_key: &str,
            user_key: &str,
            username: &str,
            added_by: &str,
        ) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "INSERT INTO account_admins (account_key, user_key, username, added_by, added_at) \
                 SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS \
                 (SELECT 1 FROM account_admins WHERE account_key = $1) \
                 ON CONFLICT (account_key, user_key) DO NOTHING",
            )
            .bind(account_key)
            .bind(user_key)
            .bind(username)
            .bind(added_by)
            .bind(now_ms())
            .execute(self.pool())
            .await?;
            Ok(done.rows_affected() == 1)
        }

        /// Removes `user_key` from the account's admins; with `keep_one`, never the last of them (the page keeps
        /// an account from losing its admins by accident; the operator may).
        pub async fn remove_admin(
            &self,
            account_key: &str,
            user_key: &str,
            keep_one: bool,
        ) -> Result<bool, StoreError> {
            let mut tx = self.pool().begin().await?;
            if keep_one && self.backend() == crate::settings::store::Backend::Postgres {
                // Two admins removing each other at once would both count two and empty the list: the second
                // waits for the first's rows, then counts what it left. (SQLite runs one writer at a time.)
                sqlx::query(
                    "SELECT user_key FROM account_admins WHERE account_key = $1 FOR UPDATE",
                )
                .bind(account_key)
                .fetch_all(&mut *tx)
                .await?;
            }
            let sql = if keep_one {
                "DELETE FROM account_admins WHERE account_key = $1 AND user_key = $2 \
                 AND (SELECT COUNT(*) FROM account_admins WHERE account_key = $1) > 1"
            } else {
                "DELETE FROM account_admins WHERE account_key = $1 AND user_key = $2"
            };
            let done = sqlx::query(sql)
                .bind(account_key)
                .bind(user_key)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() == 1)
        }

        /// Keeps a listed admin's name as they last signed in with, so the page can say who to ask.
        pub async fn note_admin_name(
            &self,
            account_key: &str,
            user_key: &str,
            username: &str,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE account_admins SET username = $3 \
                 WHERE account_key = $1 AND user_key = $2 AND username <> $3",
            )
            .bind(account_key)
            .bind(user_key)
            .bind(username)
            .execute(self.pool())
            .await?;
            Ok(())
        }

        /// Who saved the account's settings first (version 1 in the change log, which is never pruned): the
        /// one user whose claim to be an open account's first admin counts. Not the last saver: on an open
        /// account anyone may save, so "last" is anyone's for the price of one save.
        pub async fn first_saved_by(
            &self,
            account_key: &str,
        ) -> Result<Option<String>, StoreError> {
            let row = sqlx::query(
                "SELECT changed_by FROM settings_changes WHERE account_key = $1 AND version = 1",
            )
            .bind(account_key)
            .fetch_optional(self.pool())
            .await?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        }

        /// Whether any account has an admin listed (for the start-up warning).
        pub async fn any_admins(&self) -> Result<bool, StoreError> {
            let row = sqlx::query("SELECT COUNT(*) FROM account_admins")
                .fetch_one(self.pool())
                .await?;
            let n: i64 = row.try_get(0)?;
            Ok(n > 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(key: &str, name: &str) -> AdminEntry {
        AdminEntry {
            user_key: key.into(),
            username: name.into(),
            added_by: "operator".into(),
            added_at: 0,
        }
    }

    #[test]
    fn the_role_decides_first_then_the_list_then_the_operators_default() {
        let open = AdminPolicy::default();
        let role = AdminPolicy {
            role: Some("ACCOUNT_ADMIN".into()),
            unlisted: Unlisted::Open,
        };
        let closed = AdminPolicy {
            role: None,
            unlisted: Unlisted::Closed,
        };
        let listed = [entry("U-ANA", "ana.admin")];
        assert_eq!(open.decide(None, "U-BOB", &[]), Access::Open);
        assert_eq!(open.decide(None, "U-ANA", &listed), Access::Admin);
        let Access::ReadOnly { who } = open.decide(None, "U-BOB", &listed) else {
            panic!("a user off the list may only look")
        };
        assert!(
            who.contains("ana.admin (U-ANA)") && who.contains("U-BOB"),
            "{who}"
        );
        assert_eq!(role.decide(Some(true), "U-BOB", &listed), Access::Admin);
        assert!(matches!(
            role.decide(Some(false), "U-BOB", &[]),
            Access::ReadOnly { .. }
        ));
        // a token without roles falls back to the list, then to the default for unlisted accounts
        assert_eq!(role.decide(None, "U-BOB", &[]), Access::Open);
        assert!(matches!(
            closed.decide(None, "U-BOB", &[]),
            Access::ReadOnly { .. }
        ));
        assert!(!open.restricts() && role.restricts() && closed.restricts());
        // Sealed while a role was configured, then the operator unset it: the role no longer counts.
        assert_eq!(
            open.decide(Some(true), "U-BOB", &listed),
            Access::ReadOnly {
                who: match open.decide(None, "U-BOB", &listed) {
                    Access::ReadOnly { who } => who,
                    other => panic!("{other:?}"),
                }
            }
        );
    }

    #[test]
    fn role_names_are_read_in_any_plausible_shape() {
        let policy = AdminPolicy {
            role: Some("admin".into()),
            unlisted: Unlisted::Open,
        };
        let names = |r: serde_json::Value, g: serde_json::Value| {
            role_names(Some(&r), Some(&g)).unwrap_or_default()
        };
        assert_eq!(
            names(json!(["AGENT", "ADMIN"]), json!(null)),
            vec!["AGENT", "ADMIN"]
        );
        assert_eq!(
            names(json!([{"name": "Supervisors"}]), json!("a, b")),
            vec!["Supervisors", "a", "b"]
        );
        assert_eq!(role_names(None, Some(&json!(null))), None);
        assert_eq!(
            role_names(Some(&json!([])), None),
            Some(Vec::<String>::new())
        );
        // A name is compared whole: a role called "Billing Admin" is not the role "Admin".
        let named = |r: serde_json::Value| role_names(Some(&r), None).unwrap_or_default();
        assert_eq!(named(json!(["Billing Admin"])), vec!["Billing Admin"]);
        assert_eq!(
            named(json!("Billing Admin, Not Admin")),
            vec!["Billing Admin", "Not Admin"]
        );
        assert_eq!(
            policy.role_decision(Some(&named(json!(["Billing Admin"])))),
            Some(false)
        );
        let admin = vec!["ADMIN".to_owned()];
        assert_eq!(policy.role_decision(Some(&admin)), Some(true));
        assert_eq!(policy.role_decision(Some(&[])), Some(false));
        assert_eq!(policy.role_decision(None), None);
        assert_eq!(AdminPolicy::default().role_decision(Some(&admin)), None);
    }

    #[test]
    fn user_keys_are_plain() {
        assert!(valid_user_key("U-ANA-7F21"));
        for bad in ["", "a b", "a/b", "<script>", "a\nb", &"k".repeat(129)] {
            assert!(!valid_user_key(bad), "{bad:?}");
        }
    }
}
