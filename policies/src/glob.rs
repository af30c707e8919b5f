//! Globs over `/`-separated text (file paths in tool arguments, path-like identifiers).
//!
//! Syntax, deliberately small (no character classes, no braces, no escapes):
//! - `*` matches any run of characters without `/`, including the empty run;
//! - `?` matches exactly one character other than `/`;
//! - `**` matches any run of characters, `/` included;
//! - `**` as a whole segment also matches zero segments, as in gitignore and globset:
//!   `**/.env` matches `.env` and `a/b/.env`; `a/**/b` matches `a/b` and `a/x/y/b`;
//!   a trailing `a/**` matches `a/`, `a/x` and `a/x/y` but not `a` itself (nor `ab`).
//!   For a deny rule this means `config/**` does not cover the bare `config`: list both when the
//!   directory name itself matters.
//! - every other character is literal; matching is case-sensitive and per Unicode scalar value.
//!
//! Matching simulates a Thompson NFA over the pattern's tokens: one pass over the text with a set
//! of live pattern positions, so time is O(tokens × characters) and memory O(tokens) whatever the
//! input, and there is no recursion. (The classic two-pointer wildcard matcher with a single
//! backtrack point is only correct when every star can match everything; here `*` stops at `/`
//! while `**` does not, so a later `*` cannot stand in for an earlier `**`.)

/// Longest pattern [`validate_glob`] accepts, in bytes.
pub const MAX_GLOB_LEN: usize = 1024;

/// Checks a pattern at policy compile time.
pub fn validate_glob(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("glob pattern is empty".to_owned());
    }
    if pattern.len() > MAX_GLOB_LEN {
        return Err(format!("glob pattern of {} bytes exceeds the limit of {MAX_GLOB_LEN}", pattern.len()));
    }
    if pattern.contains("***") {
        return Err("glob pattern contains `***`: use `*` or `**`".to_owned());
    }
    Ok(())
}

/// Does `text` match `pattern`? Compiles the pattern on every call; use [`Glob`] to compile once.
///
/// The pattern is expected to have passed [`validate_glob`]; a run of three or more `*` is read
/// as `**`.
#[must_use]
pub fn glob_match(pattern: &str, text: &str) -> bool {
    Glob::new(pattern).matches(text)
}

/// A compiled pattern (see the module documentation for the syntax).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// One literal character.
    Literal(char),
    /// `?`: one character other than `/`.
    One,
    /// `*`: loops on any character other than `/`; may be skipped.
    Star,
    /// `**`: loops on any character; may be skipped.
    AnyRun,
    /// No input consumed: continue at the next token or jump forward to the given index. Used for
    /// `**/`, which is optional as a whole.
    Fork(usize),
}

impl Glob {
    /// Compiles `pattern`. Never fails: validation is [`validate_glob`]'s job.
    #[must_use]
    pub fn new(pattern: &str) -> Self {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::with_capacity(chars.len());
        let mut i = 0usize;
        while let Some(&c) = chars.get(i) {
            match c {
                '*' => {
                    let run = chars.get(i..).map_or(0, |rest| rest.iter().take_while(|&&x| x == '*').count());
                    let next = i.saturating_add(run);
                    if run == 1 {
                        tokens.push(Token::Star);
                        i = next;
                        continue;
                    }
                    let starts_segment = i == 0 || chars.get(i.wrapping_sub(1)) == Some(&'/');
                    if starts_segment && chars.get(next) == Some(&'/') {
                        // `**/` as whole segments: (any run ending in `/`) or nothing.
                        // Fork(skip) AnyRun Literal('/') — skip lands after the slash.
                        let skip = tokens.len().saturating_add(3);
                        tokens.push(Token::Fork(skip));
                        tokens.push(Token::AnyRun);
                        tokens.push(Token::Literal('/'));
                        i = next.saturating_add(1);
                    } else {
                        tokens.push(Token::AnyRun);
                        i = next;
                    }
                }
                '?' => {
                    tokens.push(Token::One);
                    i = i.saturating_add(1);
                }
                other => {
                    tokens.push(Token::Literal(other));
                    i = i.saturating_add(1);
                }
            }
        }
        Self { tokens }
    }

    /// Does `text` match the whole pattern?
    #[must_use]
    pub fn matches(&self, text: &str) -> bool {
        let states = self.tokens.len().saturating_add(1);
        let mut live = vec![false; states];
        let mut next = vec![false; states];
        if let Some(start) = live.first_mut() {
            *start = true;
        }
        self.close(&mut live);
        for c in text.chars() {
            next.fill(false);
            let mut any = false;
            for (index, token) in self.tokens.iter().enumerate() {
                if !live.get(index).copied().unwrap_or(false) {
                    continue;
                }
                let target = match token {
                    Token::Literal(l) if *l == c => Some(index.saturating_add(1)),
                    Token::One if c != '/' => Some(index.saturating_add(1)),
                    Token::Star if c != '/' => Some(index),
                    Token::AnyRun => Some(index),
                    _ => None,
                };
                if let Some(slot) = target.and_then(|t| next.get_mut(t)) {
                    *slot = true;
                    any = true;
                }
            }
            if !any {
                return false;
            }
            self.close(&mut next);
            std::mem::swap(&mut live, &mut next);
        }
        live.last().copied().unwrap_or(false)
    }

    /// Adds every state reachable without consuming input. All such edges point forward, so one
    /// ascending pass reaches the closure.
    fn close(&self, states: &mut [bool]) {
        for (index, token) in self.tokens.iter().enumerate() {
            if !states.get(index).copied().unwrap_or(false) {
                continue;
            }
            let jump = match token {
                Token::Star | Token::AnyRun => None,
                Token::Fork(target) => Some(*target),
                Token::Literal(_) | Token::One => continue,
            };
            // Skippable: the next token is live too.
            if let Some(slot) = states.get_mut(index.saturating_add(1)) {
                *slot = true;
            }
            if let Some(slot) = jump.and_then(|t| states.get_mut(t)) {
                *slot = true;
            }
        }
    }
}

#[cfg(test)]
#[path = "glob_tests.rs"]
mod tests;
