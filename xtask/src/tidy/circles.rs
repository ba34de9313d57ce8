//! No import circles: within each workspace crate, no module file may reach itself again
//! through the files it names (see [`super::imports`] for what names a file). A circle
//! is a strongly connected component of more than one file (Tarjan's algorithm); it is
//! reported with one shortest way round and every edge inside it, each with the first
//! line that causes it, so the reader knows which lines to change.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;

use super::imports::{crate_sources, display, edges, CrateSources, Edge, ModPath};
use super::sources::{members_of, shown};

/// The strongly connected components of the graph `adj` (nodes `0..adj.len()`), each
/// sorted, in the order Tarjan's algorithm closes them.
pub(crate) fn strongly_connected(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut t = Tarjan {
        adj,
        index: vec![None; adj.len()],
        low: vec![0; adj.len()],
        stack: Vec::new(),
        on_stack: vec![false; adj.len()],
        next: 0,
        out: Vec::new(),
    };
    for v in 0..adj.len() {
        if t.index[v].is_none() {
            t.visit(v);
        }
    }
    t.out
}

/// The state of one run of Tarjan's algorithm.
struct Tarjan<'a> {
    adj: &'a [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    stack: Vec<usize>,
    on_stack: Vec<bool>,
    next: usize,
    out: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        for &w in &self.adj[v] {
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(iw) if self.on_stack[w] => self.low[v] = self.low[v].min(iw),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            component.sort_unstable();
            self.out.push(component);
        }
    }
}

/// A shortest closed walk `start -> ... -> start` inside `members` (`start` repeated at
/// the end), or just `[start]` when there is none.
fn shortest_cycle(adj: &[Vec<usize>], members: &[usize], start: usize) -> Vec<usize> {
    let mut parent: BTreeMap<usize, usize> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(u) = queue.pop_front() {
        for &v in &adj[u] {
            if !members.contains(&v) {
                continue;
            }
            if v == start {
                let mut path = vec![start, u];
                let mut at = u;
                while let Some(&p) = parent.get(&at) {
                    path.push(p);
                    at = p;
                }
                // `path` runs backwards from the end: start, u, ..., start.
                path.reverse();
                return path;
            }
            if v != start && !parent.contains_key(&v) {
                parent.insert(v, u);
                queue.push_back(v);
            }
        }
    }
    vec![start]
}

/// One import circle of a crate.
#[derive(Debug, Clone)]
pub(crate) struct Circle {
    /// The crate's directory name.
    pub(crate) crate_name: String,
    /// Every module in the circle, sorted.
    pub(crate) modules: Vec<ModPath>,
    /// One shortest way round, from the first module back to it.
    pub(crate) cycle: Vec<ModPath>,
    /// Every edge between two modules of the circle.
    pub(crate) edges: Vec<Edge>,
}

impl Circle {
    /// The report: `import circle in <crate>: a -> b -> a`, the modules when the way
    /// round does not pass them all, then one line per edge with the line causing it.
    pub(crate) fn report(&self, root: &Path) -> String {
        let way: Vec<String> = self.cycle.iter().map(|m| display(m)).collect();
        let mut s = format!("import circle in {}: {}", self.crate_name, way.join(" -> "));
        if self.cycle.len() <= self.modules.len() {
            let all: Vec<String> = self.modules.iter().map(|m| display(m)).collect();
            s.push_str(&format!(
                " (the circle holds {} modules: {})",
                all.len(),
                all.join(", ")
            ));
        }
        for e in &self.edges {
            s.push_str(&format!(
                "\n    {}:{}: {} -> {} (`{}`)",
                shown(root, &e.file),
                e.line,
                display(&e.from),
                display(&e.to),
                e.text
            ));
        }
        s
    }
}

/// The import circles of one crate.
pub(crate) fn circles_of(sources: &CrateSources) -> anyhow::Result<Vec<Circle>> {
    let modules: Vec<&ModPath> = sources.files.keys().collect();
    let at = |m: &ModPath| modules.binary_search(&m).ok();
    let all_edges = edges(sources)?;
    let mut adj = vec![Vec::new(); modules.len()];
    for e in &all_edges {
        if let (Some(a), Some(b)) = (at(&e.from), at(&e.to)) {
            adj[a].push(b);
        }
    }
    let mut circles: Vec<Circle> = strongly_connected(&adj)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|members| {
            let inside = |m: &ModPath| at(m).is_some_and(|i| members.contains(&i));
            Circle {
                crate_name: sources.name.clone(),
                modules: members.iter().map(|&i| modules[i].clone()).collect(),
                cycle: shortest_cycle(&adj, &members, members[0])
                    .into_iter()
                    .map(|i| modules[i].clone())
                    .collect(),
                edges: all_edges
                    .iter()
                    .filter(|e| inside(&e.from) && inside(&e.to))
                    .cloned()
                    .collect(),
            }
        })
        .collect();
    circles.sort_by(|a, b| a.modules.cmp(&b.modules));
    Ok(circles)
}

/// The import circles of every workspace member with a `src/`, one report each.
pub(crate) fn import_circles(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut reports = Vec::new();
    for member in members_of(root)? {
        let src = root.join(&member).join("src");
        if !src.is_dir() {
            continue;
        }
        for circle in circles_of(&crate_sources(&member, &src)?)? {
            reports.push(circle.report(root));
        }
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tidy::sources::TempTree;

    /// The circles of a crate made of `files` (paths under `src/`), as the reports'
    /// first lines.
    fn circles(files: &[(&str, &str)]) -> Vec<String> {
        let files: Vec<(String, &str)> = files
            .iter()
            .map(|(p, t)| (format!("demo/src/{p}"), *t))
            .collect();
        let files: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), *t)).collect();
        let tree = TempTree::new(&files);
        let sources = crate_sources("demo", &tree.root.join("demo/src")).expect("read the crate");
        circles_of(&sources)
            .expect("read the files")
            .iter()
            .map(|c| {
                c.report(&tree.root)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn tarjan_finds_the_components() {
        // 0 <-> 1, 1 -> 2, 2 -> 3 -> 4 -> 2, 5 alone.
        let adj = vec![vec![1], vec![0, 2], vec![3], vec![4], vec![2], vec![]];
        let mut got = strongly_connected(&adj);
        got.sort();
        assert_eq!(got, [vec![0, 1], vec![2, 3, 4], vec![5]]);
        assert_eq!(shortest_cycle(&adj, &[2, 3, 4], 3), [3, 4, 2, 3]);
        assert_eq!(shortest_cycle(&adj, &[5], 5), [5]);
    }

    #[test]
    fn a_two_file_circle_is_found_with_its_lines() {
        let tree = TempTree::new(&[
            ("demo/src/lib.rs", "mod a;\nmod b;\n"),
            ("demo/src/a.rs", "use crate::b::B;\npub struct A;\n"),
            (
                "demo/src/b.rs",
                "pub struct B;\n\nfn f() -> crate::a::A { todo!() }\n",
            ),
        ]);
        let sources = crate_sources("demo", &tree.root.join("demo/src")).expect("read the crate");
        let found = circles_of(&sources).expect("read the files");
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].report(&tree.root),
            "import circle in demo: a -> b -> a\n    \
             demo/src/a.rs:1: a -> b (`crate::b::B`)\n    \
             demo/src/b.rs:3: b -> a (`crate::a::A`)"
        );
    }

    #[test]
    fn a_child_naming_its_parent_is_no_circle() {
        assert!(circles(&[
            ("lib.rs", "pub mod parent;\n"),
            ("parent/mod.rs", "pub mod child;\npub struct X;\n"),
            ("parent/child.rs", "use crate::parent::X;\n"),
        ])
        .is_empty());
    }

    #[test]
    fn a_parent_calling_its_child_that_names_the_parent_is_a_circle() {
        assert_eq!(
            circles(&[
                ("lib.rs", "pub mod parent;\n"),
                (
                    "parent/mod.rs",
                    "mod child;\npub struct Y;\nfn g() { child::f(); }\n"
                ),
                ("parent/child.rs", "pub fn f() { let _ = super::Y; }\n"),
            ]),
            ["import circle in demo: parent -> parent::child -> parent"]
        );
    }

    #[test]
    fn comment_lines_make_no_circle() {
        assert!(circles(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            (
                "a.rs",
                "// use crate::b::B;\n  /// [`crate::b`]\npub struct A;\n"
            ),
            ("b.rs", "use crate::a::A;\n"),
        ])
        .is_empty());
    }

    #[test]
    fn grouped_uses_and_the_longest_prefix_close_circles() {
        // `net::client` names `net` through a group; `net` names `net::client` by its
        // full path (the longest prefix), not `net` itself.
        assert_eq!(
            circles(&[
                ("lib.rs", "pub mod net;\npub mod app;\n"),
                ("net/mod.rs", "pub mod client;\npub struct Shared;\n"),
                ("net/client.rs", "use crate::{app, net::{Shared}};\n"),
                ("app.rs", "use crate::net::client::serve;\n"),
            ]),
            ["import circle in demo: app -> net::client -> app"]
        );
        // A circle through three files, reported with every module it holds.
        let three = circles(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\nmod d;\n"),
            ("a.rs", "use crate::b::X;\n"),
            ("b.rs", "use crate::{c::Y, d};\n"),
            ("c.rs", "use crate::a::Z;\n"),
            ("d.rs", "use crate::b;\n"),
        ]);
        assert_eq!(
            three,
            ["import circle in demo: a -> b -> c -> a (the circle holds 4 modules: a, b, c, d)"]
        );
    }
}
