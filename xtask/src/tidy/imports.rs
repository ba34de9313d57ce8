//! Which module files of a crate name which others: the graph the import-circle and
//! layering checks work on.
//!
//! * Every `.rs` file under a crate's `src/` is one module: `lib.rs` (or `main.rs` when
//!   there is no `lib.rs`) is the crate root, `a/mod.rs` is `a`, `a/b.rs` is `a::b`.
//!   `src/bin/*.rs`, and `main.rs` beside a `lib.rs`, are roots of other crates (binaries
//!   that reach the library by its name) and are left out.
//! * A file names a module file when a code path starts with `crate::`, `self::`,
//!   `super::` (any number of them) or a child module the file declares with `mod child;`,
//!   grouped uses (`use crate::{a::X, b::{c, d}}`) included. The path resolves to the
//!   longest prefix that is a module file: `crate::net::Shared` is `net` (its `mod.rs`),
//!   `crate::net::client::serve` is `net::client`.
//! * A `mod child;` declaration names nothing, and inline modules (`mod tests { use
//!   super::*; }`) are part of their file: `super::` inside them is the file itself.
//! * Comments, string and character literals are not code (see [`super::lexer`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::lexer::{tokens, Tok, Token};
use super::sources::rust_files;

/// A module inside one crate: `[]` is the crate root, `["net", "client"]` is `net::client`.
pub(crate) type ModPath = Vec<String>;

/// A module as a reader writes it: `crate` for the root, else `a::b`.
pub(crate) fn display(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

/// One crate's module files.
#[derive(Debug, Clone)]
pub(crate) struct CrateSources {
    /// The crate's directory name in the workspace (`proxy`, `xtask`, ...).
    pub(crate) name: String,
    /// Every module and its file.
    pub(crate) files: BTreeMap<ModPath, PathBuf>,
}

/// The module a file under `src` is, or `None` for a file that is not part of the tree
/// rooted at `lib.rs` (or at `main.rs` when there is no `lib.rs`).
pub(crate) fn module_of(src: &Path, file: &Path, has_lib: bool) -> Option<ModPath> {
    let rel = file.strip_prefix(src).ok()?;
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".rs")?;
    if parts.first().is_some_and(|p| p == "bin") {
        return None;
    }
    if parts.is_empty() && (stem == "lib" || stem == "main") {
        return (stem == "lib" || !has_lib).then(Vec::new);
    }
    if stem != "mod" {
        parts.push(stem.to_string());
    }
    Some(parts)
}

/// The module files of the crate whose sources are in `src`.
pub(crate) fn crate_sources(name: &str, src: &Path) -> anyhow::Result<CrateSources> {
    let has_lib = src.join("lib.rs").is_file();
    let files = rust_files(src)?
        .into_iter()
        .filter_map(|f| module_of(src, &f, has_lib).map(|m| (m, f)))
        .collect();
    Ok(CrateSources {
        name: name.to_string(),
        files,
    })
}

/// A path named by the code of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedPath {
    /// The line that names it (1-based).
    pub(crate) line: usize,
    /// The path as written, a grouped use spelled out (`crate::a::X`).
    pub(crate) text: String,
    /// The full path from the crate root, item segments included (`["net", "Shared"]`).
    pub(crate) absolute: ModPath,
}

/// The children a file declares with `mod child;` at its top level.
fn declared_children(toks: &[Token]) -> Vec<String> {
    let mut children = Vec::new();
    let mut depth = 0usize;
    for (i, t) in toks.iter().enumerate() {
        match t.tok {
            Tok::Open => depth += 1,
            Tok::Close => depth = depth.saturating_sub(1),
            _ if depth == 0 && t.is("mod") => {
                if let (Some(name), Some(Tok::Semi)) = (
                    toks.get(i + 1).and_then(Token::ident),
                    toks.get(i + 2).map(|t| &t.tok),
                ) {
                    children.push(name.to_string());
                }
            }
            _ => {}
        }
    }
    children
}

/// Whether a path that a file names starts at token `i`.
fn starts_path(toks: &[Token], i: usize, children: &[String]) -> bool {
    let Some(word) = toks[i].ident() else {
        return false;
    };
    let after_sep_or_dot = i > 0 && matches!(toks[i - 1].tok, Tok::PathSep | Tok::Other('.'));
    let before_sep = toks.get(i + 1).is_some_and(|t| t.tok == Tok::PathSep);
    let anchored = matches!(word, "crate" | "self" | "super") || children.iter().any(|c| c == word);
    anchored && before_sep && !after_sep_or_dot
}

/// Parses one use tree (or expression path) at `i`, below `prefix`, into `out` as
/// `(segments, line)`; returns the index after it.
fn parse_tree(
    toks: &[Token],
    i: usize,
    mut segs: Vec<String>,
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let mut j = i;
    loop {
        let Some(t) = toks.get(j) else {
            return j;
        };
        match &t.tok {
            Tok::Ident(word) => {
                // `a::{self, B}`: `self` is the prefix itself.
                if word != "self" || segs.is_empty() {
                    segs.push(word.clone());
                }
                j += 1;
                if toks.get(j).is_some_and(|t| t.tok == Tok::PathSep) {
                    match toks.get(j + 1).map(|t| &t.tok) {
                        Some(Tok::Ident(_)) => j += 1,
                        Some(Tok::Open) => return parse_group(toks, j + 1, &segs, out),
                        Some(Tok::Star) => {
                            out.push((segs, t.line));
                            return j + 2;
                        }
                        // A turbofish (`f::<T>`) or something this parser does not know.
                        _ => {
                            out.push((segs, t.line));
                            return j + 1;
                        }
                    }
                } else {
                    out.push((segs, t.line));
                    return j;
                }
            }
            Tok::Open => return parse_group(toks, j, &segs, out),
            _ => return j,
        }
    }
}

/// Parses a `{ tree, tree, ... }` group at `open` below `prefix`; returns the index after
/// its closing brace.
fn parse_group(
    toks: &[Token],
    open: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, usize)>,
) -> usize {
    let mut j = open + 1;
    loop {
        let Some(t) = toks.get(j) else {
            return j;
        };
        match t.tok {
            Tok::Close => return j + 1,
            Tok::Ident(_) | Tok::Open => {
                let next = parse_tree(toks, j, prefix.to_vec(), out);
                j = next.max(j + 1);
                // Whatever follows the tree up to the next `,` or `}` (`X as Y`).
                while let Some(t) = toks.get(j) {
                    match t.tok {
                        Tok::Comma | Tok::Close => break,
                        _ => j += 1,
                    }
                }
            }
            Tok::Star => {
                out.push((prefix.to_vec(), t.line));
                j += 1;
            }
            _ => j += 1,
        }
    }
}

/// The full path of `segs`, named in module `scope` (the file's module `here` plus any
/// inline modules around the path), or `None` when it climbs above the crate root.
fn absolute(here: &[String], scope: &[String], segs: &[String]) -> Option<ModPath> {
    let (first, rest) = segs.split_first()?;
    let mut base = match first.as_str() {
        "crate" => Vec::new(),
        "self" => scope.to_vec(),
        "super" => {
            let mut b = scope.to_vec();
            b.pop()?;
            b
        }
        // A child declared by this file: `child::f`.
        child => {
            let mut b = here.to_vec();
            b.push(child.to_string());
            b
        }
    };
    let mut rest = rest.iter().peekable();
    while let Some(s) = rest.next_if(|s| *s == "super" || *s == "self") {
        if s == "super" {
            base.pop()?;
        }
    }
    base.extend(rest.cloned());
    Some(base)
}

/// The paths named by the code of `text`, the source of module `here`.
pub(crate) fn named_paths(here: &[String], text: &str) -> Vec<NamedPath> {
    let toks = tokens(text);
    let children = declared_children(&toks);
    let mut out = Vec::new();
    // Inline modules around the cursor: name and the brace depth inside them.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < toks.len() {
        match toks[i].tok {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            _ => {}
        }
        if toks[i].is("mod") {
            if let (Some(name), Some(Tok::Open)) = (
                toks.get(i + 1).and_then(Token::ident),
                toks.get(i + 2).map(|t| &t.tok),
            ) {
                depth += 1;
                inline.push((name.to_string(), depth));
                i += 3;
                continue;
            }
        }
        if !starts_path(&toks, i, &children) {
            i += 1;
            continue;
        }
        let mut scope = here.to_vec();
        scope.extend(inline.iter().map(|(name, _)| name.clone()));
        let mut found = Vec::new();
        i = parse_tree(&toks, i, Vec::new(), &mut found);
        for (segs, line) in found {
            if let Some(absolute) = absolute(here, &scope, &segs) {
                out.push(NamedPath {
                    line,
                    text: segs.join("::"),
                    absolute,
                });
            }
        }
    }
    out
}

/// The module file `path` names: its longest prefix that is a module of `files`.
pub(crate) fn resolve<'a>(
    files: &'a BTreeMap<ModPath, PathBuf>,
    path: &[String],
) -> Option<&'a ModPath> {
    (0..=path.len())
        .rev()
        .find_map(|n| files.get_key_value(&path[..n]).map(|(k, _)| k))
}

/// One module file naming another, at the first line that does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edge {
    /// The module whose file names the other.
    pub(crate) from: ModPath,
    /// The module named.
    pub(crate) to: ModPath,
    /// The file of `from`.
    pub(crate) file: PathBuf,
    /// The first line of `file` that names `to`.
    pub(crate) line: usize,
    /// The path on that line.
    pub(crate) text: String,
}

/// Every edge between two different module files of a crate, one per pair (the first
/// line that causes it), sorted by `from` then `to`.
pub(crate) fn edges(sources: &CrateSources) -> anyhow::Result<Vec<Edge>> {
    let mut found: BTreeMap<(ModPath, ModPath), Edge> = BTreeMap::new();
    for (module, file) in &sources.files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for named in named_paths(module, &text) {
            let Some(to) = resolve(&sources.files, &named.absolute) else {
                continue;
            };
            if to == module {
                continue;
            }
            found
                .entry((module.clone(), to.clone()))
                .or_insert_with(|| Edge {
                    from: module.clone(),
                    to: to.clone(),
                    file: file.clone(),
                    line: named.line,
                    text: named.text,
                });
        }
    }
    Ok(found.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tidy::sources::TempTree;

    fn m(path: &str) -> ModPath {
        path.split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// `(line, text, absolute)` of each path `text` names as module `here`.
    fn named(here: &str, text: &str) -> Vec<(usize, String, String)> {
        named_paths(&m(here), text)
            .into_iter()
            .map(|n| (n.line, n.text, display(&n.absolute)))
            .collect()
    }

    fn row(line: usize, text: &str, absolute: &str) -> (usize, String, String) {
        (line, text.to_string(), absolute.to_string())
    }

    #[test]
    fn files_map_to_modules() {
        let src = Path::new("/w/c/src");
        let of = |f: &str, lib| module_of(src, &src.join(f), lib).map(|p| display(&p));
        assert_eq!(of("lib.rs", true).as_deref(), Some("crate"));
        assert_eq!(of("main.rs", true), None, "a binary beside the library");
        assert_eq!(of("main.rs", false).as_deref(), Some("crate"));
        assert_eq!(of("net/mod.rs", true).as_deref(), Some("net"));
        assert_eq!(of("net/client.rs", true).as_deref(), Some("net::client"));
        assert_eq!(of("bin/tool.rs", true), None);
    }

    #[test]
    fn grouped_and_nested_uses_are_spelled_out() {
        let text = "use crate::{a, b::c, d::{self, e::F as G}, h::*};\n";
        assert_eq!(
            named("x", text),
            [
                row(1, "crate::a", "a"),
                row(1, "crate::b::c", "b::c"),
                row(1, "crate::d", "d"),
                row(1, "crate::d::e::F", "d::e::F"),
                row(1, "crate::h", "h"),
            ]
        );
    }

    #[test]
    fn super_self_and_declared_children_are_relative_to_the_file() {
        let text = "\
mod child;
use super::super::Top;
fn f() { self::g(); child::h(); other::i(); x.child::<u8>(); }
use super::Sibling;
";
        assert_eq!(
            named("a::b::c", text),
            [
                row(2, "super::super::Top", "a::Top"),
                row(3, "self::g", "a::b::c::g"),
                row(3, "child::h", "a::b::c::child::h"),
                row(4, "super::Sibling", "a::b::Sibling"),
            ]
        );
        // Above the crate root is no path at all.
        assert!(named("", "use super::X;\n").is_empty());
    }

    #[test]
    fn inline_modules_are_part_of_their_file() {
        let text = "\
fn f() {}
#[cfg(test)]
mod tests {
    use super::*;
    mod deeper { use super::super::f; }
    fn t() { super::f(); }
}
use self::x::Y;
";
        assert_eq!(
            named("a", text),
            [
                row(4, "super", "a"),
                row(5, "super::super::f", "a::f"),
                row(6, "super::f", "a::f"),
                row(8, "self::x::Y", "a::x::Y"),
            ]
        );
    }

    #[test]
    fn comment_lines_and_strings_name_nothing() {
        let text = "\
// use crate::a::X;
/// See [`crate::b`].
let s = \"crate::c::D\";
let t = 1; // crate::e
";
        assert!(named("x", text).is_empty());
    }

    #[test]
    fn the_longest_module_prefix_wins() {
        let files: BTreeMap<ModPath, PathBuf> = ["", "net", "net::client"]
            .iter()
            .map(|p| (m(p), PathBuf::from(p)))
            .collect();
        let to = |p: &str| resolve(&files, &m(p)).map(|x| display(x));
        assert_eq!(to("net::Shared").as_deref(), Some("net"));
        assert_eq!(to("net::client::serve").as_deref(), Some("net::client"));
        assert_eq!(to("net::client").as_deref(), Some("net::client"));
        assert_eq!(to("Config").as_deref(), Some("crate"));
    }

    #[test]
    fn edges_link_files_once_at_the_first_line() {
        let tree = TempTree::new(&[
            ("src/lib.rs", "pub mod net;\npub mod app;\n"),
            (
                "src/net/mod.rs",
                "pub mod client;\npub struct Shared;\nfn f() { client::serve(); }\n",
            ),
            (
                "src/net/client.rs",
                "use crate::net::Shared;\nuse super::Shared as S;\npub fn serve() {}\n",
            ),
            (
                "src/app.rs",
                "use crate::{net::client::serve, net};\nmod tests { use super::*; }\n",
            ),
        ]);
        let sources = crate_sources("demo", &tree.root.join("src")).expect("read the crate");
        let got: Vec<(String, String, usize, String)> = edges(&sources)
            .expect("read the files")
            .into_iter()
            .map(|e| (display(&e.from), display(&e.to), e.line, e.text))
            .collect();
        let e = |from: &str, to: &str, line, text: &str| {
            (from.to_string(), to.to_string(), line, text.to_string())
        };
        assert_eq!(
            got,
            [
                e("app", "net", 1, "crate::net"),
                e("app", "net::client", 1, "crate::net::client::serve"),
                e("net", "net::client", 3, "client::serve"),
                e("net::client", "net", 1, "crate::net::Shared"),
            ]
        );
    }
}
