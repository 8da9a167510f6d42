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
    ("crate::jobs", &["crate::http", "crate::intake", "crate::app"]),
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

/// Enqueueing is typed: only `jobs` (its `enqueue`) builds the store's untyped `NewJob`,
/// so no flow can write a payload by hand.
#[test]
fn only_the_jobs_module_builds_untyped_jobs() {
    let graph = Graph::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let builders: Vec<&String> = graph
        .modules
        .iter()
        .filter(|(_, file)| code_only(&std::fs::read_to_string(file).unwrap()).contains("NewJob"))
        .map(|(module, _)| module)
        .collect();
    assert_eq!(builders, ["crate::jobs"], "modules that build untyped jobs");
}

/// The checker itself finds a cycle, a brace tree, an inline path and `super`.
#[test]
fn the_checker_sees_what_it_must() {
    let dir = std::env::temp_dir().join(format!("zd-graph-{}", std::process::id()));
    let files: &[(&str, &str)] = &[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\npub mod d;\npub mod e;\n"),
        ("a/mod.rs", "pub mod inner;\nuse crate::{b::{Thing, other}, c};\n"),
        ("a/inner.rs", "fn f() { super::g(); }\n"),
        ("b.rs", "fn f() { crate::a::inner::h(); }\n#[cfg(test)]\nmod tests { use crate::c; }\n"),
        ("c.rs", "// crate::a is only a comment\n/* crate::b neither */\nfn f() { let q = '\"'; let r = r#\"\"crate::d\"\"#; }\n"),
        // A module brought in by `use`, then named inline; an alias; a child named inline.
        ("d/mod.rs", "pub mod kid;\nuse crate::a;\nuse crate::c as see;\nfn f() { a::inner::h(); see::f(); kid::g(); }\n"),
        ("d/kid.rs", "fn g() {}\n"),
        ("e.rs", "use crate::a::{self, inner};\nfn f() { a::x(); }\n"),
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
    assert!(edges("crate::c").is_empty(), "comments, strings and char literals are not code");
    let d = BTreeSet::from([
        "crate::a".to_owned(),
        "crate::a::inner".to_owned(),
        "crate::c".to_owned(),
        "crate::d::kid".to_owned(),
    ]);
    assert_eq!(edges("crate::d"), d, "imported names and children named inline are edges");
    assert_eq!(edges("crate::e"), BTreeSet::from(["crate::a".to_owned(), "crate::a::inner".to_owned()]));
    let cycles = graph.cycles();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    assert_eq!(cycles[0], vec!["crate::a".to_owned(), "crate::a::inner".to_owned(), "crate::b".to_owned()]);
    let _ = std::fs::remove_dir_all(dir);
}

/// Marks the local name a `use … as name` gives, in an expanded `use` path.
const ALIAS_MARK: &str = "as=";

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

/// The file without test code (from the first line that is exactly `#[cfg(test)]`),
/// comments (line and block), string literals (raw ones too) and char literals.
fn code_only(text: &str) -> String {
    let end = text.lines().position(|line| line.trim() == "#[cfg(test)]").unwrap_or(usize::MAX);
    let text: String = text.lines().take(end).collect::<Vec<_>>().join("\n");
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        match rest {
            ['/', '/', ..] => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ['/', '*', ..] => {
                i += 2;
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            ['r', '#', ..] | ['r', '"', ..] if !word_before(&chars, i) => {
                let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
                i += 1 + hashes + 1; // r, the hashes, the quote
                while i < chars.len() && !(chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|c| *c == '#')) {
                    i += 1;
                }
                i += 1 + hashes;
                out.push_str("\"\"");
            }
            ['"', ..] => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
                out.push_str("\"\"");
            }
            // A char literal ('x', '\n', '"'), not a lifetime ('a).
            ['\'', '\\', ..] => {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            }
            ['\'', _, '\'', ..] => i += 3,
            [c, ..] => {
                out.push(*c);
                i += 1;
            }
            [] => break,
        }
    }
    out
}

fn word_before(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Every path the code names, `use` trees expanded: each as its segments. Inline paths
/// that start with a name a `use` brought in (`delivery::miss::f()` after
/// `use crate::flows::delivery;`) are expanded through it; those that start with a child
/// module's name are returned as they are (`resolve` knows children).
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
    // What each imported name stands for (its last segment, or its `as` name).
    let imported: BTreeMap<String, Vec<String>> = found
        .iter()
        .filter_map(|path| {
            let last = path.last()?;
            Some(match last.strip_prefix(ALIAS_MARK) {
                Some(alias) => (alias.to_owned(), path[..path.len() - 1].to_vec()),
                None => (last.clone(), path.clone()),
            })
        })
        .collect();
    let chars: Vec<char> = other_code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if !(chars[i].is_alphabetic() || chars[i] == '_') || word_before(&chars, i) {
            i += 1;
            continue;
        }
        let len = chars[i..].iter().take_while(|c| c.is_alphanumeric() || **c == '_' || **c == ':').count();
        let path: String = chars[i..i + len].iter().collect();
        i += len;
        let segments = segments(&path);
        if !path.contains("::") || segments.is_empty() {
            continue;
        }
        match imported.get(&segments[0]) {
            Some(full) if !matches!(segments[0].as_str(), "crate" | "super" | "self") => {
                let mut expanded = full.clone();
                expanded.extend(segments[1..].iter().cloned());
                found.push(expanded);
            }
            _ => found.push(segments),
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
        let mut parts = tree.split(" as ");
        let mut full = prefix.to_vec();
        // `{self, …}` names the module itself.
        full.extend(segments(parts.next().unwrap_or_default()).into_iter().filter(|s| s != "self"));
        // `use a::b as c`: recorded under the local name, so `c::x` expands to `a::b::x`.
        if let Some(alias) = parts.next() {
            full.push(format!("{ALIAS_MARK}{}", alias.trim()));
        }
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
