//! SQL text turned into span fields: the operation and the table a statement
//! names ([`summary`]: `db.operation.name`, `db.collection.name`), and the text
//! with its literal values replaced by `?` ([`sanitize`]: `db.query.text`).

/// The longest `db.query.text` exported (the kernel copies at most
/// `SQL_QUERY_CAP` bytes; the sanitised text is cut at a character boundary).
pub const QUERY_TEXT_MAX: usize = 256;

/// `text` with every literal value replaced by `?`: quoted strings ('…', E'…'),
/// dollar-quoted strings ($$…$$, $tag$…$tag$), numbers (not inside identifiers),
/// and "…" — a string in MySQL (`double_quoted_strings`), an identifier in
/// PostgreSQL unless it holds more than identifier characters. Placeholders
/// (`$1`, `?`) stay; comments are dropped. A string cut by the kernel's bound
/// loses its tail (`?`).
pub fn sanitize(text: &str, double_quoted_strings: bool) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    // The last byte copied: a digit right after an identifier character is part
    // of the identifier (`t1`, `col_2`).
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                let end = skip_quoted(b, i, c);
                let closed = end > i + 1 && b[end - 1] == c;
                let inner = &b[i + 1..if closed { end - 1 } else { end }];
                if c == b'"' && !double_quoted_strings && closed && !inner.is_empty() && inner.iter().all(|&x| ident(x))
                {
                    // PostgreSQL: "Users" is an identifier.
                    out.push_str(&text[i..end]);
                } else {
                    // E'…', N'…', X'…', B'…': the prefix goes with the literal.
                    let ob = out.as_bytes();
                    let prefixed = ob.last().is_some_and(|p| b"EeNnXxBb".contains(p))
                        && !(ob.len() >= 2 && ident(ob[ob.len() - 2]));
                    if c == b'\'' && prefixed {
                        out.pop();
                    }
                    out.push('?');
                }
                i = end;
            }
            b'$' if b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) => {
                // $1: a placeholder.
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                out.push_str(&text[i..j]);
                i = j;
            }
            b'$' => {
                // $$…$$ or $tag$…$tag$
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                if j < b.len() && b[j] == b'$' {
                    let tag = &text[i..=j];
                    let body = j + 1;
                    i = text[body..].find(tag).map_or(b.len(), |k| body + k + tag.len());
                    out.push('?');
                } else {
                    out.push('$');
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = text[i..].find('\n').map_or(b.len(), |k| i + k);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..].find("*/").map_or(b.len(), |k| i + 2 + k + 2);
                out.push(' ');
            }
            b'0'..=b'9' | b'.'
                if (c != b'.' || b.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
                    && !out.as_bytes().last().is_some_and(|&p| ident(p) || p == b'.' || p == b'$') =>
            {
                // A number: digits, a fraction, an exponent, or hex (0x…).
                let mut j = i;
                if c == b'0' && matches!(b.get(i + 1), Some(b'x' | b'X')) {
                    j += 2;
                    while j < b.len() && b[j].is_ascii_hexdigit() {
                        j += 1;
                    }
                } else {
                    while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.') {
                        j += 1;
                    }
                    if j < b.len() && matches!(b[j], b'e' | b'E') {
                        let k = j + 1 + usize::from(matches!(b.get(j + 1), Some(b'+' | b'-')));
                        if b.get(k).is_some_and(|d| d.is_ascii_digit()) {
                            j = k;
                            while j < b.len() && b[j].is_ascii_digit() {
                                j += 1;
                            }
                        }
                    }
                }
                out.push('?');
                i = j;
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
                out.push(ch);
                i += ch.len_utf8().max(1);
            }
        }
    }
    cut(out.trim().to_string(), QUERY_TEXT_MAX)
}

/// The index after the quoted string that starts at `start` (quote `q`); doubled
/// quotes and backslash escapes stay inside; an unterminated one runs to the end.
fn skip_quoted(b: &[u8], start: usize, q: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == q {
            if b.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut n = max;
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        s.truncate(n);
    }
    s
}

/// `db.operation.name` and `db.collection.name` of a statement: the first
/// keyword (upper-cased), and the table it reads or writes when a simple
/// statement names one (`SELECT … FROM t`, `INSERT INTO t`, `UPDATE t`,
/// `DELETE FROM t`, `REPLACE INTO t`); none for a join, a sub-select or a list
/// of tables.
pub fn summary(text: &str) -> (Option<String>, Option<String>) {
    let words = tokens(text);
    let Some(first) = words.first() else { return (None, None) };
    if !first.chars().all(|c| c.is_ascii_alphabetic()) {
        return (None, None);
    }
    let op = first.to_ascii_uppercase();
    let after = |kw: &str| -> Option<String> {
        let i = words.iter().position(|w| w.eq_ignore_ascii_case(kw))?;
        table_name(words.get(i + 1)?)
    };
    let table = match op.as_str() {
        "SELECT" => {
            let from = words.iter().position(|w| w.eq_ignore_ascii_case("from"));
            let simple = !words
                .iter()
                .any(|w| w.eq_ignore_ascii_case("join") || w.eq_ignore_ascii_case("select") && !std::ptr::eq(w, first))
                && from.is_some_and(|i| words.get(i + 2).is_none_or(|w| *w != ","));
            if simple {
                after("from")
            } else {
                None
            }
        }
        "INSERT" | "REPLACE" => after("into"),
        "UPDATE" => words.get(1).and_then(|w| table_name(w)),
        "DELETE" => after("from"),
        _ => None,
    };
    (Some(op), table)
}

/// Words and single punctuation characters of a statement (comments and
/// literals are not looked into: a table name never follows one).
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'"' | b'`') || c >= 0x80 {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b'"' | b'`' | b'$') || b[i] >= 0x80)
            {
                i += 1;
            }
            out.push(&text[start..i]);
        } else {
            out.push(&text[i..i + 1]);
            i += 1;
        }
        if out.len() > 64 {
            break;
        }
    }
    out
}

/// A table name as written (`users`, `shop.users`, `"Users"`, `` `users` ``),
/// quotes removed; None for anything else (a sub-select, a parenthesis).
fn table_name(w: &str) -> Option<String> {
    let t: String = w.chars().filter(|c| *c != '"' && *c != '`').collect();
    let ok = !t.is_empty()
        && t.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '$')
        && !t.starts_with(|c: char| c.is_ascii_digit());
    ok.then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sanitize_pg(t: &str) -> String {
        sanitize(t, false)
    }

    #[test]
    fn literals_become_placeholders() {
        assert_eq!(
            sanitize_pg("SELECT name FROM users WHERE id = 42 AND name <> 'secret'"),
            "SELECT name FROM users WHERE id = ? AND name <> ?"
        );
        assert_eq!(sanitize_pg("SELECT 1"), "SELECT ?");
        assert_eq!(
            sanitize_pg("SELECT * FROM t1 WHERE a = -3.5e10 AND b = 0x1F"),
            "SELECT * FROM t1 WHERE a = -? AND b = ?"
        );
        assert_eq!(sanitize_pg("SELECT 'it''s', E'a\\'b', $$x$$, $q$y$q$"), "SELECT ?, ?, ?, ?");
        assert_eq!(sanitize_pg("SELECT pg_sleep(1)"), "SELECT pg_sleep(?)");
        assert_eq!(sanitize_pg("SELECT SLEEP(1) -- 'comment'\n"), "SELECT SLEEP(?)");
        assert_eq!(sanitize_pg("SELECT /* 7 */ col_2 FROM \"Users\""), "SELECT   col_2 FROM \"Users\"");
        assert_eq!(sanitize_pg("INSERT INTO t (a) VALUES (\"secret value!\")"), "INSERT INTO t (a) VALUES (?)");
        assert_eq!(sanitize("INSERT INTO t (a) VALUES (\"secret\")", true), "INSERT INTO t (a) VALUES (?)");
        assert_eq!(sanitize_pg("SELECT 'unterminated"), "SELECT ?");
    }

    #[test]
    fn placeholders_and_identifiers_stay() {
        assert_eq!(sanitize_pg("SELECT id, name FROM users WHERE id = $1"), "SELECT id, name FROM users WHERE id = $1");
        assert_eq!(sanitize_pg("UPDATE users SET v = ? WHERE id = ?"), "UPDATE users SET v = ? WHERE id = ?");
        assert_eq!(sanitize_pg("SELECT a.b1, x2y FROM s.t3"), "SELECT a.b1, x2y FROM s.t3");
        let long = format!("SELECT {}", "a, ".repeat(200));
        assert!(sanitize_pg(&long).len() <= QUERY_TEXT_MAX);
        assert_eq!(cut("ééé".into(), 3), "é");
    }

    #[test]
    fn operations_and_tables() {
        let s = |t: &str| {
            let (o, c) = summary(t);
            (o.unwrap_or_default(), c.unwrap_or_default())
        };
        assert_eq!(s("SELECT id, name FROM users WHERE id = $1"), ("SELECT".into(), "users".into()));
        assert_eq!(s("  insert into orders (user_id, amount) VALUES (?, ?)"), ("INSERT".into(), "orders".into()));
        assert_eq!(s("UPDATE users SET visits = visits + 1 WHERE id = $1"), ("UPDATE".into(), "users".into()));
        assert_eq!(s("DELETE FROM shop.users WHERE id = 1"), ("DELETE".into(), "shop.users".into()));
        assert_eq!(s("SELECT * FROM \"Users\""), ("SELECT".into(), "Users".into()));
        assert_eq!(s("SELECT 1"), ("SELECT".into(), "".into()));
        assert_eq!(s("SELECT pg_sleep(1)"), ("SELECT".into(), "".into()));
        assert_eq!(s("SELECT * FROM a JOIN b ON a.id = b.id"), ("SELECT".into(), "".into()));
        assert_eq!(s("SELECT * FROM a, b"), ("SELECT".into(), "".into()));
        assert_eq!(s("SELECT * FROM (SELECT 1) x"), ("SELECT".into(), "".into()));
        assert_eq!(s("SELECT * FORM users"), ("SELECT".into(), "".into()));
        assert_eq!(s("begin"), ("BEGIN".into(), "".into()));
        assert_eq!(summary("(SELECT 1)"), (None, None));
        assert_eq!(summary(""), (None, None));
    }
}
