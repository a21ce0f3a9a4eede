//! minijinja rendering of pipeline fields and SQL files, with strict undefined parameters.
//! In SQL, values go through `| bind` (a placeholder plus a bound parameter) and names through `| ident`.
//!
//! `env()` reads the process environment (secrets), so it is allowed only where a value cannot
//! reach an output path, a file name, a summary, an error, an audit line or an API answer: in a
//! step's `connection:` fields ([`Where::Connection`]). Anywhere else (paths, names, SQL) it is a
//! plan-time error naming the field.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use minijinja::value::ValueKind;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

use crate::error::{Error, Location, Result};
use crate::pipeline::project::Params;
use crate::sql::{Dialect, SqlValue, quote_ident};

/// Names every template can use without defining them.
const BUILTIN_GLOBALS: &[&str] = &[
    "env",
    "range",
    "dict",
    "namespace",
    "debug",
    "lipsum",
    "cycler",
    "joiner",
    "loop",
];

/// Where a rendered text is: `env()` works only in connection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Where {
    /// A field under a step's `connection:` (hosts, user names, settings).
    Connection,
    /// Anything else: paths, names, SQL.
    Other,
}

/// SQL text with its bound parameters, in placeholder order.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedSql {
    pub text: String,
    pub params: Vec<SqlValue>,
}

/// Renders templates with a run's parameters; remembers which secrets it read so output can be redacted.
#[derive(Debug, Clone)]
pub struct Renderer {
    params: Params,
    context: Value,
    secrets: Arc<Mutex<BTreeSet<String>>>,
}

impl Renderer {
    /// A renderer over these parameters.
    pub fn new(params: Params) -> Self {
        let context = Value::from_serialize(&params);
        Renderer {
            params,
            context,
            secrets: Arc::default(),
        }
    }

    /// The parameters templates see.
    pub fn params(&self) -> &Params {
        &self.params
    }

    fn environment(&self, place: Where) -> Environment<'static> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_keep_trailing_newline(true);
        let secrets = Arc::clone(&self.secrets);
        env.add_function(
            "env",
            move |name: String, default: Option<String>| -> Result<String, minijinja::Error> {
                if place != Where::Connection {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "env() may be used only in a step's `connection:` fields, where a secret cannot reach a path, a name, SQL or a message; set the value in config/ or pass it with --param",
                    ));
                }
                match std::env::var(&name) {
                    Ok(value) => {
                        if !value.is_empty() {
                            secrets.lock().expect("secrets lock").insert(value.clone());
                        }
                        Ok(value)
                    }
                    Err(_) => default.ok_or_else(|| {
                        minijinja::Error::new(
                            ErrorKind::InvalidOperation,
                            format!(
                                "environment variable `{name}` is not set (set it, put it in `.env`, or give env() a default)"
                            ),
                        )
                    }),
                }
            },
        );
        env
    }

    /// Renders plain text (a path, a name) from a pipeline field found at `place`.
    pub fn render_text(&self, location: &Location, text: &str, place: Where) -> Result<String> {
        if !text.contains("{{") && !text.contains("{%") {
            return Ok(text.to_string());
        }
        let env = self.environment(place);
        self.render_with(&env, location, text)
    }

    /// Renders SQL for a dialect. Plain `{{ text }}` is refused: values must use `| bind`, names `| ident`.
    pub fn render_sql(
        &self,
        location: &Location,
        text: &str,
        dialect: Dialect,
    ) -> Result<RenderedSql> {
        let mut env = self.environment(Where::Other);
        let bound: Arc<Mutex<Vec<SqlValue>>> = Arc::default();
        let params = Arc::clone(&bound);
        env.add_filter(
            "bind",
            move |value: Value| -> Result<Value, minijinja::Error> {
                let mut params = params.lock().expect("params lock");
                params.push(sql_value(&value)?);
                Ok(Value::from_safe_string(dialect.placeholder(params.len())))
            },
        );
        env.add_filter(
            "ident",
            move |value: String| -> Result<Value, minijinja::Error> {
                quote_ident(&value, dialect)
                    .map(Value::from_safe_string)
                    .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string()))
            },
        );
        env.set_formatter(|out, state, value| {
            if value.is_safe()
                || matches!(value.kind(), ValueKind::Number | ValueKind::Bool)
            {
                return minijinja::escape_formatter(out, state, value);
            }
            Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "a text value would be pasted into SQL: use `{{ name | bind }}` for a value (bound as a parameter) or `{{ name | ident }}` for a table or column name",
            ))
        });
        let text = self.render_with(&env, location, text)?;
        let params = std::mem::take(&mut *bound.lock().expect("params lock"));
        Ok(RenderedSql { text, params })
    }

    fn render_with(
        &self,
        env: &Environment<'_>,
        location: &Location,
        text: &str,
    ) -> Result<String> {
        let name = location.file.display().to_string();
        let template = env
            .template_from_named_str(&name, text)
            .map_err(|e| render_error(location, text, &e))?;
        let mut missing: Vec<String> = template
            .undeclared_variables(false)
            .into_iter()
            .filter(|v| !self.params.contains_key(v) && !BUILTIN_GLOBALS.contains(&v.as_str()))
            .collect();
        missing.sort();
        if let Some(first) = missing.first() {
            let line = text
                .lines()
                .position(|l| (l.contains("{{") || l.contains("{%")) && contains_word(l, first))
                .map(|i| location.line.unwrap_or(1) + i);
            return Err(Error::Render {
                location: Location {
                    line: line.or(location.line),
                    ..location.clone()
                },
                message: format!(
                    "missing parameter `{}`{}: define it in config/defaults.yaml, the country's file in config/countries/, the pipeline's `params:`, or pass --param {}=...",
                    first,
                    if missing.len() > 1 {
                        format!(" (also missing: {})", missing[1..].join(", "))
                    } else {
                        String::new()
                    },
                    first
                ),
            });
        }
        template
            .render(&self.context)
            .map_err(|e| render_error(location, text, &e))
    }

    /// Replaces every secret read through `env()` with `***`.
    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.lock().expect("secrets lock");
        secrets
            .iter()
            .fold(text.to_string(), |acc, s| acc.replace(s.as_str(), "***"))
    }
}

fn contains_word(line: &str, word: &str) -> bool {
    line.match_indices(word).any(|(i, _)| {
        let before = line[..i].chars().next_back();
        let after = line[i + word.len()..].chars().next();
        let is_ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        !is_ident(before) && !is_ident(after)
    })
}

fn sql_value(value: &Value) -> Result<SqlValue, minijinja::Error> {
    Ok(match value.kind() {
        ValueKind::Undefined | ValueKind::None => SqlValue::Null,
        ValueKind::Bool => SqlValue::Bool(value.is_true()),
        ValueKind::Number => {
            match value.as_i64() {
                Some(i) if !value.to_string().contains('.') => SqlValue::Int(i),
                _ => SqlValue::Float(f64::try_from(value.clone()).map_err(|e| {
                    minijinja::Error::new(ErrorKind::InvalidOperation, e.to_string())
                })?),
            }
        }
        ValueKind::String => SqlValue::Text(value.as_str().unwrap_or_default().to_string()),
        other => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("cannot bind a {other} as a SQL parameter"),
            ));
        }
    })
}

fn render_error(location: &Location, _text: &str, err: &minijinja::Error) -> Error {
    let mut message = err.kind().to_string();
    if let Some(detail) = err.detail() {
        message = format!("{message}: {detail}");
    }
    let line = match (location.line, err.line()) {
        (Some(base), Some(l)) => Some(base + l - 1),
        (None, l) => l,
        (base, None) => base,
    };
    Error::Render {
        location: Location {
            line,
            ..location.clone()
        },
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn renderer() -> Renderer {
        let mut params = Params::new();
        params.insert("country".into(), "colombia".into());
        params.insert("start_date".into(), "2024-01-01".into());
        params.insert("limit".into(), 10.into());
        Renderer::new(params)
    }

    #[test]
    fn binds_values_as_parameters() {
        let sql = renderer()
            .render_sql(
                &Location::file("q.sql"),
                "SELECT * FROM {{ 'sales' | ident }} WHERE d >= {{ start_date | bind }} AND c = {{ country | bind }} LIMIT {{ limit }}",
                Dialect::Sqlite,
            )
            .unwrap();
        assert_eq!(
            sql.text,
            "SELECT * FROM \"sales\" WHERE d >= ?1 AND c = ?2 LIMIT 10"
        );
        assert_eq!(
            sql.params,
            vec![
                SqlValue::Text("2024-01-01".into()),
                SqlValue::Text("colombia".into())
            ]
        );
    }

    #[test]
    fn refuses_pasted_text_in_sql() {
        let err = renderer()
            .render_sql(
                &Location::file("q.sql"),
                "SELECT 1\nWHERE c = '{{ country }}'",
                Dialect::Sqlite,
            )
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("q.sql:2:"), "{err}");
        assert!(err.contains("| bind"), "{err}");
    }

    #[test]
    fn refuses_bad_identifiers() {
        let mut params = Params::new();
        params.insert("t".into(), "x; drop table y".into());
        let err = Renderer::new(params)
            .render_sql(
                &Location::file("q.sql"),
                "SELECT * FROM {{ t | ident }}",
                Dialect::SqlServer,
            )
            .unwrap_err();
        assert!(err.to_string().contains("invalid identifier"), "{err}");
    }

    #[test]
    fn missing_parameter_is_named_with_line() {
        let err = renderer()
            .render_text(
                &Location::at("p.yaml", Some(10)),
                "out/{{ countri }}/x",
                Where::Other,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.yaml:10: missing parameter `countri`: define it in config/defaults.yaml, the country's file in config/countries/, the pipeline's `params:`, or pass --param countri=..."
        );
    }

    #[test]
    fn secrets_come_from_env_and_are_redacted() {
        // SAFETY: test-only variable with a unique name.
        unsafe { std::env::set_var("BRIDGE_TEST_SECRET_XYZ", "hunter2") };
        let r = renderer();
        let out = r
            .render_text(
                &Location::file("p.yaml"),
                "pw={{ env('BRIDGE_TEST_SECRET_XYZ') }}",
                Where::Connection,
            )
            .unwrap();
        assert_eq!(out, "pw=hunter2");
        assert_eq!(r.redact(&out), "pw=***");
        let err = r
            .render_text(
                &Location::file("p.yaml"),
                "{{ env('BRIDGE_TEST_UNSET_VAR') }}",
                Where::Connection,
            )
            .unwrap_err();
        assert!(err.to_string().contains("BRIDGE_TEST_UNSET_VAR"), "{err}");
    }

    #[test]
    fn env_is_refused_outside_connection_fields() {
        // SAFETY: test-only variable with a unique name.
        unsafe { std::env::set_var("BRIDGE_TEST_SECRET_PATH", "s3cr3t") };
        let r = renderer();
        let err = r
            .render_text(
                &Location::file("p.yaml"),
                "output/x{{ env('BRIDGE_TEST_SECRET_PATH') }}",
                Where::Other,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("connection:"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
        let err = r
            .render_sql(
                &Location::file("q.sql"),
                "SELECT {{ env('BRIDGE_TEST_SECRET_PATH') | bind }}",
                Dialect::SqlServer,
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("connection:"), "{err}");
    }
}
