//! The server's modules import each other without cycles, and in the directions the
//! layout allows (see the Layout section of `src/lib.rs` and docs/ARCHITECTURE.md).
//!
//! Each file under `src/` is a module. Its edges are the modules its code names by path
//! (`use crate::a::b`, `super::c`, `crate::d::e(..)` inline, and `use` trees with braces),
//! each resolved to the longest prefix that is a module; a `mod` declaration is not an
//! edge. Test code (from the first `#[cfg(test)]` line on) is left out. The check fails
//! with the cycle's modules named, so a new cycle is found in the change that makes it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers no module may import from, by the importing module's prefix: flows and jobs
/// never reach back into the HTTP layer, intake or the application root; intake never
/// reaches into HTTP.
const FORBIDDEN: &[(&str, &[&str])] = &[
    ("crate::flows", &["crate::http", "crate::intake", "crate::app", "crate::jobs::worker"]),
    ("crate::jobs", &["crate::http", "crate::app"]),
    ("crate::intake", &["crate::http", "crate::app"]),
    ("crate::services", &["crate::http", "crate::intake", "crate::flows", "crate::jobs", "crate::app"]),
];

#[test]
fn server_modules_have_no_import_cycles() {
    let graph = Graph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.modules.len() > 20, "the scan found too few modules: {:?}", graph.modules.keys());
    let cycles = graph.cycles();
    assert!(cycles.is_empty(), "import cycles between server modules:\n{}", render(&cycles));
}

#[test]
fn flows_and_jobs_never_import_the_layers_above_them() {
    let graph = Graph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let mut wrong = Vec::new();
    for (from, targets) in &graph.edges {
        for (prefix, forbidden) in FORBIDDEN {
            if !within(from, prefix) {
                continue;
            }
            for to in targets {
                if forbidden.iter().any(|f| within(to, f)) {
                    wrong.push(format!("{from} -> {to}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layout:\n{}", wrong.join("\n"));
}

/// The checker itself finds a cycle, a brace tree, an inline path and `super`.
#[test]
fn the_checker_sees_what_it_must() {
    let dir = std::env::temp_dir().join(format!("zd-graph-{}", std::process::id()));
    let files: &[(&str, &str)] = &[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a/mod.rs", "pub mod inner;\nuse crate::{b::{Thing, other}, c};\n"),
        ("a/inner.rs", "fn f() { super::g(); }\n"),
        ("b.rs", "fn f() { crate::a::inner::h(); }\n#[cfg(test)]\nmod tests { use crate::c; }\n"),
        ("c.rs", "// crate::a is only a comment\nfn f() {}\n"),
    ];
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let graph = Graph::read(&dir);
    let edges = |m: &str| graph.edges.get(m).cloned().unwrap_or_default();
    assert_eq!(edges("crate::a"), BTreeSet::from(["crate::b".to_owned(), "crate::c".to_owned()]));
    assert_eq!(edges("crate::a::inner"), BTreeSet::from(["crate::a".to_owned()]));
    assert_eq!(
        edges("crate::b"),
        BTreeSet::from(["crate::a::inner".to_owned()]),
        "test code and comments are not edges"
    );
    assert!(edges("crate::c").is_empty());
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(cycles[0], vec!["crate::a".to_owned(), "crate::a::inner".to_owned(), "crate::b".to_owned()]);
    let _ = std::fs::remove_dir_all(dir);
}

fn within(module: &str, prefix: &str) -> bool {
    module == prefix || module.starts_with(&format!("{prefix}::"))
}

fn render(cycles: &[Vec<String>]) -> String {
    cycles.iter().map(|c| format!("  {}", c.join(" <-> "))).collect::<Vec<_>>().join("\n")
}

struct Graph {
    /// Module path → the file that holds it.
    modules: BTreeMap<String, PathBuf>,
    edges: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn read(src: &Path) -> Graph {
        let mut modules = BTreeMap::new();
        collect(src, src, &mut modules);
        let mut edges = BTreeMap::new();
        for (module, file) in &modules {
            let text = std::fs::read_to_string(file).unwrap();
            let mut targets = BTreeSet::new();
            for path in paths(&code_only(&text)) {
                if let Some(target) = resolve(module, &path, &modules) {
                    if target != *module {
                        targets.insert(target);
                    }
                }
            }
            edges.insert(module.clone(), targets);
        }
        Graph { modules, edges }
    }

    /// Strongly connected components with more than one module (Tarjan's algorithm).
    fn cycles(&self) -> Vec<Vec<String>> {
        struct State<'a> {
            graph: &'a Graph,
            index: BTreeMap<&'a str, usize>,
            low: BTreeMap<&'a str, usize>,
            stack: Vec<&'a str>,
            on_stack: BTreeSet<&'a str>,
            found: Vec<Vec<String>>,
        }
        fn visit<'a>(s: &mut State<'a>, v: &'a str) {
            let i = s.index.len();
            s.index.insert(v, i);
            s.low.insert(v, i);
            s.stack.push(v);
            s.on_stack.insert(v);
            for w in s.graph.edges.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let low = s.low[v].min(s.low[w]);
                    s.low.insert(v, low);
                } else if s.on_stack.contains(w) {
                    let low = s.low[v].min(s.index[w]);
                    s.low.insert(v, low);
                }
            }
            if s.low[v] == s.index[v] {
                let mut component = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    s.found.push(component);
                }
            }
        }
        let mut state = State {
            graph: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on_stack: BTreeSet::new(),
            found: Vec::new(),
        };
        for module in self.modules.keys() {
            if !state.index.contains_key(module.as_str()) {
                visit(&mut state, module);
            }
        }
        state.found
    }
}

/// Every `.rs` file under `dir` with its module path.
fn collect(root: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(root, &path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap().with_extension("");
        let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
            parts.pop();
        }
        let module = std::iter::once("crate".to_owned()).chain(parts).collect::<Vec<_>>().join("::");
        out.insert(module, path);
    }
}

/// The file without test code, comments and string literals.
fn code_only(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            other => out.push(other),
        }
    }
    out
}

/// Every path the code names, `use` trees expanded: each as its segments.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    // `use` statements, with their brace trees; the rest of the code is scanned below.
    let mut other_code = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = find_word(rest, "use") {
        other_code.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let end = after.find(';').unwrap_or(after.len());
        expand(&[], after[..end].trim(), &mut found);
        rest = &after[end..];
    }
    other_code.push_str(rest);
    // Inline paths: `crate::…`, `super::…`, `self::…` anywhere else in the code.
    for start in ["crate::", "super::", "self::"] {
        let mut rest = other_code.as_str();
        while let Some(at) = rest.find(start) {
            let boundary = rest[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            let tail = &rest[at..];
            let len = tail.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(tail.len());
            if boundary {
                found.push(segments(&tail[..len]));
            }
            rest = &tail[len.max(1)..];
        }
    }
    found
}

fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut offset = 0;
    while let Some(at) = text[offset..].find(word) {
        let at = offset + at;
        let before = text[..at].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        let after = text[at + word.len()..].chars().next().is_some_and(char::is_whitespace);
        if before && after {
            return Some(at);
        }
        offset = at + word.len();
    }
    None
}

fn segments(path: &str) -> Vec<String> {
    path.split("::").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// Expands a `use` tree (`a::{b, c::{d}}`) under `prefix`.
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or_default();
        let mut full = prefix.to_vec();
        full.extend(segments(path));
        out.push(full);
        return;
    };
    let mut head = prefix.to_vec();
    head.extend(segments(tree[..open].trim_end_matches("::")));
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                expand(&head, &inner[start..i], out);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !inner[start..].trim().is_empty() {
        expand(&head, &inner[start..], out);
    }
}

/// The module a path names: the longest prefix of it that is a module. Paths outside the
/// crate (`std::…`, another crate) resolve to nothing.
fn resolve(from: &str, path: &[String], modules: &BTreeMap<String, PathBuf>) -> Option<String> {
    let first = path.first()?;
    let mut base: Vec<String> = from.split("::").map(str::to_owned).collect();
    let rest = match first.as_str() {
        "crate" => {
            base = vec!["crate".to_owned()];
            &path[1..]
        }
        "self" => &path[1..],
        "super" => {
            let mut rest = path;
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
            rest
        }
        // A child module named without `self::` (uniform paths).
        name if modules.contains_key(&format!("{from}::{name}")) => path,
        _ => return None,
    };
    let mut best = base.join("::");
    let mut current = base;
    for segment in rest {
        if segment == "self" || segment == "*" {
            break;
        }
        current.push(segment.clone());
        let candidate = current.join("::");
        if modules.contains_key(&candidate) {
            best = candidate;
        } else {
            break;
        }
    }
    modules.contains_key(&best).then_some(best)
}
