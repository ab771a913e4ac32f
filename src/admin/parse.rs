//! The admin port's command grammar: case-insensitive keywords, an optional
//! trailing `;`, slugs bare or quoted with `` ` ``, `'` or `"`, and the few
//! statements clients send by themselves after connecting
//! (`SELECT @@var, …`, `SET NAMES …`, `SET autocommit = …`).
//!
//! Every input, however odd, parses to a [`Statement`] or a [`ParseError`]
//! whose message says what is accepted.

use crate::catalog::Change;
use crate::config::TenantStatus;

/// The commands the admin port accepts, as its errors list them.
pub const ACCEPTED: &str = "SHOW TENANTS | SHOW TENANT <slug> | SHOW BACKENDS | SHOW POOLS | \
SHOW CLIENTS [FOR <slug>] | SHOW PLANS | SHOW USAGE | SHOW EVENTS [FOR <slug>] [LIMIT n] | \
SET TENANT <slug> PLAN <plan> | SET TENANT <slug> BACKEND <id> | SUSPEND TENANT <slug> | \
RESUME TENANT <slug> | PAUSE TENANT <slug> | DRAIN BACKEND <id> | UNDRAIN BACKEND <id> | \
KILL CLIENT <id> | RELOAD";

/// Events shown when `SHOW EVENTS` names no limit.
pub const DEFAULT_EVENTS: usize = 50;
/// The most events one `SHOW EVENTS` returns.
pub const MAX_EVENTS: usize = 1_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    ShowTenants,
    ShowTenant(String),
    ShowBackends,
    ShowPools,
    ShowClients {
        tenant: Option<String>,
    },
    ShowPlans,
    ShowUsage,
    ShowEvents {
        tenant: Option<String>,
        limit: usize,
    },
    Change(Change),
    /// A silo client connection id (ids above `u32::MAX` name no one).
    KillClient(u64),
    Reload,
    /// `SELECT @@var, …` and the like, as connectors send on connect.
    Select {
        items: Vec<SelectItem>,
        limit: Option<u64>,
    },
    /// `SET NAMES …`, `SET autocommit = …`: accepted and ignored, the admin
    /// port's session has nothing they would change.
    SessionSetting,
}

/// One expression of a `SELECT` and the column name it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectItem {
    pub expr: Expr,
    /// The alias, else the expression as written (as servers name columns).
    pub label: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// A system variable, lower case, its `session.` / `global.` scope dropped.
    Variable(String),
    /// A function without arguments (`DATABASE()`, `USER()`, …), upper case.
    Function(String),
    Integer(u64),
    Text(String),
}

/// Why a command was not understood; the message is meant for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    fn unknown() -> Self {
        ParseError(format!("unknown admin command; accepted: {ACCEPTED}"))
    }

    fn usage(usage: &str, problem: &str) -> Self {
        ParseError(format!("{problem}; usage: {usage}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Comma,
    Equals,
    LParen,
    RParen,
    Other(char),
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '$' | '@' | '.' | '-')
}

fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '/' if text_starts_comment(&chars) => {
                chars.next();
                chars.next();
                let mut last = ' ';
                loop {
                    match chars.next() {
                        Some('/') if last == '*' => break,
                        Some(c) => last = c,
                        None => return Err(ParseError("unterminated /* comment".into())),
                    }
                }
            }
            '\'' | '"' | '`' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        // A doubled quote stands for itself.
                        Some(q) if q == c && chars.peek() == Some(&c) => {
                            chars.next();
                            value.push(c);
                        }
                        Some(q) if q == c => break,
                        Some(other) => value.push(other),
                        None => {
                            return Err(ParseError(format!("unterminated {c}quoted{c} name")));
                        }
                    }
                }
                tokens.push(Token::Quoted(value));
            }
            ',' => {
                chars.next();
                tokens.push(Token::Comma);
            }
            '=' => {
                chars.next();
                tokens.push(Token::Equals);
            }
            '(' => {
                chars.next();
                tokens.push(Token::LParen);
            }
            ')' => {
                chars.next();
                tokens.push(Token::RParen);
            }
            c if is_word_char(c) => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if !is_word_char(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
            other => {
                chars.next();
                tokens.push(Token::Other(other));
            }
        }
    }
    Ok(tokens)
}

fn text_starts_comment(chars: &std::iter::Peekable<std::str::Chars<'_>>) -> bool {
    let mut ahead = chars.clone();
    ahead.next() == Some('/') && ahead.next() == Some('*')
}

/// The tokens of one statement, read front to back.
struct Cursor {
    tokens: Vec<Token>,
    at: usize,
}

impl Cursor {
    fn next(&mut self) -> Option<&Token> {
        let token = self.tokens.get(self.at);
        self.at += 1;
        token
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn done(&self) -> bool {
        self.at >= self.tokens.len()
    }

    /// Consumes the next token if it is the keyword `kw`.
    fn keyword(&mut self, kw: &str) -> bool {
        let hit = matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw));
        if hit {
            self.at += 1;
        }
        hit
    }

    /// A name: a bare word or a quoted one.
    fn name(&mut self) -> Option<String> {
        match self.next() {
            Some(Token::Word(w) | Token::Quoted(w)) if !w.is_empty() => Some(w.clone()),
            _ => None,
        }
    }

    fn number(&mut self) -> Option<u64> {
        match self.next() {
            Some(Token::Word(w) | Token::Quoted(w)) => w.parse().ok(),
            _ => None,
        }
    }

    /// A backend id: a number that fits its `u32`.
    fn backend_id(&mut self) -> Option<u32> {
        self.number().and_then(|n| u32::try_from(n).ok())
    }
}

/// Parses one admin command.
///
/// # Errors
/// The text is not a command the admin port accepts, or its arguments are
/// wrong; the message lists what is accepted.
pub fn parse(text: &str) -> Result<Statement, ParseError> {
    let trimmed = text.trim().trim_end_matches([';', ' ', '\t', '\r', '\n']);
    let tokens = lex(trimmed)?;
    if tokens.contains(&Token::Other(';')) {
        return Err(ParseError(format!(
            "one command at a time; accepted: {ACCEPTED}"
        )));
    }
    let mut cursor = Cursor { tokens, at: 0 };
    let Some(Token::Word(first)) = cursor.next().cloned() else {
        return Err(ParseError::unknown());
    };
    let statement = match first.to_ascii_uppercase().as_str() {
        "SHOW" => show(&mut cursor)?,
        "SET" => set(&mut cursor)?,
        "SUSPEND" => status(&mut cursor, "SUSPEND", TenantStatus::Suspended)?,
        "RESUME" => status(&mut cursor, "RESUME", TenantStatus::Active)?,
        "PAUSE" => status(&mut cursor, "PAUSE", TenantStatus::Paused)?,
        "DRAIN" => drain(&mut cursor, "DRAIN", true)?,
        "UNDRAIN" => drain(&mut cursor, "UNDRAIN", false)?,
        "KILL" => kill(&mut cursor)?,
        "RELOAD" => Statement::Reload,
        "SELECT" => return select(&mut cursor),
        _ => return Err(ParseError::unknown()),
    };
    if !cursor.done() {
        return Err(ParseError(format!(
            "unexpected text after the command; accepted: {ACCEPTED}"
        )));
    }
    Ok(statement)
}

fn show(cursor: &mut Cursor) -> Result<Statement, ParseError> {
    let Some(Token::Word(what)) = cursor.next().cloned() else {
        return Err(ParseError::unknown());
    };
    Ok(match what.to_ascii_uppercase().as_str() {
        "TENANTS" => Statement::ShowTenants,
        "TENANT" => {
            const USAGE: &str = "SHOW TENANT <slug>";
            let slug = cursor
                .name()
                .ok_or_else(|| ParseError::usage(USAGE, "SHOW TENANT needs a tenant slug"))?;
            Statement::ShowTenant(slug)
        }
        "BACKENDS" => Statement::ShowBackends,
        "POOLS" => Statement::ShowPools,
        "PLANS" => Statement::ShowPlans,
        "USAGE" => Statement::ShowUsage,
        "CLIENTS" => {
            const USAGE: &str = "SHOW CLIENTS [FOR <slug>]";
            let tenant = if cursor.keyword("FOR") {
                Some(
                    cursor
                        .name()
                        .ok_or_else(|| ParseError::usage(USAGE, "FOR needs a tenant slug"))?,
                )
            } else {
                None
            };
            Statement::ShowClients { tenant }
        }
        "EVENTS" => {
            const USAGE: &str = "SHOW EVENTS [FOR <slug>] [LIMIT n]";
            let mut tenant = None;
            let mut limit = None;
            while !cursor.done() {
                if tenant.is_none() && cursor.keyword("FOR") {
                    tenant = Some(
                        cursor
                            .name()
                            .ok_or_else(|| ParseError::usage(USAGE, "FOR needs a tenant slug"))?,
                    );
                } else if limit.is_none() && cursor.keyword("LIMIT") {
                    let n = cursor.number().ok_or_else(|| {
                        ParseError::usage(USAGE, "LIMIT needs a number of events")
                    })?;
                    limit = Some(usize::try_from(n).unwrap_or(MAX_EVENTS).min(MAX_EVENTS));
                } else {
                    return Err(ParseError::usage(
                        USAGE,
                        "unexpected text after SHOW EVENTS",
                    ));
                }
            }
            Statement::ShowEvents {
                tenant,
                limit: limit.unwrap_or(DEFAULT_EVENTS),
            }
        }
        _ => return Err(ParseError::unknown()),
    })
}

fn set(cursor: &mut Cursor) -> Result<Statement, ParseError> {
    if cursor.keyword("TENANT") {
        const USAGE: &str = "SET TENANT <slug> PLAN <plan> | SET TENANT <slug> BACKEND <id>";
        let tenant = cursor
            .name()
            .ok_or_else(|| ParseError::usage(USAGE, "SET TENANT needs a tenant slug"))?;
        if cursor.keyword("PLAN") {
            let plan = cursor
                .name()
                .ok_or_else(|| ParseError::usage(USAGE, "PLAN needs a plan name"))?;
            return Ok(Statement::Change(Change::TenantPlan { tenant, plan }));
        }
        if cursor.keyword("BACKEND") {
            let backend = cursor
                .backend_id()
                .ok_or_else(|| ParseError::usage(USAGE, "BACKEND needs a backend id"))?;
            return Ok(Statement::Change(Change::TenantBackend { tenant, backend }));
        }
        return Err(ParseError::usage(
            USAGE,
            "SET TENANT changes a tenant's PLAN or BACKEND",
        ));
    }
    if cursor.keyword("GLOBAL") || cursor.keyword("PERSIST") {
        return Err(ParseError(format!(
            "SET GLOBAL is not supported on the admin port; accepted: {ACCEPTED}"
        )));
    }
    // What connectors send on connect. Anything else named SET is refused
    // rather than ignored, so a mistyped change never looks applied.
    let charset = cursor.keyword("NAMES")
        || cursor.keyword("CHARSET")
        || (cursor.keyword("CHARACTER") && cursor.keyword("SET"));
    let assignment = charset || {
        let _ = cursor.keyword("SESSION") || cursor.keyword("LOCAL");
        matches!(cursor.next(), Some(Token::Word(w)) if !w.eq_ignore_ascii_case("BACKEND"))
            && matches!(cursor.next(), Some(Token::Equals))
    };
    if !assignment {
        return Err(ParseError::unknown());
    }
    // The values are not looked at; the rest may be `x = 1, y = 2`.
    cursor.at = cursor.tokens.len();
    Ok(Statement::SessionSetting)
}

fn status(cursor: &mut Cursor, verb: &str, status: TenantStatus) -> Result<Statement, ParseError> {
    let usage = format!("{verb} TENANT <slug>");
    if !cursor.keyword("TENANT") {
        return Err(ParseError::usage(
            &usage,
            &format!("{verb} applies to a TENANT"),
        ));
    }
    let tenant = cursor
        .name()
        .ok_or_else(|| ParseError::usage(&usage, &format!("{verb} TENANT needs a tenant slug")))?;
    Ok(Statement::Change(Change::TenantStatus { tenant, status }))
}

fn drain(cursor: &mut Cursor, verb: &str, draining: bool) -> Result<Statement, ParseError> {
    let usage = format!("{verb} BACKEND <id>");
    if !cursor.keyword("BACKEND") {
        return Err(ParseError::usage(
            &usage,
            &format!("{verb} applies to a BACKEND"),
        ));
    }
    let backend = cursor
        .backend_id()
        .ok_or_else(|| ParseError::usage(&usage, &format!("{verb} BACKEND needs a backend id")))?;
    Ok(Statement::Change(Change::BackendDraining {
        backend,
        draining,
    }))
}

fn kill(cursor: &mut Cursor) -> Result<Statement, ParseError> {
    const USAGE: &str = "KILL CLIENT <id>";
    let _ = cursor.keyword("CLIENT") || cursor.keyword("CONNECTION");
    let id = cursor.number().ok_or_else(|| {
        ParseError::usage(
            USAGE,
            "KILL CLIENT needs a silo connection id (SHOW CLIENTS)",
        )
    })?;
    Ok(Statement::KillClient(id))
}

fn select(cursor: &mut Cursor) -> Result<Statement, ParseError> {
    let mut items = Vec::new();
    loop {
        let item = select_item(cursor).ok_or_else(ParseError::unknown)?;
        items.push(item);
        if !matches!(cursor.peek(), Some(Token::Comma)) {
            break;
        }
        cursor.next();
    }
    let mut limit = None;
    if cursor.keyword("LIMIT") {
        limit = Some(cursor.number().ok_or_else(ParseError::unknown)?);
    }
    if !cursor.done() {
        return Err(ParseError::unknown());
    }
    Ok(Statement::Select { items, limit })
}

fn select_item(cursor: &mut Cursor) -> Option<SelectItem> {
    let (expr, written) = match cursor.next()?.clone() {
        Token::Word(w) if w.starts_with("@@") => {
            let name = w.trim_start_matches("@@").to_ascii_lowercase();
            let name = ["session.", "global.", "local."]
                .iter()
                .find_map(|scope| name.strip_prefix(scope))
                .map_or(name.clone(), str::to_string);
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return None;
            }
            (Expr::Variable(name), w)
        }
        Token::Word(w) if w.chars().all(|c| c.is_ascii_digit()) => {
            (Expr::Integer(w.parse().ok()?), w)
        }
        Token::Word(w) if w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            if cursor.next() != Some(&Token::LParen) || cursor.next() != Some(&Token::RParen) {
                return None;
            }
            let upper = w.to_ascii_uppercase();
            (Expr::Function(upper), format!("{w}()"))
        }
        Token::Quoted(s) => (Expr::Text(s.clone()), s),
        _ => return None,
    };
    let label = if cursor.keyword("AS") {
        cursor.name()?
    } else {
        written
    };
    Some(SelectItem { expr, label })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Statement {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(s) => panic!("{text:?} parsed as {s:?}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn show_commands_any_case_with_or_without_semicolon() {
        assert_eq!(ok("SHOW TENANTS"), Statement::ShowTenants);
        assert_eq!(ok("  show   tenants ;  "), Statement::ShowTenants);
        assert_eq!(ok("Show Backends;"), Statement::ShowBackends);
        assert_eq!(ok("show pools"), Statement::ShowPools);
        assert_eq!(ok("show plans"), Statement::ShowPlans);
        assert_eq!(ok("show usage;;"), Statement::ShowUsage);
        assert_eq!(ok("SHOW TENANT acme"), Statement::ShowTenant("acme".into()));
        assert_eq!(
            ok("show tenant `acme`"),
            Statement::ShowTenant("acme".into())
        );
        assert_eq!(
            ok("show tenant 'a-b_c'"),
            Statement::ShowTenant("a-b_c".into())
        );
        assert_eq!(ok("SHOW CLIENTS"), Statement::ShowClients { tenant: None });
        assert_eq!(
            ok("show clients for 'acme'"),
            Statement::ShowClients {
                tenant: Some("acme".into())
            }
        );
    }

    #[test]
    fn show_events_clauses() {
        assert_eq!(
            ok("SHOW EVENTS"),
            Statement::ShowEvents {
                tenant: None,
                limit: DEFAULT_EVENTS
            }
        );
        let both = Statement::ShowEvents {
            tenant: Some("acme".into()),
            limit: 5,
        };
        assert_eq!(ok("show events for acme limit 5"), both);
        assert_eq!(ok("show events limit 5 for `acme`;"), both);
        assert_eq!(
            ok("show events limit 99999999999"),
            Statement::ShowEvents {
                tenant: None,
                limit: MAX_EVENTS
            }
        );
        assert!(err("show events limit x").contains("LIMIT needs a number"));
        assert!(err("show events for").contains("usage: SHOW EVENTS"));
        assert!(err("show events limit 1 limit 2").contains("usage: SHOW EVENTS"));
    }

    #[test]
    fn changes() {
        assert_eq!(
            ok("SET TENANT acme PLAN pro"),
            Statement::Change(Change::TenantPlan {
                tenant: "acme".into(),
                plan: "pro".into()
            })
        );
        assert_eq!(
            ok("set tenant 'acme' backend 2;"),
            Statement::Change(Change::TenantBackend {
                tenant: "acme".into(),
                backend: 2
            })
        );
        for (verb, status) in [
            ("suspend", TenantStatus::Suspended),
            ("RESUME", TenantStatus::Active),
            ("Pause", TenantStatus::Paused),
        ] {
            assert_eq!(
                ok(&format!("{verb} tenant acme")),
                Statement::Change(Change::TenantStatus {
                    tenant: "acme".into(),
                    status
                })
            );
        }
        assert_eq!(
            ok("DRAIN BACKEND 2"),
            Statement::Change(Change::BackendDraining {
                backend: 2,
                draining: true
            })
        );
        assert_eq!(
            ok("undrain backend `2`"),
            Statement::Change(Change::BackendDraining {
                backend: 2,
                draining: false
            })
        );
        assert_eq!(ok("KILL CLIENT 42"), Statement::KillClient(42));
        assert_eq!(ok("kill 42;"), Statement::KillClient(42));
        assert_eq!(ok("reload"), Statement::Reload);
    }

    #[test]
    fn bad_arguments_name_the_usage() {
        assert!(err("SHOW TENANT").contains("usage: SHOW TENANT <slug>"));
        assert!(err("SET TENANT acme").contains("usage: SET TENANT <slug> PLAN <plan>"));
        assert!(err("SET TENANT acme PLAN").contains("PLAN needs a plan name"));
        assert!(err("SET TENANT acme BACKEND two").contains("BACKEND needs a backend id"));
        assert!(err("SET TENANT acme BACKEND 99999999999").contains("backend id"));
        assert!(err("DRAIN 2").contains("usage: DRAIN BACKEND <id>"));
        assert!(err("undrain backend").contains("usage: UNDRAIN BACKEND <id>"));
        assert!(err("suspend acme").contains("usage: SUSPEND TENANT <slug>"));
        assert!(err("KILL CLIENT x").contains("usage: KILL CLIENT <id>"));
        assert!(err("KILL QUERY 3").contains("usage: KILL CLIENT <id>"));
        assert!(err("SHOW TENANTS please").contains("unexpected text"));
        assert!(err("SHOW TENANT 'acme").contains("unterminated"));
        assert!(err("SET tenant = 3").contains("needs a tenant slug"));
    }

    #[test]
    fn unknown_commands_list_what_is_accepted() {
        for text in [
            "",
            ";",
            "DROP TABLE x",
            "SHOW DATABASES",
            "SHOW",
            "SET TENNANT acme PLAN pro",
            "SELECT * FROM tenants",
            "SELECT @@",
            "SELECT 1 +",
            "show tenants; show pools",
            "\u{0}\u{7f}\u{feff}",
            "'",
            "/* never closed",
        ] {
            let message = err(text);
            assert!(
                message.contains("accepted: SHOW TENANTS |") || message.contains("unterminated"),
                "{text:?}: {message}"
            );
        }
        let message = err("DROP TABLE x");
        assert!(
            message.starts_with("unknown admin command; accepted:"),
            "{message}"
        );
        assert!(message.contains("KILL CLIENT <id> | RELOAD"), "{message}");
        assert!(err("set global max_connections = 1").contains("SET GLOBAL"));
    }

    #[test]
    fn what_connectors_send_on_connect() {
        assert_eq!(
            ok("SELECT @@max_allowed_packet,@@wait_timeout"),
            Statement::Select {
                items: vec![
                    SelectItem {
                        expr: Expr::Variable("max_allowed_packet".into()),
                        label: "@@max_allowed_packet".into()
                    },
                    SelectItem {
                        expr: Expr::Variable("wait_timeout".into()),
                        label: "@@wait_timeout".into()
                    }
                ],
                limit: None
            }
        );
        assert_eq!(
            ok("select @@version_comment limit 1"),
            Statement::Select {
                items: vec![SelectItem {
                    expr: Expr::Variable("version_comment".into()),
                    label: "@@version_comment".into()
                }],
                limit: Some(1)
            }
        );
        let Statement::Select { items, .. } = ok(
            "/* mysql-connector-java */ SELECT @@session.auto_increment_increment AS auto_increment_increment, @@GLOBAL.Character_Set_Client AS cs, DATABASE(), 1, 'x'",
        ) else {
            panic!("not a select")
        };
        let labels: Vec<_> = items.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(
            labels,
            ["auto_increment_increment", "cs", "DATABASE()", "1", "x"]
        );
        assert_eq!(items[1].expr, Expr::Variable("character_set_client".into()));
        assert_eq!(items[2].expr, Expr::Function("DATABASE".into()));
        for text in [
            "SET NAMES utf8mb4",
            "set names 'utf8mb4' collate 'utf8mb4_general_ci'",
            "SET autocommit=1",
            "SET SESSION autocommit = 1, sql_mode = ''",
            "SET @@session.time_zone = '+00:00'",
            "SET CHARACTER SET utf8",
        ] {
            assert_eq!(ok(text), Statement::SessionSetting, "{text}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix of a few tricky inputs.
        let inputs = [
            "SHOW EVENTS FOR `a``b` LIMIT 3;",
            "SELECT @@a AS 'b', X() , 'it''s' LIMIT 0",
            "SET TENANT \"q\" BACKEND 4294967296",
            "/* c */ KILL CONNECTION 18446744073709551616",
            "ſhow tenants",
        ];
        for input in inputs {
            for end in (0..=input.len()).filter(|i| input.is_char_boundary(*i)) {
                let _ = parse(&input[..end]);
            }
        }
        assert_eq!(
            ok("show tenant `a``b`"),
            Statement::ShowTenant("a`b".into())
        );
    }
}
