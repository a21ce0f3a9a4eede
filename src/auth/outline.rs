//! Line numbers of the users and grants of a block-style permissions file.
//! serde_yaml gives no positions once a document has parsed; errors found afterwards use these.

use std::collections::HashMap;

/// The outline of a permissions file: the line of each user, its fields and its grants.
/// Files in flow style (`users: [{...}]`) have no outline; errors then name only the file.
/// Only line numbers are kept, never the text (which may hold tokens).
#[derive(Debug, Default)]
pub(crate) struct Outline {
    users: Vec<Entry>,
}

/// One entry of a block sequence (`- key: value ...`).
#[derive(Debug, Default)]
struct Entry {
    /// 0-based line of the `- `.
    line: usize,
    /// 0-based line of each key of the entry.
    fields: HashMap<String, usize>,
    /// The entries of the entry's `permissions:` sequence.
    grants: Vec<Entry>,
}

impl Outline {
    pub(crate) fn new(text: &str) -> Self {
        let scanner = Scanner {
            lines: text.lines().collect(),
        };
        let root = Span {
            start: 0,
            end: scanner.lines.len(),
            indent: 0,
            dash: false,
        };
        let users = scanner
            .key(&root, "users")
            .map(|at| scanner.sequence(at, root.end))
            .unwrap_or_default()
            .into_iter()
            .map(|user| {
                let grants = scanner
                    .key(&user, "permissions")
                    .map(|at| scanner.sequence(at, user.end))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|grant| scanner.entry(&grant, Vec::new()))
                    .collect();
                scanner.entry(&user, grants)
            })
            .collect();
        Outline { users }
    }

    /// 1-based line of the user's entry.
    pub(crate) fn user(&self, user: usize) -> Option<usize> {
        self.users.get(user).map(|e| e.line + 1)
    }

    /// 1-based line of a field of a user (falls back to the user's entry).
    pub(crate) fn user_field(&self, user: usize, field: &str) -> Option<usize> {
        let entry = self.users.get(user)?;
        Some(entry.fields.get(field).copied().unwrap_or(entry.line) + 1)
    }

    /// 1-based line of a field of a grant (falls back to the grant's, then the user's entry).
    pub(crate) fn grant_field(&self, user: usize, grant: usize, field: &str) -> Option<usize> {
        let entry = self.users.get(user)?;
        match entry.grants.get(grant) {
            Some(g) => Some(g.fields.get(field).copied().unwrap_or(g.line) + 1),
            None => Some(entry.line + 1),
        }
    }
}

/// A block of lines: the document or one entry of a sequence.
#[derive(Debug, Clone, Copy)]
struct Span {
    /// 0-based line range.
    start: usize,
    end: usize,
    /// Column of the block's keys (the text after `- ` for an entry).
    indent: usize,
    /// Whether the first line starts with `- `.
    dash: bool,
}

struct Scanner<'a> {
    lines: Vec<&'a str>,
}

impl Scanner<'_> {
    /// Splits a line into its indent and the rest; `None` for blank and comment lines.
    fn split(line: &str) -> Option<(usize, &str)> {
        let body = line.trim_start_matches(' ');
        let content = body.trim_end();
        (!content.is_empty() && !content.starts_with('#'))
            .then_some((line.len() - body.len(), content))
    }

    /// Indent and text of a line as seen from inside a block (after `- ` on an entry's first line).
    fn content(&self, span: &Span, i: usize) -> Option<(usize, &str)> {
        let (indent, body) = Self::split(self.lines[i])?;
        if span.dash && i == span.start {
            let rest = body.strip_prefix('-')?;
            let after = rest.trim_start_matches(' ');
            return (!after.is_empty()).then_some((indent + 1 + rest.len() - after.len(), after));
        }
        Some((indent, body))
    }

    /// The key of a `key: value` line, unquoted.
    fn key_of(body: &str) -> Option<&str> {
        let (key, _) = body.split_once(':')?;
        Some(key.trim().trim_matches(|c| c == '"' || c == '\''))
    }

    /// 0-based line where the block has `key:`.
    fn key(&self, span: &Span, key: &str) -> Option<usize> {
        (span.start..span.end).find(|&i| {
            self.content(span, i).is_some_and(|(indent, body)| {
                indent == span.indent && Self::key_of(body) == Some(key)
            })
        })
    }

    /// The entries of the block sequence under the key at line `at`, ending by `end` at the latest.
    fn sequence(&self, at: usize, end: usize) -> Vec<Span> {
        let mut items: Vec<Span> = Vec::new();
        let mut dash_indent = None;
        for i in at + 1..end {
            let Some((indent, body)) = Self::split(self.lines[i]) else {
                continue;
            };
            let is_dash = body == "-" || body.starts_with("- ");
            let d = match dash_indent {
                None if is_dash => *dash_indent.insert(indent),
                None => break,
                Some(d) => d,
            };
            if indent < d || (indent == d && !is_dash) {
                break;
            }
            if indent == d {
                let rest = &body[1..];
                let spaces = rest.len() - rest.trim_start_matches(' ').len();
                items.push(Span {
                    start: i,
                    end: i + 1,
                    indent: indent + 1 + spaces.max(1),
                    dash: true,
                });
            } else if let Some(last) = items.last_mut() {
                last.end = i + 1;
            }
        }
        items
    }

    fn entry(&self, span: &Span, grants: Vec<Entry>) -> Entry {
        let fields = (span.start..span.end)
            .filter_map(|i| {
                let (indent, body) = self.content(span, i)?;
                let key = Self::key_of(body)?;
                (indent == span.indent).then(|| (key.to_string(), i))
            })
            .collect();
        Entry {
            line: span.start,
            fields,
            grants,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_users_fields_and_grants() {
        let text = "\
# comment
users:
  - name: a
    token: x

    permissions:
      - table: t
        access: read
      -   table: u
          access: write
  - token_sha256: abc
    name: b
other: 1
";
        let o = Outline::new(text);
        assert_eq!(o.user(0), Some(3));
        assert_eq!(o.user_field(0, "token"), Some(4));
        assert_eq!(o.user_field(0, "name"), Some(3));
        assert_eq!(o.grant_field(0, 0, "access"), Some(8));
        assert_eq!(o.grant_field(0, 1, "table"), Some(9));
        assert_eq!(o.grant_field(0, 1, "access"), Some(10));
        assert_eq!(o.grant_field(0, 1, "max_delete_rows"), Some(9));
        assert_eq!(o.user(1), Some(11));
        assert_eq!(o.user_field(1, "name"), Some(12));
        assert_eq!(o.user_field(1, "token"), Some(11));
        assert_eq!(o.user(2), None);
    }

    #[test]
    fn sequence_at_the_key_indent() {
        let text = "users:\n- name: a\n  permissions:\n  - table: t\n    access: read\n- name: b\n";
        let o = Outline::new(text);
        assert_eq!(o.user(0), Some(2));
        assert_eq!(o.grant_field(0, 0, "access"), Some(5));
        assert_eq!(o.user(1), Some(6));
    }

    #[test]
    fn flow_style_has_no_lines() {
        let o = Outline::new("users: [{name: a, token: x}]\n");
        assert_eq!(o.user(0), None);
    }
}
