//! The crate's layering, checked: every module imports only from the layers below its
//! own, and the files inside one folder import each other without a circle.
//!
//! It reads `src/` and collects each file's `crate::` and `super::` paths (comments
//! left out; an item re-exported by `lib.rs`, such as `crate::Error`, counts as its
//! module). `docs/DESIGN.md` draws the same layers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules, lowest layer first; a module may import only modules
/// listed before it. `lib.rs` re-exports from all of them and is not checked.
const LAYERS: &[&[&str]] = &[
    &["error", "options", "stats"],
    &["compression", "family"],
    &["batch"],
    &["index", "log"],
    &["value"],
    &["engine"],
    &["background", "range"],
    &["snapshot"],
    &["checkpointer"],
    &["compaction"],
    &["db"],
    &["transaction"],
    &["testing"],
];

fn layer_of(module: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` is in no layer of tests/layers.rs"))
}

/// Every `.rs` file under `dir`, as a path relative to `root`.
fn files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(root, &path, out);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

/// The code of a file with its comments removed, and without its inline unit-test
/// module (which sits at the end of the file, imports its parent, and is not part of
/// the layering).
fn code(text: &str) -> String {
    let code = text.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    match code.find("#[cfg(test)]\nmod tests {") {
        Some(tests) => code[..tests].to_string(),
        None => code,
    }
}

/// The module path of a file: `engine/writer.rs` is `[engine, writer]`,
/// `engine/mod.rs` is `[engine]`, `db.rs` would be `[db]`.
fn module_path(file: &Path) -> Vec<String> {
    let mut parts: Vec<String> =
        file.iter().map(|part| part.to_str().unwrap().trim_end_matches(".rs").to_string()).collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    parts
}

/// Reads one use tree at the start of `text` (after a `::`): every full path it names,
/// relative to where it starts. `{a, b::{c, d}}` gives `[a]`, `[b, c]`, `[b, d]`; `*`
/// gives `[*]`.
fn use_tree(text: &str) -> Vec<Vec<String>> {
    let text = text.trim_start();
    if let Some(group) = text.strip_prefix('{') {
        let mut depth = 0;
        let mut items = Vec::new();
        let mut item_start = 0;
        for (at, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&group[item_start..at]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&group[item_start..at]);
                    item_start = at + 1;
                }
                _ => {}
            }
        }
        return items
            .into_iter()
            .filter(|item| !item.trim().is_empty())
            .flat_map(|item| {
                let item = item.trim();
                if item == "self" {
                    return vec![Vec::new()];
                }
                let name: String = item.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                match item[name.len()..].trim_start().strip_prefix("::") {
                    Some(rest) if !name.is_empty() => use_tree(rest)
                        .into_iter()
                        .map(|mut path| {
                            path.insert(0, name.clone());
                            path
                        })
                        .collect(),
                    _ if item.starts_with('*') => vec![vec!["*".to_string()]],
                    _ => vec![vec![name]],
                }
            })
            .collect();
    }
    if text.starts_with('*') {
        return vec![vec!["*".to_string()]];
    }
    let name: String = text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    if name.is_empty() {
        return Vec::new();
    }
    match text[name.len()..].strip_prefix("::") {
        Some(rest) => use_tree(rest)
            .into_iter()
            .map(|mut path| {
                path.insert(0, name.clone());
                path
            })
            .collect(),
        None => vec![vec![name]],
    }
}

/// Every crate-absolute path the code of the file at module path `here` names
/// through `crate::`, `super::` (any number of them) or `self::`.
fn absolute_paths(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("::") {
        // The word before this `::`, and whether it starts a path.
        let before = &code[..at];
        let word_start = before.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(0, |index| index + 1);
        let word = &before[word_start..];
        if !matches!(word, "crate" | "super" | "self") {
            continue;
        }
        // Only the first word of a path: `super::super::x` is read from the first.
        if before[..word_start].ends_with("::") {
            continue;
        }
        let mut base: Vec<String> = match word {
            "crate" => Vec::new(),
            // A file's own module is `here`; `super` of a file is its parent module.
            // In `mod.rs` the module is the folder, so `super` is the folder's parent.
            "super" => here[..here.len().saturating_sub(1)].to_vec(),
            _ => here.to_vec(),
        };
        let mut rest = &code[at + 2..];
        while let Some(next) = rest.trim_start().strip_prefix("super::") {
            base.pop();
            rest = next;
        }
        for path in use_tree(rest) {
            let mut full = base.clone();
            full.extend(path);
            found.push(full);
        }
    }
    found
}

/// Items `lib.rs` re-exports, by the module they come from.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut items = BTreeMap::new();
    for line in code(lib).lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else { continue };
        for path in use_tree(rest.trim_end_matches(';')) {
            if let (Some(module), Some(name)) = (path.first(), path.last()) {
                items.insert(name.clone(), module.clone());
            }
        }
    }
    items
}

#[test]
fn modules_import_only_from_lower_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&root, &root, &mut all);
    let reexported = reexports(&std::fs::read_to_string(root.join("lib.rs")).unwrap());
    let mut wrong = Vec::new();
    // Per folder: file -> sibling files it imports.
    let mut siblings: BTreeMap<Vec<String>, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &all {
        if file == Path::new("lib.rs") {
            continue;
        }
        let here = module_path(file);
        let is_mod_file = file.file_name().is_some_and(|name| name == "mod.rs");
        let text = code(&std::fs::read_to_string(root.join(file)).unwrap());
        for path in absolute_paths(&text, &here) {
            let Some(first) = path.first() else { continue };
            if first == "*" {
                wrong.push(format!("{} imports a glob of the crate root", file.display()));
                continue;
            }
            let target = reexported.get(first).cloned().unwrap_or_else(|| first.clone());
            if target != here[0] {
                if layer_of(&target) >= layer_of(&here[0]) {
                    wrong.push(format!("{} imports crate::{}", file.display(), path.join("::")));
                }
                continue;
            }
            // Within its own top-level module: an edge to a sibling file of the same
            // folder (a file's own children and its folder's mod.rs do not count).
            let folder = &here[..here.len() - usize::from(!is_mod_file)];
            if is_mod_file || path.len() <= folder.len() || !path.starts_with(folder) {
                continue;
            }
            let sibling = &path[folder.len()];
            let exists = root.join(folder.join("/")).join(format!("{sibling}.rs")).exists()
                || root.join(folder.join("/")).join(sibling).is_dir();
            if exists && Some(sibling) != here.last() {
                let me = here.last().unwrap().clone();
                siblings.entry(folder.to_vec()).or_default().entry(me).or_default().insert(sibling.clone());
            }
        }
    }
    assert!(wrong.is_empty(), "imports that do not go down:\n{}", wrong.join("\n"));
    for (folder, graph) in &siblings {
        for start in graph.keys() {
            // Depth-first from `start`: reaching it again is a circle.
            let mut stack: Vec<&String> = graph[start].iter().collect();
            let mut seen = BTreeSet::new();
            while let Some(next) = stack.pop() {
                assert!(
                    next != start,
                    "files of {} import each other in a circle through {start}.rs",
                    folder.join("/")
                );
                if seen.insert(next) {
                    stack.extend(graph.get(next).into_iter().flatten());
                }
            }
        }
    }
}

#[test]
fn the_checker_sees_imports() {
    let here: Vec<String> = ["engine", "record"].map(String::from).to_vec();
    let paths = |text: &str| absolute_paths(&code(text), &here);
    assert_eq!(
        paths("use crate::engine::{Engine, View};\nuse crate::{Error, Result}; // crate::db\nlet x = crate::index::Alex::new();"),
        [vec!["engine", "Engine"], vec!["engine", "View"], vec!["Error"], vec!["Result"], vec!["index", "Alex", "new"]]
    );
    // Nested and multi-line groups.
    assert_eq!(
        paths("use crate::{error::{Error, Result},\n    db::Db};"),
        [vec!["error", "Error"], vec!["error", "Result"], vec!["db", "Db"]]
    );
    // `super` from a file is its folder; twice, the crate root; globs are seen.
    assert_eq!(paths("use super::writer::Writer;"), [vec!["engine", "writer", "Writer"]]);
    assert_eq!(paths("use super::super::db::Db;"), [vec!["db", "Db"]]);
    assert_eq!(paths("use crate::*;"), [vec!["*"]]);
    // In a top-level file or a mod.rs, `super` is the crate root.
    let top: Vec<String> = vec!["range".into()];
    assert_eq!(absolute_paths("use super::db::Db;", &top), [vec!["db", "Db"]]);
    let folder: Vec<String> = vec!["engine".into()];
    assert_eq!(absolute_paths("use super::db::Db;", &folder), [vec!["db", "Db"]]);
    let lib = "pub use range::Range;\npub use error::{Error, Result};\n";
    let map = reexports(lib);
    assert_eq!(map.get("Error").map(String::as_str), Some("error"));
    assert_eq!(map.get("Range").map(String::as_str), Some("range"));
    assert!(layer_of("engine") > layer_of("log") && layer_of("db") > layer_of("compaction"));
}
