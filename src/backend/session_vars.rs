//! Session system variables as the server reported them changed, kept per
//! client (what its session should look like) and per backend connection
//! (what it looks like), and the one `SET` statement that turns the second
//! into the first.
//!
//! Only variables the server reported through session tracking are held:
//! everything else is the server's default for a fresh connection of the
//! same profile. Character-set variables are special: a connection's
//! defaults come from its login collation (its baseline), and setting
//! `character_set_connection` or `collation_connection` changes the other
//! without the server reporting it.

use std::fmt::Write;

const CHARSET_CLIENT: &str = "character_set_client";
const CHARSET_RESULTS: &str = "character_set_results";
const CHARSET_CONNECTION: &str = "character_set_connection";
const COLLATION_CONNECTION: &str = "collation_connection";
/// In the order a replay sets them: the connection's collation last, so it
/// wins over the collation implied by its character set.
const CHARSET_GROUP: [&str; 4] = [
    CHARSET_CLIENT,
    CHARSET_RESULTS,
    CHARSET_CONNECTION,
    COLLATION_CONNECTION,
];

/// Variables whose change silo cannot replay: they steer the tracking
/// itself.
fn is_tracking_variable(name: &str) -> bool {
    name.starts_with("session_track_")
}

/// Variable name → value, sorted by name, as reported by the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionVars {
    vars: Vec<(Box<str>, Box<str>)>,
}

/// Why a reported variable cannot be replayed (the session is then pinned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreplayable;

impl SessionVars {
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.find(name)
            .ok()
            .and_then(|i| self.vars.get(i))
            .map(|(_, v)| &**v)
    }

    fn find(&self, name: &str) -> Result<usize, usize> {
        self.vars.binary_search_by(|(n, _)| (**n).cmp(name))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(n, v)| (&**n, &**v))
    }

    /// Records a change the server reported in one OK packet. `reported`
    /// holds every name reported in that packet, so that an implied change
    /// (collation ↔ character set of the connection) drops the stale value.
    ///
    /// # Errors
    /// The change cannot be replayed on another connection.
    pub fn record(&mut self, name: &[u8], value: &[u8]) -> Result<(), Unreplayable> {
        let (Ok(name), Ok(value)) = (std::str::from_utf8(name), std::str::from_utf8(value)) else {
            return Err(Unreplayable);
        };
        let plain_name =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        // A backslash would need escaping that depends on sql_mode.
        let plain_value = !value.bytes().any(|b| b == b'\\' || b.is_ascii_control());
        if !plain_name || !plain_value || is_tracking_variable(name) {
            return Err(Unreplayable);
        }
        match self.find(name) {
            Ok(i) => {
                if let Some(slot) = self.vars.get_mut(i) {
                    slot.1 = value.into();
                }
            }
            Err(i) => self.vars.insert(i, (name.into(), value.into())),
        }
        Ok(())
    }

    /// After the changes of one OK packet: setting the connection's
    /// character set resets its collation and the reverse, silently.
    pub fn settle_implied(&mut self, reported: impl Fn(&str) -> bool) {
        if reported(CHARSET_CONNECTION) && !reported(COLLATION_CONNECTION) {
            self.remove(COLLATION_CONNECTION);
        }
        if reported(COLLATION_CONNECTION) && !reported(CHARSET_CONNECTION) {
            self.remove(CHARSET_CONNECTION);
        }
    }

    fn remove(&mut self, name: &str) {
        if let Ok(i) = self.find(name) {
            self.vars.remove(i);
        }
    }

    pub fn clear(&mut self) {
        self.vars.clear();
    }
}

/// The statement that brings a connection whose variables are `current`
/// (on top of `baseline`, the character set of its login) to `desired`;
/// `None` when they already match.
pub fn replay_statement(
    desired: &SessionVars,
    current: &SessionVars,
    baseline: &SessionVars,
) -> Option<String> {
    if desired == current {
        return None;
    }
    let mut sql = String::from("SET ");
    let mut first = true;
    let mut assign = |sql: &mut String, name: &str, value: Option<&str>| {
        if !first {
            sql.push_str(", ");
        }
        first = false;
        let _ = write!(sql, "@@session.{name} = ");
        match value {
            None => sql.push_str("DEFAULT"),
            // The server reports NULL as an empty value.
            Some("") if name == CHARSET_RESULTS => sql.push_str("NULL"),
            Some(v) if is_number(v) => sql.push_str(v),
            Some(v) => {
                sql.push('\'');
                sql.push_str(&v.replace('\'', "''"));
                sql.push('\'');
            }
        }
    };
    for (name, value) in desired.iter() {
        if !CHARSET_GROUP.contains(&name) && current.get(name) != Some(value) {
            assign(&mut sql, name, Some(value));
        }
    }
    for (name, _) in current.iter() {
        if !CHARSET_GROUP.contains(&name) && desired.get(name).is_none() {
            assign(&mut sql, name, None);
        }
    }
    let charset_differs = CHARSET_GROUP
        .iter()
        .any(|name| desired.get(name) != current.get(name));
    if charset_differs {
        for name in CHARSET_GROUP {
            let implied_by_partner = match name {
                COLLATION_CONNECTION => desired.get(CHARSET_CONNECTION).is_some(),
                CHARSET_CONNECTION => desired.get(COLLATION_CONNECTION).is_some(),
                _ => false,
            };
            match desired.get(name) {
                Some(value) => assign(&mut sql, name, Some(value)),
                None if implied_by_partner => {}
                None => assign(&mut sql, name, baseline.get(name)),
            }
        }
    }
    if first { None } else { Some(sql) }
}

fn is_number(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let mut parts = digits.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next();
    !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> SessionVars {
        let mut v = SessionVars::default();
        for (n, val) in pairs {
            v.record(n.as_bytes(), val.as_bytes()).unwrap();
        }
        v
    }

    #[test]
    fn nothing_to_do_when_equal() {
        let a = vars(&[("time_zone", "+05:00")]);
        assert_eq!(
            replay_statement(&a, &a.clone(), &SessionVars::default()),
            None
        );
    }

    #[test]
    fn sets_and_resets() {
        let desired = vars(&[("time_zone", "+05:00"), ("max_statement_time", "10.000000")]);
        let current = vars(&[("sql_mode", "ANSI"), ("time_zone", "SYSTEM")]);
        let sql = replay_statement(&desired, &current, &SessionVars::default()).unwrap();
        assert_eq!(
            sql,
            "SET @@session.max_statement_time = 10.000000, @@session.time_zone = '+05:00', @@session.sql_mode = DEFAULT"
        );
    }

    #[test]
    fn charset_group_returns_to_the_login_baseline() {
        let baseline = vars(&[
            ("character_set_client", "utf8mb4"),
            ("character_set_connection", "utf8mb4"),
            ("character_set_results", "utf8mb4"),
            ("collation_connection", "utf8mb4_general_ci"),
        ]);
        let latin1 = vars(&[
            ("character_set_client", "latin1"),
            ("character_set_connection", "latin1"),
            ("character_set_results", "latin1"),
        ]);
        let back = replay_statement(&SessionVars::default(), &latin1, &baseline).unwrap();
        assert_eq!(
            back,
            "SET @@session.character_set_client = 'utf8mb4', @@session.character_set_results = 'utf8mb4', @@session.character_set_connection = 'utf8mb4', @@session.collation_connection = 'utf8mb4_general_ci'"
        );
        // The collation follows the replayed character set, not the baseline.
        let there = replay_statement(&latin1, &SessionVars::default(), &baseline).unwrap();
        assert_eq!(
            there,
            "SET @@session.character_set_client = 'latin1', @@session.character_set_results = 'latin1', @@session.character_set_connection = 'latin1'"
        );
    }

    #[test]
    fn implied_collation_change_drops_the_stale_value() {
        let mut v = vars(&[("collation_connection", "utf8mb4_bin")]);
        v.record(b"character_set_connection", b"latin1").unwrap();
        v.settle_implied(|n| n == "character_set_connection");
        assert_eq!(v.get("collation_connection"), None);
        assert_eq!(v.get("character_set_connection"), Some("latin1"));
    }

    #[test]
    fn quoting_and_null() {
        let desired = vars(&[("character_set_results", ""), ("lc_time_names", "it'IT")]);
        let sql =
            replay_statement(&desired, &SessionVars::default(), &SessionVars::default()).unwrap();
        assert!(sql.contains("@@session.lc_time_names = 'it''IT'"), "{sql}");
        assert!(
            sql.contains("@@session.character_set_results = NULL"),
            "{sql}"
        );
    }

    #[test]
    fn unreplayable_changes() {
        let mut v = SessionVars::default();
        assert_eq!(v.record(b"session_track_schema", b"OFF"), Err(Unreplayable));
        assert_eq!(v.record(b"x; DROP", b"1"), Err(Unreplayable));
        assert_eq!(v.record(b"sql_mode", b"a\\b"), Err(Unreplayable));
        assert!(v.is_empty());
    }

    #[test]
    fn numbers() {
        assert!(is_number("10") && is_number("-1") && is_number("10.000000"));
        assert!(!is_number("") && !is_number("1.") && !is_number("+05:00") && !is_number("ON"));
    }
}
