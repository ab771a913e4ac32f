//! A single pass over a statement's text that notes what can leave session
//! state behind where the server's session tracking says too little.
//!
//! MariaDB reports most state changes in OK packets, but not all: a user
//! variable assigned inside a SELECT (`SELECT @a := 1`, `SELECT … INTO @a`),
//! GET_LOCK, FLUSH TABLES WITH READ LOCK and HANDLER … OPEN change the
//! session silently. This lexer skips strings, quoted identifiers and
//! comments, never allocates, and never fails: unknown text just yields no
//! traits. The server's own report still decides everything it covers.

/// The first keyword of a statement, where it matters for session state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keyword {
    #[default]
    Other,
    Lock,
    Unlock,
    Flush,
    Create,
    Drop,
    Set,
    Handler,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SqlTraits {
    pub first: Keyword,
    /// `CREATE TEMPORARY …` or `DROP TEMPORARY …`.
    pub temporary: bool,
    /// Mentions a user variable (`@name`, not `@@name`).
    pub user_variable: bool,
    /// Assigns one where the server does not report it (`:=`, `INTO @`).
    pub user_variable_assigned: bool,
    pub get_lock: u8,
    pub release_lock: u8,
    pub release_all_locks: bool,
    /// `FLUSH TABLES … WITH READ LOCK`.
    pub read_lock: bool,
    /// Calls LAST_INSERT_ID(), whose value belongs to the connection.
    pub last_insert_id: bool,
}

impl SqlTraits {
    /// Reads `sql` (the text of a COM_QUERY or COM_STMT_PREPARE).
    pub fn of(sql: &[u8]) -> Self {
        let mut traits = SqlTraits::default();
        let mut words = 0u32;
        let mut after_into = false;
        let mut after_read = false;
        let mut i = 0;
        while let Some(&b) = sql.get(i) {
            match b {
                b'\'' | b'"' | b'`' => {
                    i = skip_quoted(sql, i);
                    after_into = false;
                }
                b'#' => i = skip_line(sql, i),
                b'-' if sql.get(i + 1) == Some(&b'-')
                    && sql.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
                {
                    i = skip_line(sql, i);
                }
                b'/' if sql.get(i + 1) == Some(&b'*') => {
                    // `/*! … */` and `/*M! … */` are executed: read their
                    // content as code, only the markers are skipped.
                    let marker = match (sql.get(i + 2), sql.get(i + 3)) {
                        (Some(b'!'), _) => Some(3),
                        (Some(b'M'), Some(b'!')) => Some(4),
                        _ => None,
                    };
                    if let Some(marker) = marker {
                        i += marker;
                        // The version the comment applies from.
                        while sql.get(i).is_some_and(u8::is_ascii_digit) {
                            i += 1;
                        }
                    } else {
                        i = skip_comment(sql, i);
                    }
                }
                b'*' if sql.get(i + 1) == Some(&b'/') => i += 2,
                b'@' => {
                    if sql.get(i + 1) == Some(&b'@') {
                        // A system variable: skip its name.
                        i = skip_word(sql, i + 2);
                    } else {
                        traits.user_variable = true;
                        if after_into {
                            traits.user_variable_assigned = true;
                        }
                        i += 1;
                    }
                    after_into = false;
                }
                b':' if sql.get(i + 1) == Some(&b'=') => {
                    traits.user_variable_assigned |= traits.user_variable;
                    i += 2;
                }
                _ if is_word(b) => {
                    let end = skip_word(sql, i);
                    let word = sql.get(i..end).unwrap_or_default();
                    traits.on_word(word, words, sql.get(end) == Some(&b'('));
                    after_into = word.eq_ignore_ascii_case(b"INTO");
                    if traits.first == Keyword::Flush {
                        if after_read && word.eq_ignore_ascii_case(b"LOCK") {
                            traits.read_lock = true;
                        }
                        after_read = word.eq_ignore_ascii_case(b"READ");
                    }
                    words += 1;
                    i = end;
                }
                _ => {
                    if !b.is_ascii_whitespace() {
                        after_into = false;
                    }
                    i += 1;
                }
            }
        }
        traits
    }

    fn on_word(&mut self, word: &[u8], index: u32, call: bool) {
        let is = |w: &[u8]| word.eq_ignore_ascii_case(w);
        if index == 0 {
            self.first = [
                (&b"LOCK"[..], Keyword::Lock),
                (b"UNLOCK", Keyword::Unlock),
                (b"FLUSH", Keyword::Flush),
                (b"CREATE", Keyword::Create),
                (b"DROP", Keyword::Drop),
                (b"SET", Keyword::Set),
                (b"HANDLER", Keyword::Handler),
            ]
            .iter()
            .find(|(k, _)| is(k))
            .map_or(Keyword::Other, |(_, kw)| *kw);
        } else if index == 1
            && matches!(self.first, Keyword::Create | Keyword::Drop)
            && is(b"TEMPORARY")
        {
            self.temporary = true;
        }
        if call {
            if is(b"GET_LOCK") {
                self.get_lock = self.get_lock.saturating_add(1);
            } else if is(b"RELEASE_LOCK") {
                self.release_lock = self.release_lock.saturating_add(1);
            } else if is(b"RELEASE_ALL_LOCKS") {
                self.release_all_locks = true;
            } else if is(b"LAST_INSERT_ID") {
                self.last_insert_id = true;
            }
        }
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn skip_word(sql: &[u8], mut i: usize) -> usize {
    while sql.get(i).is_some_and(|&b| is_word(b)) {
        i += 1;
    }
    i
}

/// Past the closing quote; a doubled quote or a backslash escape stays inside.
fn skip_quoted(sql: &[u8], start: usize) -> usize {
    let Some(&quote) = sql.get(start) else {
        return start + 1;
    };
    let mut i = start + 1;
    while let Some(&b) = sql.get(i) {
        if b == b'\\' && quote != b'`' {
            i += 2;
        } else if b == quote {
            if sql.get(i + 1) == Some(&quote) {
                i += 2;
            } else {
                return i + 1;
            }
        } else {
            i += 1;
        }
    }
    sql.len()
}

fn skip_line(sql: &[u8], i: usize) -> usize {
    sql.get(i..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
        .map_or(sql.len(), |p| i + p + 1)
}

fn skip_comment(sql: &[u8], i: usize) -> usize {
    sql.get(i + 2..)
        .and_then(|rest| rest.windows(2).position(|w| w == b"*/"))
        .map_or(sql.len(), |p| i + 2 + p + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(sql: &str) -> SqlTraits {
        SqlTraits::of(sql.as_bytes())
    }

    #[test]
    fn first_keyword_after_comments() {
        assert_eq!(t("  /* hi */ lock tables t write").first, Keyword::Lock);
        assert_eq!(t("-- x\nUNLOCK TABLES").first, Keyword::Unlock);
        assert_eq!(t("# x\nhandler t open").first, Keyword::Handler);
        assert_eq!(t("select 1").first, Keyword::Other);
        assert_eq!(t("").first, Keyword::Other);
    }

    #[test]
    fn temporary_tables() {
        assert!(t("CREATE TEMPORARY TABLE t (a int)").temporary);
        assert!(t("drop temporary table if exists t").temporary);
        assert!(!t("create table temporary_x (a int)").temporary);
        assert!(!t("select 'create temporary'").temporary);
    }

    #[test]
    fn user_variables() {
        let set = t("SET @x = 1");
        assert!(set.user_variable && !set.user_variable_assigned);
        assert!(t("select @y := 2").user_variable_assigned);
        assert!(t("select 1 into @z").user_variable_assigned);
        assert!(t("SELECT a INTO @`z` FROM t").user_variable_assigned);
        assert!(!t("select @@session.time_zone").user_variable);
        assert!(!t("insert into t values ('a@b.example', ':=')").user_variable);
        assert!(!t("select `a@b` from t").user_variable);
        let read = t("select @x");
        assert!(read.user_variable && !read.user_variable_assigned);
    }

    #[test]
    fn user_locks() {
        let got = t("SELECT GET_LOCK('a', 0), get_lock('b', 1)");
        assert_eq!(got.get_lock, 2);
        assert_eq!(t("do release_lock('a')").release_lock, 1);
        assert!(t("select release_all_locks()").release_all_locks);
        assert_eq!(t("select 'get_lock(' from t").get_lock, 0);
        assert_eq!(t("select get_lock_x('a')").get_lock, 0);
    }

    #[test]
    fn last_insert_id_calls() {
        assert!(t("SELECT LAST_INSERT_ID()").last_insert_id);
        assert!(t("insert into t values (last_insert_id())").last_insert_id);
        assert!(!t("select 'last_insert_id()'").last_insert_id);
    }

    #[test]
    fn global_read_lock() {
        assert!(t("FLUSH TABLES WITH READ LOCK").read_lock);
        assert!(t("flush tables t1, t2 with read lock").read_lock);
        assert!(!t("flush tables").read_lock);
        assert!(!t("select 'read lock'").read_lock);
    }

    #[test]
    fn executable_comments_are_code() {
        assert!(t("/*!40101 SET @x := 1 */").user_variable_assigned);
        assert_eq!(t("/*!40101 SET @x := 1 */").first, Keyword::Set);
    }

    #[test]
    fn never_panics_on_garbage() {
        for text in [
            &b"'"[..],
            b"\"\\",
            b"/*",
            b"--",
            b"@",
            b"@@",
            b":",
            b"\xff\xfe(",
            b"`",
            b"/*!",
        ] {
            let _ = SqlTraits::of(text);
        }
    }
}
