//! The control plane's schema: SQL files shipped in `migrations/`, applied
//! in order by `silo control-plane init` and recorded in
//! `silo_schema_migrations`, so a later release adds `0002_…` and init
//! applies only what is missing.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder};

use super::{DbError, bounded, endpoint};

/// One schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every step, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "0001_control_plane",
    sql: include_str!("../../../migrations/0001_control_plane.sql"),
}];

/// The schema version this silo reads.
pub fn latest_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Holds off a second `init` running at the same time.
const INIT_LOCK: &str = "silo_control_plane_init";

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS silo_schema_migrations (
    version INT UNSIGNED PRIMARY KEY,
    name VARCHAR(255) NOT NULL,
    applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE=InnoDB";

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// These steps were applied; the schema is now at `version`.
    Applied {
        names: Vec<&'static str>,
        version: u32,
    },
    /// Nothing to do.
    UpToDate { version: u32 },
}

/// Creates the database `opts` names (checked by [`super::parse_url`]) if
/// it does not exist, then applies every missing step. Each statement is
/// bounded by `timeout`.
///
/// # Errors
/// The server cannot be reached, or a statement fails (named by its step
/// and position).
pub(super) async fn init(opts: &Opts, timeout: Duration) -> Result<InitOutcome, String> {
    let at = endpoint(opts);
    let database = opts.db_name().unwrap_or_default();
    let fail = |e: DbError| format!("control plane at {at}: {e}");
    let server = OptsBuilder::from_opts(opts.clone()).db_name(None::<String>);
    let mut conn = bounded(timeout, Conn::new(server)).await.map_err(fail)?;
    let quoted = format!("`{}`", database.replace('`', "``"));
    // USE first: a user with rights on an existing database alone may not
    // be allowed even `CREATE DATABASE IF NOT EXISTS`.
    match bounded(timeout, conn.query_drop(format!("USE {quoted}"))).await {
        Ok(()) => {}
        // ER_BAD_DB_ERROR: create it.
        Err(DbError::Sql(mysql_async::Error::Server(e))) if e.code == 1049 => {
            bounded(
                timeout,
                conn.query_drop(format!("CREATE DATABASE {quoted}")),
            )
            .await
            .map_err(fail)?;
            bounded(timeout, conn.query_drop(format!("USE {quoted}")))
                .await
                .map_err(fail)?;
        }
        Err(e) => return Err(fail(e)),
    }
    let got: Option<i64> = bounded(
        timeout,
        conn.exec_first(
            "SELECT GET_LOCK(?, ?)",
            (INIT_LOCK, timeout.as_secs().max(1)),
        ),
    )
    .await
    .map_err(fail)?;
    if got != Some(1) {
        return Err(format!(
            "control plane at {at}: another `silo control-plane init` holds the schema lock"
        ));
    }
    let result = apply_missing(&mut conn, timeout, &at).await;
    let _ = bounded(timeout, conn.exec_drop("DO RELEASE_LOCK(?)", (INIT_LOCK,))).await;
    let _ = bounded(timeout, conn.disconnect()).await;
    result
}

async fn apply_missing(
    conn: &mut Conn,
    timeout: Duration,
    at: &str,
) -> Result<InitOutcome, String> {
    let fail = |e: DbError| format!("control plane at {at}: {e}");
    bounded(timeout, conn.query_drop(CREATE_MIGRATIONS_TABLE))
        .await
        .map_err(fail)?;
    let applied: Vec<u32> = bounded(
        timeout,
        conn.query("SELECT version FROM silo_schema_migrations ORDER BY version"),
    )
    .await
    .map_err(fail)?;
    let mut names = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        for (i, statement) in statements(migration.sql).iter().enumerate() {
            bounded(timeout, conn.query_drop(statement.as_str()))
                .await
                .map_err(|e| {
                    format!(
                        "control plane at {at}: {} statement {}: {e}",
                        migration.name,
                        i + 1
                    )
                })?;
        }
        bounded(
            timeout,
            conn.exec_drop(
                "INSERT INTO silo_schema_migrations (version, name) VALUES (?, ?)",
                (migration.version, migration.name),
            ),
        )
        .await
        .map_err(fail)?;
        names.push(migration.name);
    }
    let version = latest_version().max(applied.iter().copied().max().unwrap_or(0));
    if names.is_empty() {
        Ok(InitOutcome::UpToDate { version })
    } else {
        Ok(InitOutcome::Applied { names, version })
    }
}

/// The schema version recorded in the control plane, `None` before init.
pub(super) async fn recorded_version(conn: &mut Conn) -> Result<Option<u32>, mysql_async::Error> {
    match conn
        .query_first::<Option<u32>, _>("SELECT MAX(version) FROM silo_schema_migrations")
        .await
    {
        Ok(v) => Ok(v.flatten()),
        // ER_NO_SUCH_TABLE: never initialised.
        Err(mysql_async::Error::Server(e)) if e.code == 1146 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Splits a migration into statements at `;` outside quotes and comments,
/// with the comments left out (a comment becomes one space).
fn statements(sql: &str) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Code,
        Quoted(char),
        LineComment,
        BlockComment,
    }
    let mut out = Vec::new();
    let mut current = String::new();
    let mut has_code = false;
    let mut state = State::Code;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match state {
            State::Code => match c {
                ';' => {
                    if has_code {
                        out.push(current.trim().to_string());
                    }
                    current.clear();
                    has_code = false;
                    continue;
                }
                '\'' | '"' | '`' => {
                    state = State::Quoted(c);
                    has_code = true;
                }
                '-' if chars.peek() == Some(&'-') => {
                    state = State::LineComment;
                    continue;
                }
                '#' => {
                    state = State::LineComment;
                    continue;
                }
                '/' if chars.peek() == Some(&'*') => {
                    chars.next();
                    state = State::BlockComment;
                    continue;
                }
                c if !c.is_whitespace() => has_code = true,
                _ => {}
            },
            State::Quoted(q) => {
                if c == '\\' && q != '`' {
                    current.push(c);
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                    continue;
                }
                if c == q {
                    state = State::Code;
                }
            }
            State::LineComment => {
                if c == '\n' {
                    state = State::Code;
                    current.push('\n');
                }
                continue;
            }
            State::BlockComment => {
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    state = State::Code;
                    current.push(' ');
                }
                continue;
            }
        }
        current.push(c);
    }
    if has_code {
        out.push(current.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_outside_quotes_and_comments() {
        let sql = "-- a; comment\nCREATE TABLE a (x JSON DEFAULT '{\"k\": \";\"}');\n\
                   /* b; */ INSERT INTO a VALUES ('it''s; here', \"q;\\\"\");\n-- trailing only\n";
        let got = statements(sql);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].ends_with("DEFAULT '{\"k\": \";\"}')"), "{got:?}");
        assert!(got[1].contains("'it''s; here'"), "{got:?}");
    }

    #[test]
    fn the_shipped_migrations_are_numbered_in_order() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
        let first = statements(MIGRATIONS[0].sql);
        let triggers = first
            .iter()
            .filter(|s| s.starts_with("CREATE TRIGGER"))
            .count();
        // INSERT, UPDATE and DELETE on the four catalog tables.
        assert_eq!(triggers, 12);
        assert!(first.iter().all(|s| !s.contains(';')), "{first:?}");
    }
}
