//! Databricks SQL to SQLite translation: a small tokenizer, dotted-name rewriting, DDL clause stripping.
//! MERGE INTO is parsed into a [`MergePlan`] that the engine runs as several SQLite statements.

use std::collections::BTreeSet;

use crate::types::{ARRAY_DECL_PREFIX, Kind};

/// One lexical token. Whitespace and comments collapse into `Space`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Tok {
    /// Bare word: keyword or unquoted identifier.
    Word(String),
    /// Quoted identifier (backticks in Databricks), quotes removed.
    Ident(String),
    /// String literal, decoded (escapes resolved, quotes removed).
    Str(String),
    Num(String),
    /// Named parameter marker `:name` (name without the colon).
    Param(String),
    Punct(String),
    Space,
}

impl Tok {
    fn is_word(&self, w: &str) -> bool {
        matches!(self, Tok::Word(x) if x.eq_ignore_ascii_case(w))
    }
    fn is_punct(&self, p: &str) -> bool {
        matches!(self, Tok::Punct(x) if x == p)
    }
    fn ident_name(&self) -> Option<&str> {
        match self {
            Tok::Word(w) | Tok::Ident(w) => Some(w),
            _ => None,
        }
    }
    fn upper(&self) -> Option<String> {
        match self {
            Tok::Word(w) => Some(w.to_ascii_uppercase()),
            _ => None,
        }
    }
}

/// Splits Databricks SQL into tokens. Double-quoted text is a string literal, as in Databricks SQL.
pub(crate) fn tokenize(sql: &str) -> Result<Vec<Tok>, String> {
    let c: Vec<char> = sql.chars().collect();
    let mut out: Vec<Tok> = Vec::new();
    let mut i = 0;
    let space = |out: &mut Vec<Tok>| {
        if !matches!(out.last(), Some(Tok::Space)) {
            out.push(Tok::Space)
        }
    };
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch.is_whitespace() {
            while i < c.len() && c[i].is_whitespace() {
                i += 1;
            }
            space(&mut out);
        } else if ch == '-' && next == Some('-') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            space(&mut out);
        } else if ch == '/' && next == Some('*') {
            let mut j = i + 2;
            loop {
                if j + 1 >= c.len() {
                    return Err("[PARSE_SYNTAX_ERROR] unterminated comment".into());
                }
                if c[j] == '*' && c[j + 1] == '/' {
                    break;
                }
                j += 1;
            }
            i = j + 2;
            space(&mut out);
        } else if ch == '\'' || ch == '"' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                let Some(&d) = c.get(j) else {
                    return Err("[PARSE_SYNTAX_ERROR] unterminated string literal".into());
                };
                if d == '\\' {
                    let e = c
                        .get(j + 1)
                        .copied()
                        .ok_or("[PARSE_SYNTAX_ERROR] unterminated string literal")?;
                    s.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        other => other,
                    });
                    j += 2;
                } else if d == ch {
                    if c.get(j + 1) == Some(&ch) {
                        s.push(ch);
                        j += 2;
                    } else {
                        j += 1;
                        break;
                    }
                } else {
                    s.push(d);
                    j += 1;
                }
            }
            out.push(Tok::Str(s));
            i = j;
        } else if ch == '`' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                let Some(&d) = c.get(j) else {
                    return Err("[PARSE_SYNTAX_ERROR] unterminated quoted identifier".into());
                };
                if d == '`' {
                    if c.get(j + 1) == Some(&'`') {
                        s.push('`');
                        j += 2;
                        continue;
                    }
                    j += 1;
                    break;
                }
                s.push(d);
                j += 1;
            }
            out.push(Tok::Ident(s));
            i = j;
        } else if ch.is_ascii_digit() || (ch == '.' && next.is_some_and(|n| n.is_ascii_digit())) {
            let mut j = i;
            while j < c.len() && (c[j].is_ascii_digit() || c[j] == '.') {
                j += 1;
            }
            if j < c.len() && (c[j] == 'e' || c[j] == 'E') {
                let mut k = j + 1;
                if k < c.len() && (c[k] == '+' || c[k] == '-') {
                    k += 1;
                }
                if k < c.len() && c[k].is_ascii_digit() {
                    while k < c.len() && c[k].is_ascii_digit() {
                        k += 1;
                    }
                    j = k;
                }
            }
            out.push(Tok::Num(c[i..j].iter().collect()));
            i = j;
        } else if ch.is_alphabetic() || ch == '_' {
            let mut j = i;
            while j < c.len() && (c[j].is_alphanumeric() || c[j] == '_' || c[j] == '$') {
                j += 1;
            }
            out.push(Tok::Word(c[i..j].iter().collect()));
            i = j;
        } else if ch == ':' && next == Some(':') {
            out.push(Tok::Punct("::".into()));
            i += 2;
        } else if ch == ':' && next.is_some_and(|n| n.is_alphabetic() || n == '_') {
            let mut j = i + 1;
            while j < c.len() && (c[j].is_alphanumeric() || c[j] == '_') {
                j += 1;
            }
            out.push(Tok::Param(c[i + 1..j].iter().collect()));
            i = j;
        } else {
            let three: String = c[i..(i + 3).min(c.len())].iter().collect();
            let two: String = c[i..(i + 2).min(c.len())].iter().collect();
            let p = if three == "<=>" {
                three
            } else if ["<=", ">=", "<>", "!=", "==", "||"].contains(&two.as_str()) {
                two
            } else {
                ch.to_string()
            };
            i += p.chars().count();
            out.push(Tok::Punct(p));
        }
    }
    Ok(out)
}

/// Renders tokens as SQLite SQL.
pub(crate) fn render(toks: &[Tok]) -> String {
    let mut s = String::new();
    for t in toks {
        match t {
            Tok::Word(w) => s.push_str(w),
            Tok::Ident(w) => {
                s.push('"');
                s.push_str(&w.replace('"', "\"\""));
                s.push('"');
            }
            Tok::Str(v) => {
                s.push('\'');
                s.push_str(&v.replace('\'', "''"));
                s.push('\'');
            }
            Tok::Num(n) => s.push_str(n),
            Tok::Param(p) => {
                s.push(':');
                s.push_str(p);
            }
            Tok::Punct(p) => s.push_str(p),
            Tok::Space => {
                if !s.is_empty() && !s.ends_with(' ') {
                    s.push(' ')
                }
            }
        }
    }
    s
}

/// The named parameter markers used by a statement, and a check that there are no positional ones.
pub(crate) fn parameter_markers(sql: &str) -> Result<BTreeSet<String>, String> {
    let toks = tokenize(sql)?;
    if toks.iter().any(|t| t.is_punct("?")) {
        return Err(
            "positional parameter markers (?) are not supported; use named markers (:name)".into(),
        );
    }
    Ok(toks
        .iter()
        .filter_map(|t| match t {
            Tok::Param(p) => Some(p.clone()),
            _ => None,
        })
        .collect())
}

/// Name resolution context of one statement.
pub(crate) struct Ctx<'a> {
    pub catalog: Option<&'a str>,
    pub schema: Option<&'a str>,
    /// Whether a SQLite table (or view) of this exact name exists.
    pub exists: &'a dyn Fn(&str) -> bool,
    /// Text substituted for `current_timestamp()`.
    pub now: String,
}

/// What to run for one Databricks statement.
#[derive(Debug)]
pub(crate) enum Plan {
    /// CREATE SCHEMA / CATALOG, USE, DROP SCHEMA: accepted, nothing to do.
    NoOp,
    CreateVolume {
        path: String,
        if_not_exists: bool,
    },
    /// SQLite statements run in one savepoint; the last one's rows (if any) are the result.
    /// `ddl` forces an empty result (TRUNCATE, CREATE OR REPLACE).
    Sql {
        statements: Vec<String>,
        ddl: bool,
    },
    Merge(MergePlan),
}

#[derive(Debug)]
pub(crate) struct MergePlan {
    pub target: String,
    pub target_alias: String,
    /// `"name"` or `(subquery)`, ready to put after FROM.
    pub source: String,
    pub source_alias: String,
    pub on: String,
    pub clauses: Vec<MergeClause>,
}

#[derive(Debug)]
pub(crate) struct MergeClause {
    pub when: When,
    pub condition: Option<String>,
    pub action: MergeAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    Matched,
    NotMatched,
    NotMatchedBySource,
}

#[derive(Debug)]
pub(crate) enum MergeAction {
    Delete,
    UpdateAll,
    /// (column, expression)
    Update(Vec<(String, String)>),
    InsertAll,
    Insert {
        columns: Vec<String>,
        values: Vec<String>,
    },
}

fn sig(toks: &[Tok]) -> Vec<(usize, &Tok)> {
    toks.iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t, Tok::Space))
        .collect()
}

/// Translates one Databricks statement.
pub(crate) fn translate(sql: &str, ctx: &Ctx) -> Result<Plan, String> {
    let mut toks = tokenize(sql)?;
    // Trim spaces and trailing semicolons; refuse several statements.
    loop {
        match toks.last() {
            Some(Tok::Space) => {
                toks.pop();
            }
            Some(t) if t.is_punct(";") => {
                toks.pop();
            }
            _ => break,
        }
    }
    while matches!(toks.first(), Some(Tok::Space)) {
        toks.remove(0);
    }
    if toks.is_empty() {
        return Err("[PARSE_SYNTAX_ERROR] empty statement".into());
    }
    if toks.iter().any(|t| t.is_punct(";")) {
        return Err("[PARSE_SYNTAX_ERROR] only one statement per request is supported".into());
    }
    let words: Vec<String> = sig(&toks)
        .iter()
        .take(6)
        .map(|(_, t)| t.upper().unwrap_or_default())
        .collect();
    let w = |i: usize| words.get(i).map(String::as_str).unwrap_or("");

    // CREATE [OR REPLACE] SCHEMA|DATABASE|CATALOG, DROP SCHEMA..., USE ...
    let create_at = if w(0) == "CREATE" && w(1) == "OR" && w(2) == "REPLACE" {
        3
    } else {
        1
    };
    if (w(0) == "CREATE" || w(0) == "DROP")
        && ["SCHEMA", "DATABASE", "CATALOG"].contains(&w(create_at))
    {
        return Ok(Plan::NoOp);
    }
    if w(0) == "USE" {
        return Ok(Plan::NoOp);
    }
    if w(0) == "CREATE" && w(create_at) == "VOLUME" {
        let rest = sig(&toks);
        let mut k = create_at + 1;
        let if_not_exists = w(k) == "IF";
        if if_not_exists {
            k += 3;
        }
        let parts = dotted_parts(&toks, rest.get(k).map(|(i, _)| *i).unwrap_or(toks.len()));
        let parts = match parts.len() {
            3 => parts,
            2 => match ctx.catalog {
                Some(c) => vec![c.to_string(), parts[0].clone(), parts[1].clone()],
                None => return Err("CREATE VOLUME needs a catalog.schema.volume name".into()),
            },
            _ => return Err("CREATE VOLUME needs a catalog.schema.volume name".into()),
        };
        return Ok(Plan::CreateVolume {
            path: format!("/Volumes/{}", parts.join("/")),
            if_not_exists,
        });
    }

    if w(0) == "ALTER" && w(1) == "TABLE" {
        return alter_table(&toks, ctx);
    }

    let mut prefix: Vec<String> = Vec::new();
    let mut ddl = false;
    if w(0) == "CREATE" {
        let is_table = w(create_at) == "TABLE";
        toks = strip_ddl(toks);
        if create_at == 3 {
            // CREATE OR REPLACE TABLE|VIEW x ... -> DROP ... IF EXISTS x; CREATE ... x ...
            let positions = sig(&toks);
            let (or_i, _) = positions[1];
            let (replace_i, _) = positions[2];
            toks.drain(or_i..=replace_i);
            let kind = if is_table { "TABLE" } else { "VIEW" };
            let rewritten = rewrite(toks.clone(), ctx)?;
            let name =
                create_target(&rewritten).ok_or("[PARSE_SYNTAX_ERROR] missing table name")?;
            prefix.push(format!("DROP {kind} IF EXISTS {name}"));
            ddl = true;
        }
    } else if w(0) == "TRUNCATE" && w(1) == "TABLE" {
        let positions = sig(&toks);
        let (t_i, _) = positions[0];
        let (table_i, _) = positions[1];
        toks.splice(
            t_i..=table_i,
            [
                Tok::Word("DELETE".into()),
                Tok::Space,
                Tok::Word("FROM".into()),
            ],
        );
        ddl = true;
    }
    let toks = rewrite(toks, ctx)?;
    if w(0) == "MERGE" {
        return parse_merge(&toks).map(Plan::Merge);
    }
    let mut statements = prefix;
    statements.push(render(&toks).trim_end().to_string());
    Ok(Plan::Sql { statements, ddl })
}

/// `ALTER TABLE t ADD COLUMNS (c TYPE [NOT NULL] [COMMENT '..'], ...)` (or `ADD COLUMN c TYPE`):
/// one SQLite `ADD COLUMN` per column, types translated as CREATE TABLE translates them.
/// `ALTER TABLE t CLUSTER BY (...)` is accepted and does nothing; other ALTERs are refused.
fn alter_table(toks: &[Tok], ctx: &Ctx) -> Result<Plan, String> {
    let unsupported = || {
        "[PARSE_SYNTAX_ERROR] the double supports only ALTER TABLE ... ADD COLUMN(S)".to_string()
    };
    let s = sig(toks);
    // Liquid clustering changes only how Delta lays out files: nothing to do here.
    let has = |word: &str| s.iter().any(|(_, t)| t.is_word(word));
    if has("CLUSTER") && !has("ADD") {
        return Ok(Plan::NoOp);
    }
    let add = s
        .iter()
        .position(|(_, t)| t.is_word("ADD"))
        .filter(|&k| k > 2)
        .ok_or_else(unsupported)?;
    let kind = s
        .get(add + 1)
        .and_then(|(_, t)| t.upper())
        .unwrap_or_default();
    let (defs_at, wrap) = match kind.as_str() {
        "COLUMNS" => (s[add + 1].0 + 1, false),
        "COLUMN" => (s[add + 1].0 + 1, true),
        _ => return Err(unsupported()),
    };
    // As a CREATE TABLE, whose translation maps the name and the column types.
    let mut create = vec![
        Tok::Word("CREATE".into()),
        Tok::Space,
        Tok::Word("TABLE".into()),
        Tok::Space,
    ];
    create.extend_from_slice(&toks[s[2].0..s[add].0]);
    if wrap {
        create.push(Tok::Punct("(".into()));
    }
    create.extend_from_slice(&toks[defs_at..]);
    if wrap {
        create.push(Tok::Punct(")".into()));
    }
    let create = rewrite(strip_ddl(create), ctx)?;
    let target = create_target(&create).ok_or_else(unsupported)?;
    let open = create
        .iter()
        .position(|t| t.is_punct("("))
        .ok_or_else(unsupported)?;
    let close = create
        .iter()
        .rposition(|t| t.is_punct(")"))
        .filter(|&c| c > open)
        .ok_or_else(unsupported)?;
    let statements = split_commas(&create[open + 1..close])
        .iter()
        .map(|def| format!("ALTER TABLE {target} ADD COLUMN {}", render(def)))
        .collect();
    Ok(Plan::Sql {
        statements,
        ddl: true,
    })
}

/// Identifier parts of the dotted name starting at token index `start`.
fn dotted_parts(toks: &[Tok], start: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut j = start;
    while let Some(name) = toks.get(j).and_then(Tok::ident_name) {
        parts.push(name.to_string());
        if toks.get(j + 1).is_some_and(|t| t.is_punct(".")) {
            j += 2;
        } else {
            break;
        }
    }
    parts
}

/// The rendered name of the table created by a (rewritten) CREATE statement.
fn create_target(toks: &[Tok]) -> Option<String> {
    let s = sig(toks);
    let mut k = 2; // CREATE TABLE|VIEW
    if s.get(k).is_some_and(|(_, t)| t.is_word("IF")) {
        k += 3;
    }
    s.get(k).map(|(_, t)| render(std::slice::from_ref(*t)))
}

/// Removes Databricks-only clauses from CREATE TABLE: USING fmt, TBLPROPERTIES (..), OPTIONS (..),
/// COMMENT '..' (table and columns), CLUSTER BY (..)|AUTO|NONE, PARTITIONED BY (..), LOCATION '..'.
fn strip_ddl(toks: Vec<Tok>) -> Vec<Tok> {
    let mut out = Vec::with_capacity(toks.len());
    let mut depth = 0i32;
    let mut i = 0;
    let next_sig = |from: usize| (from..toks.len()).find(|&k| !matches!(toks[k], Tok::Space));
    let skip_group = |open: usize| -> usize {
        // index after the group that opens at `open` ('(').
        let mut d = 0;
        let mut k = open;
        while k < toks.len() {
            if toks[k].is_punct("(") {
                d += 1;
            } else if toks[k].is_punct(")") {
                d -= 1;
                if d == 0 {
                    return k + 1;
                }
            }
            k += 1;
        }
        toks.len()
    };
    while i < toks.len() {
        let t = &toks[i];
        if depth == 0 && t.is_word("AS") {
            out.extend_from_slice(&toks[i..]);
            break;
        }
        if depth <= 1
            && t.is_word("COMMENT")
            && let Some(n) = next_sig(i + 1)
            && matches!(toks[n], Tok::Str(_))
        {
            i = n + 1;
            continue;
        }
        if depth == 0 {
            if t.is_word("USING")
                && let Some(n) = next_sig(i + 1)
            {
                i = n + 1;
                continue;
            }
            if (t.is_word("TBLPROPERTIES") || t.is_word("OPTIONS"))
                && let Some(n) = next_sig(i + 1)
                && toks[n].is_punct("(")
            {
                i = skip_group(n);
                continue;
            }
            if t.is_word("LOCATION")
                && let Some(n) = next_sig(i + 1)
                && matches!(toks[n], Tok::Str(_))
            {
                i = n + 1;
                continue;
            }
            if (t.is_word("CLUSTER") || t.is_word("PARTITIONED"))
                && let Some(by) = next_sig(i + 1)
                && toks[by].is_word("BY")
                && let Some(n) = next_sig(by + 1)
            {
                i = if toks[n].is_punct("(") {
                    skip_group(n)
                } else {
                    n + 1
                };
                continue;
            }
        }
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
        }
        out.push(t.clone());
        i += 1;
    }
    out
}

const TABLE_KEYWORDS: &[&str] = &[
    "FROM", "JOIN", "INTO", "UPDATE", "TABLE", "VIEW", "EXISTS", "USING",
];
const NOT_TABLE_NAMES: &[&str] = &[
    "IF", "NOT", "EXISTS", "SELECT", "LATERAL", "VALUES", "WITH", "ONLY", "TABLE", "SET",
];
const ALIAS_FOLLOWERS: &[&str] = &[
    "WHERE",
    "JOIN",
    "INNER",
    "LEFT",
    "RIGHT",
    "FULL",
    "CROSS",
    "NATURAL",
    "ON",
    "GROUP",
    "ORDER",
    "LIMIT",
    "HAVING",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "WINDOW",
    "SET",
];
const FROM_LIST_END: &[&str] = &[
    "WHERE",
    "GROUP",
    "ORDER",
    "LIMIT",
    "HAVING",
    "ON",
    "SELECT",
    "UNION",
    "EXCEPT",
    "INTERSECT",
    "SET",
    "VALUES",
    "WINDOW",
    "QUALIFY",
    "USING",
    "JOIN",
];

/// Rewrites dotted names to single SQLite identifiers and Databricks-only functions/operators.
fn rewrite(toks: Vec<Tok>, ctx: &Ctx) -> Result<Vec<Tok>, String> {
    let is_create = toks
        .iter()
        .find(|t| !matches!(t, Tok::Space))
        .is_some_and(|t| t.is_word("CREATE"));
    let mut create_target_done = false;
    let mut out: Vec<Tok> = Vec::with_capacity(toks.len());
    let mut prev: Option<String> = None; // upper-cased previous significant token ("<ID>" for names)
    let mut from_list = false;
    let mut i = 0;
    let next_sig = |from: usize| (from..toks.len()).find(|&k| !matches!(toks[k], Tok::Space));
    while i < toks.len() {
        let t = &toks[i];
        match t {
            Tok::Space => {
                out.push(Tok::Space);
                i += 1;
                continue;
            }
            Tok::Word(_) | Tok::Ident(_) => {}
            Tok::Punct(p) => {
                if p == "<=>" {
                    out.push(Tok::Word("IS".into()));
                } else {
                    out.push(t.clone());
                }
                if p == "(" || p == ")" {
                    from_list = false;
                }
                prev = Some(p.clone());
                i += 1;
                continue;
            }
            _ => {
                out.push(t.clone());
                prev = Some("<LIT>".into());
                i += 1;
                continue;
            }
        }
        // A word or quoted identifier: collect the dotted chain.
        let mut parts = vec![t.ident_name().unwrap_or_default().to_string()];
        let mut j = i;
        while toks.get(j + 1).is_some_and(|t| t.is_punct("."))
            && let Some(n) = toks.get(j + 2).and_then(Tok::ident_name)
        {
            parts.push(n.to_string());
            j += 2;
        }
        let after = next_sig(j + 1);
        let next_is_paren = after.is_some_and(|k| toks[k].is_punct("("));
        let bare_word = matches!(t, Tok::Word(_)) && parts.len() == 1;
        let upper = t.upper();

        // Functions and keywords that need rewriting.
        if bare_word && let Some(u) = &upper {
            let call_end = if next_is_paren {
                after
                    .and_then(|k| next_sig(k + 1))
                    .filter(|&k| toks[k].is_punct(")"))
            } else {
                None
            };
            let ts = matches!(u.as_str(), "CURRENT_TIMESTAMP" | "NOW" | "LOCALTIMESTAMP");
            let date = u == "CURRENT_DATE";
            if (ts || date) && (call_end.is_some() || (!next_is_paren && u != "NOW")) {
                let v = if ts {
                    ctx.now.clone()
                } else {
                    ctx.now.chars().take(10).collect()
                };
                out.push(Tok::Str(v));
                i = call_end.map(|k| k + 1).unwrap_or(i + 1);
                prev = Some("<LIT>".into());
                continue;
            }
            if u == "TABLE" && prev.as_deref() == Some("INTO") {
                // INSERT INTO TABLE t -> INSERT INTO t
                i = after.unwrap_or(i + 1);
                continue;
            }
            if u == "ARRAY" && is_create && next_sig(i + 1).is_some_and(|k| toks[k].is_punct("<")) {
                // ARRAY<element> columns are stored as JSON text, declared `ARRAY_OF_<ELEMENT>`
                // so that results report them as ARRAY, as Databricks does.
                let mut depth = 0usize;
                let mut k = i + 1;
                let mut inner = Vec::new();
                while k < toks.len() {
                    if toks[k].is_punct("<") {
                        depth += 1;
                        if depth == 1 {
                            k += 1;
                            continue;
                        }
                    } else if toks[k].is_punct(">") {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    inner.push(toks[k].clone());
                    k += 1;
                }
                let element = render(&inner);
                let kind = Kind::from_decltype(element.trim())
                    .and_then(Kind::array_of)
                    .ok_or_else(|| {
                        format!(
                            "[UNSUPPORTED_DATATYPE] the double stores ARRAY of simple types only, not ARRAY<{}>",
                            element.trim()
                        )
                    })?;
                let Kind::Array(of) = kind else {
                    unreachable!("array_of gives an array")
                };
                let decl = format!("{ARRAY_DECL_PREFIX}{}", of.type_name());
                out.push(Tok::Word(decl.clone()));
                prev = Some(decl);
                i = k + 1;
                continue;
            }
            if is_create
                && matches!(u.as_str(), "DECIMAL" | "DEC" | "NUMERIC")
                && let Some(open) = next_sig(i + 1).filter(|&k| toks[k].is_punct("("))
                && let Some(Tok::Num(p)) = next_sig(open + 1).map(|k| &toks[k])
                && p.parse::<u32>().is_ok_and(|p| p > 15)
            {
                // SQLite's NUMERIC affinity keeps 15 significant digits: wider decimals are
                // declared `DECIMAL_TEXT(p,s)` (TEXT affinity), so their text stays exact.
                out.push(Tok::Word("DECIMAL_TEXT".into()));
                prev = Some(u.clone());
                i += 1;
                continue;
            }
            if u == "INTERVAL" && is_create {
                // `INTERVAL DAY TO SECOND` columns: SQLite type names cannot hold the keyword TO,
                // so the declaration becomes one word, `INTERVAL_DAY_TO_SECOND`.
                let mut words = vec![u.clone()];
                let mut k = i;
                while let Some(n) = next_sig(k + 1)
                    && let Some(w) = toks[n].upper().filter(|w| {
                        matches!(
                            w.as_str(),
                            "YEAR" | "MONTH" | "DAY" | "HOUR" | "MINUTE" | "SECOND" | "TO"
                        )
                    })
                    && matches!(toks[n], Tok::Word(_))
                {
                    words.push(w);
                    k = n;
                }
                if words.len() > 1 {
                    let decl = words.join("_");
                    out.push(Tok::Word(decl.clone()));
                    prev = Some(decl);
                    i = k + 1;
                    continue;
                }
            }
            if u == "STRING" {
                out.push(Tok::Word("TEXT".into()));
                prev = Some(u.clone());
                i += 1;
                continue;
            }
            if is_create && ["LONG", "SHORT", "BYTE"].contains(&u.as_str()) {
                let repl = match u.as_str() {
                    "LONG" => "BIGINT",
                    "SHORT" => "SMALLINT",
                    _ => "TINYINT",
                };
                out.push(Tok::Word(repl.into()));
                prev = Some(u.clone());
                i += 1;
                continue;
            }
        }

        let prev_kw = prev.as_deref().unwrap_or("");
        let table_pos = (TABLE_KEYWORDS.contains(&prev_kw) || (prev_kw == "," && from_list))
            && !(bare_word
                && upper
                    .as_deref()
                    .is_some_and(|u| NOT_TABLE_NAMES.contains(&u)))
            && !(next_is_paren && matches!(prev_kw, "FROM" | "JOIN" | ","));
        let mut replacement: Option<String> = None;
        let mut consumed_parts = parts.len();
        if parts.len() >= 3 {
            replacement = Some(parts[..3].join("."));
            consumed_parts = 3;
        } else if table_pos {
            let is_create_target = is_create && !create_target_done;
            if parts.len() == 2 {
                replacement = Some(match ctx.catalog {
                    Some(c) => format!("{c}.{}.{}", parts[0], parts[1]),
                    None => parts.join("."),
                });
            } else if let (Some(c), Some(s)) = (ctx.catalog, ctx.schema) {
                let q = format!("{c}.{s}.{}", parts[0]);
                if is_create_target || (ctx.exists)(&q) {
                    replacement = Some(q);
                }
            }
        }
        if table_pos && is_create {
            create_target_done = true;
        }
        match replacement {
            Some(name) => {
                let last = parts[consumed_parts - 1].clone();
                out.push(Tok::Ident(name));
                for p in &parts[consumed_parts..] {
                    out.push(Tok::Punct(".".into()));
                    out.push(Tok::Ident(p.clone()));
                }
                // Implicit alias so `orders.col` keeps working for `FROM main.sales.orders`.
                let alias_ctx =
                    matches!(prev_kw, "FROM" | "JOIN" | "USING") || (prev_kw == "," && from_list);
                let follows_ok = match after {
                    None => true,
                    Some(k) => match &toks[k] {
                        Tok::Punct(p) => p == "," || p == ")",
                        Tok::Word(w) => ALIAS_FOLLOWERS.contains(&w.to_ascii_uppercase().as_str()),
                        _ => false,
                    },
                };
                if table_pos && alias_ctx && follows_ok && consumed_parts == parts.len() {
                    out.extend([
                        Tok::Space,
                        Tok::Word("AS".into()),
                        Tok::Space,
                        Tok::Ident(last),
                    ]);
                }
            }
            None => out.extend_from_slice(&toks[i..=j]),
        }
        if let Some(u) = &upper
            && parts.len() == 1
        {
            if u == "FROM" {
                from_list = true;
            } else if FROM_LIST_END.contains(&u.as_str()) {
                from_list = false;
            }
            prev = Some(if table_pos { "<ID>".into() } else { u.clone() });
        } else {
            prev = Some("<ID>".into());
        }
        i = j + 1;
    }
    Ok(out)
}

/// Cursor over significant tokens of a rewritten MERGE statement.
struct Cursor<'a> {
    toks: &'a [Tok],
    pos: Vec<usize>,
    k: usize,
}

impl<'a> Cursor<'a> {
    fn new(toks: &'a [Tok]) -> Self {
        let pos = sig(toks).into_iter().map(|(i, _)| i).collect();
        Cursor { toks, pos, k: 0 }
    }
    fn peek(&self) -> Option<&'a Tok> {
        self.pos.get(self.k).map(|&i| &self.toks[i])
    }
    fn peek_word(&self, w: &str) -> bool {
        self.peek().is_some_and(|t| t.is_word(w))
    }
    fn eat_word(&mut self, w: &str) -> bool {
        if self.peek_word(w) {
            self.k += 1;
            true
        } else {
            false
        }
    }
    fn expect_word(&mut self, w: &str) -> Result<(), String> {
        if self.eat_word(w) {
            Ok(())
        } else {
            Err(format!(
                "[PARSE_SYNTAX_ERROR] MERGE: expected {w} near {:?}",
                self.peek().map(|t| render(std::slice::from_ref(t)))
            ))
        }
    }
    fn bump(&mut self) -> Option<&'a Tok> {
        let t = self.peek();
        self.k += 1;
        t
    }
    /// Tokens (with spaces) from here up to (not including) the first top-level token matching `stop`.
    fn until(&mut self, stop: impl Fn(&Tok) -> bool) -> Vec<Tok> {
        let start = self.pos.get(self.k).copied().unwrap_or(self.toks.len());
        let mut depth = 0;
        while let Some(t) = self.peek() {
            if depth == 0 && stop(t) {
                break;
            }
            if t.is_punct("(") {
                depth += 1;
            } else if t.is_punct(")") {
                depth -= 1;
            }
            self.k += 1;
        }
        let end = self.pos.get(self.k).copied().unwrap_or(self.toks.len());
        self.toks[start..end].to_vec()
    }
}

fn trim(mut v: Vec<Tok>) -> Vec<Tok> {
    while matches!(v.last(), Some(Tok::Space)) {
        v.pop();
    }
    while matches!(v.first(), Some(Tok::Space)) {
        v.remove(0);
    }
    v
}

/// Splits at top-level commas.
fn split_commas(toks: &[Tok]) -> Vec<Vec<Tok>> {
    let mut parts = vec![Vec::new()];
    let mut depth = 0;
    for t in toks {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
        }
        if depth == 0 && t.is_punct(",") {
            parts.push(Vec::new());
        } else if let Some(last) = parts.last_mut() {
            last.push(t.clone());
        }
    }
    parts
        .into_iter()
        .map(trim)
        .filter(|p| !p.is_empty())
        .collect()
}

fn last_name(t: &Tok) -> String {
    match t {
        Tok::Ident(n) => n.rsplit('.').next().unwrap_or(n).to_string(),
        Tok::Word(n) => n.clone(),
        other => render(std::slice::from_ref(other)),
    }
}

fn parse_alias(c: &mut Cursor, stop: &str) -> Option<String> {
    if c.eat_word("AS") {
        return c.bump().and_then(|t| t.ident_name().map(str::to_string));
    }
    match c.peek() {
        Some(t @ (Tok::Word(_) | Tok::Ident(_))) if !t.is_word(stop) => {
            c.k += 1;
            t.ident_name().map(str::to_string)
        }
        _ => None,
    }
}

fn parse_merge(toks: &[Tok]) -> Result<MergePlan, String> {
    let mut c = Cursor::new(toks);
    c.expect_word("MERGE")?;
    c.expect_word("INTO")?;
    let target_tok = c
        .bump()
        .ok_or("[PARSE_SYNTAX_ERROR] MERGE: missing target")?;
    if target_tok.ident_name().is_none() {
        return Err("[PARSE_SYNTAX_ERROR] MERGE: bad target table".into());
    }
    let target = render(std::slice::from_ref(target_tok));
    let target_alias = parse_alias(&mut c, "USING").unwrap_or_else(|| last_name(target_tok));
    c.expect_word("USING")?;
    let (source, default_alias) = if c.peek().is_some_and(|t| t.is_punct("(")) {
        c.k += 1;
        let inner = c.until(|t| t.is_punct(")"));
        if !c.peek().is_some_and(|t| t.is_punct(")")) {
            return Err("[PARSE_SYNTAX_ERROR] MERGE: unbalanced source subquery".into());
        }
        c.k += 1;
        (format!("({})", render(&trim(inner))), None)
    } else {
        let t = c
            .bump()
            .ok_or("[PARSE_SYNTAX_ERROR] MERGE: missing source")?;
        if t.ident_name().is_none() {
            return Err("[PARSE_SYNTAX_ERROR] MERGE: bad source".into());
        }
        (render(std::slice::from_ref(t)), Some(last_name(t)))
    };
    let source_alias = parse_alias(&mut c, "ON")
        .or(default_alias)
        .ok_or("[PARSE_SYNTAX_ERROR] MERGE: a source subquery needs an alias")?;
    c.expect_word("ON")?;
    let on = render(&trim(c.until(|t| t.is_word("WHEN"))));
    let mut clauses = Vec::new();
    while c.eat_word("WHEN") {
        let when = if c.eat_word("MATCHED") {
            When::Matched
        } else {
            c.expect_word("NOT")?;
            c.expect_word("MATCHED")?;
            if c.eat_word("BY") {
                if c.eat_word("SOURCE") {
                    When::NotMatchedBySource
                } else {
                    c.expect_word("TARGET")?;
                    When::NotMatched
                }
            } else {
                When::NotMatched
            }
        };
        let condition = if c.eat_word("AND") {
            Some(render(&trim(c.until(|t| t.is_word("THEN")))))
        } else {
            None
        };
        c.expect_word("THEN")?;
        let action = if c.eat_word("DELETE") {
            MergeAction::Delete
        } else if c.eat_word("UPDATE") {
            c.expect_word("SET")?;
            if c.peek().is_some_and(|t| t.is_punct("*")) {
                c.k += 1;
                MergeAction::UpdateAll
            } else {
                let body = c.until(|t| t.is_word("WHEN"));
                let mut sets = Vec::new();
                for a in split_commas(&body) {
                    let eq = a
                        .iter()
                        .position(|t| t.is_punct("="))
                        .ok_or("[PARSE_SYNTAX_ERROR] MERGE: bad SET")?;
                    let col = a[..eq]
                        .iter()
                        .rev()
                        .find_map(|t| t.ident_name())
                        .ok_or("[PARSE_SYNTAX_ERROR] MERGE: bad SET column")?;
                    sets.push((col.to_string(), render(&trim(a[eq + 1..].to_vec()))));
                }
                MergeAction::Update(sets)
            }
        } else if c.eat_word("INSERT") {
            if c.peek().is_some_and(|t| t.is_punct("*")) {
                c.k += 1;
                MergeAction::InsertAll
            } else {
                if !c.peek().is_some_and(|t| t.is_punct("(")) {
                    return Err(
                        "[PARSE_SYNTAX_ERROR] MERGE: INSERT needs (columns) VALUES (...)".into(),
                    );
                }
                c.k += 1;
                let cols = c.until(|t| t.is_punct(")"));
                c.k += 1;
                c.expect_word("VALUES")?;
                if !c.peek().is_some_and(|t| t.is_punct("(")) {
                    return Err("[PARSE_SYNTAX_ERROR] MERGE: VALUES needs (...)".into());
                }
                c.k += 1;
                let vals = c.until(|t| t.is_punct(")"));
                c.k += 1;
                let columns: Vec<String> = split_commas(&cols)
                    .iter()
                    .map(|p| {
                        p.iter()
                            .rev()
                            .find_map(|t| t.ident_name())
                            .unwrap_or_default()
                            .to_string()
                    })
                    .collect();
                let values: Vec<String> = split_commas(&vals).iter().map(|p| render(p)).collect();
                if columns.len() != values.len() || columns.iter().any(String::is_empty) {
                    return Err(
                        "[PARSE_SYNTAX_ERROR] MERGE: INSERT column and value counts differ".into(),
                    );
                }
                MergeAction::Insert { columns, values }
            }
        } else {
            return Err("[PARSE_SYNTAX_ERROR] MERGE: expected UPDATE, DELETE or INSERT".into());
        };
        let ok = match when {
            When::Matched | When::NotMatchedBySource => {
                matches!(
                    action,
                    MergeAction::Delete | MergeAction::Update(_) | MergeAction::UpdateAll
                )
            }
            When::NotMatched => {
                matches!(action, MergeAction::Insert { .. } | MergeAction::InsertAll)
            }
        };
        if !ok || (when == When::NotMatchedBySource && matches!(action, MergeAction::UpdateAll)) {
            return Err(
                "[PARSE_SYNTAX_ERROR] MERGE: action not allowed in this WHEN clause".into(),
            );
        }
        clauses.push(MergeClause {
            when,
            condition,
            action,
        });
    }
    if let Some(t) = c.peek() {
        return Err(format!(
            "[PARSE_SYNTAX_ERROR] MERGE: unexpected {}",
            render(std::slice::from_ref(t))
        ));
    }
    if clauses.is_empty() {
        return Err("[PARSE_SYNTAX_ERROR] MERGE needs at least one WHEN clause".into());
    }
    Ok(MergePlan {
        target,
        target_alias,
        source,
        source_alias,
        on,
        clauses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(exists: &'a dyn Fn(&str) -> bool) -> Ctx<'a> {
        Ctx {
            catalog: None,
            schema: None,
            exists,
            now: "2024-01-02T03:04:05.000000Z".into(),
        }
    }

    fn sql(s: &str) -> String {
        let none = |_: &str| false;
        match translate(s, &ctx(&none)).unwrap() {
            Plan::Sql { statements, .. } => statements.join("; "),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_are_rewritten_outside_literals() {
        assert_eq!(
            sql(
                "SELECT o.id, 'main.sales.orders' FROM `main`.`sales`.`orders` o WHERE x = \"a.b.c\""
            ),
            "SELECT o.id, 'main.sales.orders' FROM \"main.sales.orders\" o WHERE x = 'a.b.c'"
        );
        assert_eq!(
            sql("SELECT * FROM main.sales.orders"),
            "SELECT * FROM \"main.sales.orders\" AS \"orders\""
        );
        assert_eq!(
            sql("UPDATE sales.orders SET a = 1"),
            "UPDATE \"sales.orders\" SET a = 1"
        );
        assert_eq!(sql("SELECT t.a FROM t"), "SELECT t.a FROM t");
    }

    #[test]
    fn ddl_clauses_are_stripped() {
        assert_eq!(
            sql(
                "CREATE TABLE IF NOT EXISTS main.s.t (id BIGINT NOT NULL COMMENT 'pk', name STRING, amount DECIMAL(18,4)) \
                 USING DELTA PARTITIONED BY (id) CLUSTER BY (name) COMMENT 'tbl' TBLPROPERTIES ('a' = 'b')"
            ),
            "CREATE TABLE IF NOT EXISTS \"main.s.t\" (id BIGINT NOT NULL , name TEXT, amount DECIMAL_TEXT(18,4))"
        );
        assert_eq!(
            sql("CREATE OR REPLACE TABLE a.b.c AS SELECT 1 AS x"),
            "DROP TABLE IF EXISTS \"a.b.c\"; CREATE TABLE \"a.b.c\" AS SELECT 1 AS x"
        );
    }

    #[test]
    fn added_columns_become_one_sqlite_alter_each() {
        assert_eq!(
            sql(
                "ALTER TABLE main.s.t ADD COLUMNS (pipeline STRING COMMENT 'RUN: the pipeline', n BIGINT)"
            ),
            "ALTER TABLE \"main.s.t\" ADD COLUMN pipeline TEXT; ALTER TABLE \"main.s.t\" ADD COLUMN n BIGINT"
        );
        assert_eq!(
            sql("ALTER TABLE main.s.t ADD COLUMN job_id STRING"),
            "ALTER TABLE \"main.s.t\" ADD COLUMN job_id TEXT"
        );
        let none = |_: &str| false;
        assert!(translate("ALTER TABLE main.s.t DROP COLUMN x", &ctx(&none)).is_err());
        assert!(matches!(
            translate("ALTER TABLE main.s.t CLUSTER BY (status)", &ctx(&none)),
            Ok(Plan::NoOp)
        ));
    }

    #[test]
    fn functions_and_params() {
        assert_eq!(
            sql("SELECT current_timestamp(), :p"),
            "SELECT '2024-01-02T03:04:05.000000Z', :p"
        );
        assert_eq!(
            parameter_markers("SELECT :a, ':b', x::int, :c")
                .unwrap()
                .len(),
            2
        );
        assert!(parameter_markers("SELECT ?").is_err());
    }

    #[test]
    fn merge_is_parsed() {
        let none = |_: &str| false;
        let plan = translate(
            "MERGE INTO main.s.t AS t USING (SELECT * FROM main.s.src) AS s ON t.id = s.id \
             WHEN MATCHED AND s.del THEN DELETE WHEN MATCHED THEN UPDATE SET t.v = s.v \
             WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v) WHEN NOT MATCHED BY SOURCE THEN DELETE",
            &ctx(&none),
        )
        .unwrap();
        let Plan::Merge(m) = plan else { panic!() };
        assert_eq!(m.target, "\"main.s.t\"");
        assert_eq!(m.source, "(SELECT * FROM \"main.s.src\" AS \"src\")");
        assert_eq!(m.clauses.len(), 4);
        assert_eq!(m.on, "t.id = s.id");
    }
}
