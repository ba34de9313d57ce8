//! A small Rust lexer for the source checks: the tokens that can spell a module path
//! (identifiers, `::`, braces, `;`, `,`, `*`), each with its line, and nothing from
//! comments, string literals or character literals.
//!
//! It is not a full Rust lexer: numbers and lifetimes are dropped, every other
//! punctuation character is one [`Tok::Other`] token. That is enough to find `mod x;`
//! declarations and the paths a file names.

/// The kind of one token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Tok {
    /// An identifier or keyword (`r#name` is given as `name`).
    Ident(String),
    /// `::`.
    PathSep,
    /// `{`.
    Open,
    /// `}`.
    Close,
    /// `;`.
    Semi,
    /// `,`.
    Comma,
    /// `*`.
    Star,
    /// Any other punctuation character.
    Other(char),
}

/// One token and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    /// What it is.
    pub(crate) tok: Tok,
    /// Where it starts (1-based line).
    pub(crate) line: usize,
}

impl Token {
    /// The identifier, when this token is one.
    pub(crate) fn ident(&self) -> Option<&str> {
        match &self.tok {
            Tok::Ident(s) => Some(s),
            _ => None,
        }
    }

    /// Whether this token is the identifier or keyword `word`.
    pub(crate) fn is(&self, word: &str) -> bool {
        self.ident() == Some(word)
    }
}

/// Walks the characters of one source text.
struct Cursor {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Cursor {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    /// Moves one character on, counting lines.
    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Skips to the end of the line (the newline stays).
    fn skip_line(&mut self) {
        while self.peek(0).is_some_and(|c| c != '\n') {
            self.pos += 1;
        }
    }

    /// Skips a block comment, nested ones included; the cursor is on its `/*`.
    fn skip_block_comment(&mut self) {
        self.pos += 2;
        let mut depth = 1;
        while depth > 0 {
            match (self.peek(0), self.peek(1)) {
                (None, _) => return,
                (Some('/'), Some('*')) => {
                    self.pos += 2;
                    depth += 1;
                }
                (Some('*'), Some('/')) => {
                    self.pos += 2;
                    depth -= 1;
                }
                _ => {
                    self.bump();
                }
            }
        }
    }

    /// Skips a quoted literal with backslash escapes; the cursor is on the opening quote.
    fn skip_quoted(&mut self, quote: char) {
        self.pos += 1;
        while let Some(c) = self.bump() {
            if c == '\\' {
                self.bump();
            } else if c == quote {
                return;
            }
        }
    }

    /// Skips a raw string; the cursor is on the first `#` or the `"` after the `r`.
    fn skip_raw_string(&mut self) {
        let mut hashes = 0;
        while self.peek(0) == Some('#') {
            hashes += 1;
            self.pos += 1;
        }
        // The opening quote.
        self.pos += 1;
        while let Some(c) = self.bump() {
            if c == '"' && (0..hashes).all(|k| self.peek(k) == Some('#')) {
                self.pos += hashes;
                return;
            }
        }
    }

    /// Whether the cursor is on `#...#"` or `"` (the rest of a raw string's opening).
    fn at_raw_string_open(&self) -> bool {
        let mut k = 0;
        while self.peek(k) == Some('#') {
            k += 1;
        }
        self.peek(k) == Some('"')
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while self.peek(0).is_some_and(is_ident_char) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The tokens of `text` (see the module docs for what is kept).
pub(crate) fn tokens(text: &str) -> Vec<Token> {
    let mut cur = Cursor {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
    };
    let mut out = Vec::new();
    while let Some(c) = cur.peek(0) {
        let line = cur.line;
        let mut push = |tok| out.push(Token { tok, line });
        match c {
            '/' if cur.peek(1) == Some('/') => cur.skip_line(),
            '/' if cur.peek(1) == Some('*') => cur.skip_block_comment(),
            '"' => cur.skip_quoted('"'),
            '\'' => {
                if cur.peek(1) == Some('\\') {
                    cur.skip_quoted('\'');
                } else if cur.peek(2) == Some('\'') {
                    // A one-character literal such as '{' or '"'.
                    cur.pos += 3;
                } else {
                    // A lifetime or a loop label: not part of a path.
                    cur.pos += 1;
                    cur.word();
                }
            }
            c if c.is_ascii_digit() => {
                cur.word();
            }
            c if is_ident_start(c) => {
                let w = cur.word();
                match (w.as_str(), cur.peek(0)) {
                    ("r" | "br" | "cr", Some('#' | '"')) if cur.at_raw_string_open() => {
                        cur.skip_raw_string();
                    }
                    ("r", Some('#')) if cur.peek(1).is_some_and(is_ident_start) => {
                        cur.pos += 1;
                        let raw = cur.word();
                        push(Tok::Ident(raw));
                    }
                    ("b" | "c", Some('"')) => cur.skip_quoted('"'),
                    ("b", Some('\'')) => cur.skip_quoted('\''),
                    _ => push(Tok::Ident(w)),
                }
            }
            ':' if cur.peek(1) == Some(':') => {
                cur.pos += 2;
                push(Tok::PathSep);
            }
            _ => {
                cur.bump();
                if !c.is_whitespace() {
                    push(match c {
                        '{' => Tok::Open,
                        '}' => Tok::Close,
                        ';' => Tok::Semi,
                        ',' => Tok::Comma,
                        '*' => Tok::Star,
                        other => Tok::Other(other),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The identifiers and `::` of `text`, as one string per token.
    fn words(text: &str) -> Vec<String> {
        tokens(text)
            .into_iter()
            .map(|t| match t.tok {
                Tok::Ident(s) => s,
                Tok::PathSep => "::".into(),
                Tok::Open => "{".into(),
                Tok::Close => "}".into(),
                Tok::Semi => ";".into(),
                Tok::Comma => ",".into(),
                Tok::Star => "*".into(),
                Tok::Other(c) => c.to_string(),
            })
            .collect()
    }

    #[test]
    fn comments_and_literals_are_dropped() {
        let text = "\
// crate::a
use x; /* crate::b /* nested crate::c */ still */ y
let s = \"crate::d \\\" crate::e\";
let r = r#\"crate::f \"quoted\" \"#;
let c = '{'; let e = '\\''; let b = b\"crate::g\"; let q = '\"';
fn f<'a>(v: &'a str) {}
";
        assert_eq!(
            words(text),
            [
                "use", "x", ";", "y", "let", "s", "=", ";", "let", "r", "=", ";", "let", "c", "=",
                ";", "let", "e", "=", ";", "let", "b", "=", ";", "let", "q", "=", ";", "fn", "f",
                "<", ">", "(", "v", ":", "&", "str", ")", "{", "}"
            ]
        );
    }

    #[test]
    fn lines_are_counted_across_multi_line_comments_and_strings() {
        let text = "/* one\ntwo */\n\"three\nfour\"\ncrate::x";
        let t = tokens(text);
        assert_eq!(
            t[0],
            Token {
                tok: Tok::Ident("crate".into()),
                line: 5
            }
        );
        assert_eq!(t[1].tok, Tok::PathSep);
        assert!(t[2].is("x"));
    }

    #[test]
    fn raw_identifiers_are_identifiers() {
        assert_eq!(words("r#type::f"), ["type", "::", "f"]);
    }
}
