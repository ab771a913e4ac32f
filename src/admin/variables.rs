//! Answers to the `SELECT @@var, …` and `SELECT USER()`-style queries that
//! connectors and the `mariadb` client send by themselves after connecting,
//! with values that describe the admin port truthfully where they can.

use super::Operator;
use super::parse::{ACCEPTED, Expr, SelectItem};
use super::resultset::{Kind, ResultSet, Value};
use crate::protocol::ServerError;

/// Idle time a client may assume before the server drops it; the admin port
/// drops no idle session, so MariaDB's default is as good as any.
const WAIT_TIMEOUT_S: u64 = 28_800;

/// One row of `items`, or none under `LIMIT 0`.
///
/// # Errors
/// An unknown system variable (1193, as MariaDB says it) or function.
pub fn select(
    operator: &Operator,
    items: &[SelectItem],
    limit: Option<u64>,
) -> Result<ResultSet, ServerError> {
    let mut columns = Vec::with_capacity(items.len());
    let mut row = Vec::with_capacity(items.len());
    for item in items {
        let value = match &item.expr {
            Expr::Variable(name) => variable(operator, name).ok_or_else(|| {
                ServerError::new(1193, b"HY000", format!("Unknown system variable '{name}'"))
            })?,
            Expr::Function(name) => function(operator, name).ok_or_else(|| {
                ServerError::new(
                    1064,
                    b"42000",
                    format!(
                        "function {name}() is not available on the admin port; accepted: {ACCEPTED}"
                    ),
                )
            })?,
            Expr::Integer(n) => Value::UInt(*n),
            Expr::Text(s) => Value::Text(s.clone()),
        };
        let kind = match value {
            Value::UInt(_) => Kind::UInt,
            Value::Null | Value::Text(_) => Kind::Text,
        };
        columns.push((item.label.clone(), kind));
        row.push(value);
    }
    let mut result = ResultSet::with_columns(columns);
    if limit != Some(0) {
        result.push(row);
    }
    Ok(result)
}

/// The version without the `5.5.5-` prefix the greeting carries for old
/// clients, as MariaDB reports `@@version`.
fn version(operator: &Operator) -> String {
    let v = operator.server_version.as_str();
    v.strip_prefix("5.5.5-").unwrap_or(v).to_string()
}

fn variable(operator: &Operator, name: &str) -> Option<Value> {
    let text = |s: &str| Some(Value::Text(s.to_string()));
    let number = |n: u64| Some(Value::UInt(n));
    match name {
        "max_allowed_packet" => number(super::MAX_COMMAND as u64),
        "wait_timeout" | "interactive_timeout" => number(WAIT_TIMEOUT_S),
        "net_read_timeout" => number(30),
        "net_write_timeout" => number(60),
        "net_buffer_length" => number(16_384),
        "version_comment" => text("silo admin port"),
        "version" => Some(Value::Text(version(operator))),
        "protocol_version" => number(10),
        "port" => number(u64::from(operator.local_port)),
        "socket" => Some(Value::Null),
        "autocommit" | "auto_increment_increment" | "auto_increment_offset" => number(1),
        "character_set_client"
        | "character_set_connection"
        | "character_set_results"
        | "character_set_server"
        | "character_set_database"
        | "character_set_system" => text("utf8mb4"),
        "collation_connection" | "collation_server" | "collation_database" => {
            text("utf8mb4_general_ci")
        }
        "init_connect" | "sql_mode" => text(""),
        "lower_case_table_names"
        | "performance_schema"
        | "query_cache_size"
        | "max_execution_time"
        | "max_statement_time"
        | "transaction_read_only"
        | "tx_read_only"
        | "warning_count"
        | "error_count"
        | "in_transaction" => number(0),
        "query_cache_type" => text("OFF"),
        "have_ssl" => text("DISABLED"),
        "system_time_zone" => text("UTC"),
        "time_zone" => text("SYSTEM"),
        "transaction_isolation" | "tx_isolation" => text("REPEATABLE-READ"),
        "session_track_schema"
        | "session_track_state_change"
        | "session_track_system_variables"
        | "session_track_transaction_info" => text("OFF"),
        _ => None,
    }
}

fn function(operator: &Operator, name: &str) -> Option<Value> {
    match name {
        "DATABASE" | "SCHEMA" => Some(operator.database.clone().into()),
        "USER" | "CURRENT_USER" | "SESSION_USER" | "SYSTEM_USER" => Some(Value::Text(format!(
            "{}@{}",
            operator.user,
            operator.peer.ip()
        ))),
        "VERSION" => Some(Value::Text(version(operator))),
        "CONNECTION_ID" => Some(Value::UInt(u64::from(operator.connection_id))),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::admin::parse::{Statement, parse};

    fn operator() -> Operator {
        Operator {
            user: "admin".into(),
            peer: "127.0.0.1:5000".parse().unwrap(),
            local_port: 6032,
            connection_id: 7,
            server_version: "5.5.5-10.11.19-MariaDB-silo".into(),
            database: None,
        }
    }

    fn run(sql: &str) -> Result<ResultSet, ServerError> {
        let Statement::Select { items, limit } = parse(sql).unwrap() else {
            panic!("not a select: {sql}")
        };
        select(&operator(), &items, limit)
    }

    #[test]
    fn what_mysql_async_asks() {
        let rs = run("SELECT @@max_allowed_packet,@@wait_timeout").unwrap();
        assert_eq!(
            rs.columns().collect::<Vec<_>>(),
            ["@@max_allowed_packet", "@@wait_timeout"]
        );
        assert_eq!(
            rs.rows(),
            [vec![
                Value::UInt(super::super::MAX_COMMAND as u64),
                Value::UInt(28_800)
            ]]
        );
        let socket = run("SELECT @@socket").unwrap();
        assert_eq!(socket.rows(), [vec![Value::Null]]);
    }

    #[test]
    fn what_the_mariadb_client_asks() {
        let rs = run("select @@version_comment limit 1").unwrap();
        assert_eq!(rs.rows(), [vec![Value::Text("silo admin port".into())]]);
        let rs = run("select DATABASE(), USER() limit 1").unwrap();
        assert_eq!(
            rs.rows(),
            [vec![Value::Null, Value::Text("admin@127.0.0.1".into())]]
        );
        assert_eq!(
            run("SELECT VERSION(), CONNECTION_ID()").unwrap().rows(),
            [vec![
                Value::Text("10.11.19-MariaDB-silo".into()),
                Value::UInt(7)
            ]]
        );
        assert!(run("SELECT 1 LIMIT 0").unwrap().rows().is_empty());
    }

    #[test]
    fn unknown_names_are_errors() {
        let e = run("SELECT @@no_such_thing").unwrap_err();
        assert_eq!(
            (e.code, &e.message[..]),
            (1193, "Unknown system variable 'no_such_thing'")
        );
        let e = run("SELECT NOW()").unwrap_err();
        assert_eq!(e.code, 1064);
        assert!(
            e.message.contains("accepted: SHOW TENANTS"),
            "{}",
            e.message
        );
    }
}
