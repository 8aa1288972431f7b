//! The write-limit scripts of the performance suite: one posting's statements,
//! with pgbench variables (`:name`) where the code binds a value.
//!
//! A script has two branches, `\if :acquire` (an acquisition) and `\else`
//! (a release), closed by `\endif`; other `\`-lines (`\set`) and `--` comments
//! are pgbench's business. Shared by the statement test
//! (`tests/api/posting_statements.rs`) and the SQLite loop of `benches/suite.rs`.

#![allow(dead_code)]

/// How a bound value is written in the SQL the code sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placeholder {
    /// PostgreSQL: `$1`, `$2`, … in order of appearance.
    Dollar,
    /// SQLite: `?`.
    Question,
}

/// One statement: its text with `:name` variables, and those names in order.
#[derive(Debug, Clone)]
pub struct Statement {
    pub text: String,
    pub vars: Vec<String>,
}

impl Statement {
    fn parse(text: &str) -> Statement {
        let mut vars = Vec::new();
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b':'
                && i + 1 < b.len()
                && (b[i + 1].is_ascii_alphabetic() || b[i + 1] == b'_')
                && (i == 0 || b[i - 1] != b':')
            {
                let start = i + 1;
                let mut end = start;
                while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
                    end += 1;
                }
                vars.push(text[start..end].to_string());
                i = end;
            } else {
                i += 1;
            }
        }
        Statement {
            text: text.to_string(),
            vars,
        }
    }

    /// The text with each variable replaced by the backend's placeholder.
    pub fn render(&self, placeholder: Placeholder) -> String {
        let mut out = self.text.clone();
        for (n, v) in self.vars.iter().enumerate() {
            let with = match placeholder {
                Placeholder::Dollar => format!("${}", n + 1),
                Placeholder::Question => "?".to_string(),
            };
            let at = out.find(&format!(":{v}")).expect("variable present");
            out.replace_range(at..at + v.len() + 1, &with);
        }
        out
    }
}

/// The acquisition and release branches of a script, as parsed statements.
pub fn parse(script: &str) -> (Vec<Statement>, Vec<Statement>) {
    let (mut acquisition, mut release) = (Vec::new(), Vec::new());
    let mut branch = 0; // 0 outside, 1 \if, 2 \else
    let mut current = String::new();
    for line in script.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with("--") {
            continue;
        }
        if line.starts_with('\\') {
            match line.split_whitespace().next() {
                Some("\\if") => branch = 1,
                Some("\\else") => branch = 2,
                Some("\\endif") => branch = 0,
                _ => {}
            }
            continue;
        }
        // A statement ends with `;`, or with `\gset [prefix]` (pgbench keeps
        // its result in variables).
        let (line, gset) = match line.split_once(" \\gset") {
            Some((sql, _)) => (sql.trim_end(), true),
            None => (line, false),
        };
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(line);
        if gset {
            current.push(';');
        }
        if let Some(stmt) = current.strip_suffix(';') {
            let stmt = Statement::parse(stmt.trim());
            match branch {
                1 => acquisition.push(stmt),
                2 => release.push(stmt),
                _ => panic!(
                    "a statement outside the \\if/\\else branches: {}",
                    stmt.text
                ),
            }
            current.clear();
        }
    }
    assert!(current.is_empty(), "an unterminated statement: {current}");
    (acquisition, release)
}

/// The branches rendered as the code would send them.
pub fn branches(script: &str, placeholder: Placeholder) -> (Vec<String>, Vec<String>) {
    let (a, r) = parse(script);
    let render = |v: Vec<Statement>| v.iter().map(|s| s.render(placeholder)).collect();
    (render(a), render(r))
}
