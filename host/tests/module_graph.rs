//! The shape of the host crate, checked from its source: the modules (and
//! the submodules of each folder) import each other without cycles, the
//! arrows point down (nothing imports the HTTP edge; the store imports
//! nothing of the engine), and no database driver type or SQL statement
//! appears outside `store/`. Reads `use` lines and paths, not the compiler's
//! view, so it stays fast and needs no extra tool.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One source file: its module path and its text without comments.
struct Source {
    file: PathBuf,
    module: Vec<String>,
    code: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file: `tick/decide.rs` → `tick::decide`,
/// `tick/mod.rs` → `tick`, `lib.rs`/`main.rs` → the crate root.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let file = parts.pop().expect("a file name");
    let stem = file.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_string());
    }
    parts
}

/// Source text without `//` comments (doc comments included), without the
/// contents of string literals, and without its unit tests (a module's
/// tests may use its neighbours freely).
fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let mut in_string = false;
        let mut prev = ' ';
        let mut kept = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !in_string && c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' && prev != '\'' {
                in_string = !in_string;
                kept.push(c);
            } else if !in_string {
                kept.push(c);
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
            i += 1;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The library's files (the binary's tree — `main.rs`, `cli/`, `bench/` —
/// is a crate of its own).
fn sources() -> (Vec<Source>, Vec<Source>) {
    let root = src_dir();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let (mut lib, mut bin) = (Vec::new(), Vec::new());
    for file in files {
        let relative = file.strip_prefix(&root).expect("under src").to_path_buf();
        let first = relative
            .iter()
            .next()
            .expect("a component")
            .to_string_lossy()
            .into_owned();
        let code = strip(&std::fs::read_to_string(&file).expect("read source"));
        let source = Source {
            module: module_of(&relative),
            file: relative,
            code,
        };
        if matches!(first.as_str(), "main.rs" | "cli" | "bench") {
            bin.push(source);
        } else {
            lib.push(source);
        }
    }
    (lib, bin)
}

/// The paths a file names after `prefix` (`crate::`, `super::`, `herald::`),
/// with `{a, b::c}` groups expanded to their first segments.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let mut start = 0;
    while let Some(found) = code[start..].find(prefix) {
        let at = start + found;
        start = at + prefix.len();
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let mut path = Vec::new();
        let mut i = start;
        loop {
            let ident: String = code[i..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                i += ident.len();
                path.push(ident);
                if code[i..].starts_with("::") {
                    i += 2;
                    continue;
                }
                out.push(path);
                break;
            }
            if bytes.get(i) == Some(&b'{') {
                let end = code[i..].find('}').map_or(code.len(), |e| i + e);
                for item in code[i + 1..end].split(',') {
                    // `a::b::C`, `a::{…` (nested groups are cut at the brace).
                    let item: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    let segments: Vec<String> = item
                        .split("::")
                        .filter(|p| !p.is_empty())
                        .map(str::to_string)
                        .collect();
                    let mut p = path.clone();
                    if segments.first().is_some_and(|f| f != "self") {
                        p.extend(segments);
                    }
                    out.push(p);
                }
            } else if !path.is_empty() {
                out.push(path);
            }
            break;
        }
    }
    out
}

/// The longest known module that `path` names (it may go on to an item).
fn resolve(path: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| modules.contains(p))
        .unwrap_or_default()
}

/// Module → the modules it refers to, for one crate. `external` is the
/// prefix under which the crate refers to itself (`crate::`).
fn graph(sources: &[Source]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for s in sources {
        let mut targets = BTreeSet::new();
        for path in paths_after(&s.code, "crate::") {
            targets.insert(resolve(&path, &modules));
        }
        for path in paths_after(&s.code, "super::") {
            // `super::` from `a/b.rs` (module a::b) is `a`; from `a/mod.rs`
            // (module a) it is the crate root.
            let mut base = s.module.clone();
            base.pop();
            let mut full = base;
            let mut rest = path.as_slice();
            while rest.first().is_some_and(|p| p == "super") {
                full.pop();
                rest = &rest[1..];
            }
            full.extend(rest.iter().cloned());
            targets.insert(resolve(&full, &modules));
        }
        targets.remove(&s.module);
        edges.entry(s.module.clone()).or_default().extend(targets);
    }
    edges
}

/// Whether one module path is the other or contains it.
fn related(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The cycles among modules that are not each other's ancestors, at the
/// granularity of `depth` path segments (1: top-level modules; 2: the
/// submodules of each folder).
fn cycles(
    edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    depth: usize,
) -> Vec<Vec<Vec<String>>> {
    let cut = |m: &Vec<String>| m[..m.len().min(depth)].to_vec();
    let mut reduced: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (from, tos) in edges {
        if from.is_empty() {
            continue;
        }
        for to in tos {
            if to.is_empty() {
                continue;
            }
            let (a, b) = (cut(from), cut(to));
            if a != b && !related(&a, &b) {
                reduced.entry(a).or_default().insert(b);
            }
        }
    }
    // A cycle exists where a module reaches itself; report each once.
    let mut found: Vec<Vec<Vec<String>>> = Vec::new();
    for start in reduced.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in reduced.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = trail.clone();
                    cycle.sort();
                    if !found.contains(&cycle) {
                        found.push(cycle);
                    }
                } else if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    found
}

fn show(cycles: &[Vec<Vec<String>>]) -> String {
    cycles
        .iter()
        .map(|c| {
            c.iter()
                .map(|m| m.join("::"))
                .collect::<Vec<_>>()
                .join(" ↔ ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_library_modules_import_each_other_without_cycles() {
    let (lib, _) = sources();
    let edges = graph(&lib);
    assert!(edges.len() > 40, "found only {} modules", edges.len());
    let top = cycles(&edges, 1);
    assert!(
        top.is_empty(),
        "cycles among top-level modules:\n{}",
        show(&top)
    );
    let sub = cycles(&edges, 2);
    assert!(
        sub.is_empty(),
        "cycles among the submodules of a folder:\n{}",
        show(&sub)
    );
}

#[test]
fn the_binary_modules_import_each_other_without_cycles() {
    let (_, bin) = sources();
    let edges = graph(&bin);
    for depth in [1, 2] {
        let found = cycles(&edges, depth);
        assert!(found.is_empty(), "cycles in the binary:\n{}", show(&found));
    }
}

#[test]
fn arrows_point_down() {
    let (lib, _) = sources();
    let edges = graph(&lib);
    let name = |m: &Vec<String>| m.first().cloned().unwrap_or_default();
    let mut wrong = Vec::new();
    for (from, tos) in &edges {
        let top = name(from);
        for to in tos.iter().map(&name) {
            if to == top || to.is_empty() {
                continue;
            }
            // Nothing below the HTTP edge imports it.
            if to == "api" {
                wrong.push(format!("{} imports api", from.join("::")));
            }
            // The store knows only the records it stores and where it is.
            if top == "store" && !["customer", "database"].contains(&to.as_str()) {
                wrong.push(format!("{} imports {to}", from.join("::")));
            }
            // The reminder path does not reach up to the running server.
            if [
                "plan", "tick", "engine", "render", "strategy", "channels", "plugin",
            ]
            .contains(&top.as_str())
                && ["live", "check", "explain", "simulate", "import"].contains(&to.as_str())
            {
                wrong.push(format!("{} imports {to}", from.join("::")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows pointing up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_database_driver_or_sql_outside_the_store() {
    let (lib, bin) = sources();
    let driver = ["sqlx", "Sqlite", "libsqlite3_sys", "PgPool", "Postgres"];
    let sql = [
        "SELECT ",
        "INSERT INTO",
        "DELETE FROM",
        "UPDATE schedule",
        "CREATE TABLE",
    ];
    let mut found = Vec::new();
    for s in lib.iter().chain(&bin) {
        if s.module.first().is_some_and(|m| m == "store") {
            continue;
        }
        let raw = std::fs::read_to_string(src_dir().join(&s.file)).expect("read");
        for word in driver {
            if s.code.contains(word) {
                found.push(format!("{}: names `{word}`", s.file.display()));
            }
        }
        for statement in sql {
            if raw
                .lines()
                .any(|l| !l.trim_start().starts_with("//") && l.contains(statement))
            {
                found.push(format!("{}: SQL `{}`", s.file.display(), statement.trim()));
            }
        }
    }
    assert!(found.is_empty(), "outside store/:\n{}", found.join("\n"));
}

#[test]
fn the_checks_see_what_they_check() {
    // The extraction itself: a grouped use, a super path and a nested group.
    let code =
        strip("use crate::{a::b, c};\nuse super::d::E; // crate::zz\nlet x = \"crate::yy\";\n");
    let crate_paths = paths_after(&code, "crate::");
    assert_eq!(
        crate_paths,
        vec![vec!["a".to_string(), "b".into()], vec!["c".into()]]
    );
    assert_eq!(
        paths_after(&code, "super::"),
        vec![vec!["d".to_string(), "E".into()]]
    );
    let mut edges = BTreeMap::new();
    edges.insert(
        vec!["a".to_string()],
        BTreeSet::from([vec!["b".to_string()]]),
    );
    edges.insert(
        vec!["b".to_string()],
        BTreeSet::from([vec!["a".to_string()]]),
    );
    assert_eq!(cycles(&edges, 1).len(), 1, "a two-module cycle is found");
}
