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
    &["error", "options", "batch", "stats"],
    &["index", "log"],
    &["value"],
    &["engine"],
    &["background", "range"],
    &["snapshot"],
    &["checkpointer"],
    &["compaction"],
    &["db"],
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

/// The code of a file with its comments removed.
fn code(text: &str) -> String {
    text.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The first path segment after each `prefix::` in `code`; for `prefix::{a, b::c}`
/// each of the group's first segments.
fn paths_after(code: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let needle = format!("{prefix}::");
    let mut rest = code;
    while let Some(at) = rest.find(&needle) {
        let before = rest[..at].chars().last();
        rest = &rest[at + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let first = item.trim().split("::").next().unwrap_or("").trim().to_string();
                if !first.is_empty() && first != "self" {
                    found.push(first);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// Items `lib.rs` re-exports, by the module they come from.
fn reexports(lib: &str) -> BTreeMap<String, String> {
    let mut items = BTreeMap::new();
    for line in code(lib).lines() {
        let Some(rest) = line.trim().strip_prefix("pub use ") else { continue };
        let Some((module, names)) = rest.trim_end_matches(';').split_once("::") else { continue };
        for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            items.insert(name.trim().to_string(), module.to_string());
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
    let mut upward = Vec::new();
    // Per folder: file -> sibling files it imports.
    let mut siblings: BTreeMap<PathBuf, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in &all {
        if file == Path::new("lib.rs") {
            continue;
        }
        let text = code(&std::fs::read_to_string(root.join(file)).unwrap());
        let module = file.components().next().unwrap().as_os_str().to_str().unwrap().trim_end_matches(".rs");
        for target in paths_after(&text, "crate") {
            let target = reexported.get(&target).cloned().unwrap_or(target);
            if target != module && layer_of(&target) >= layer_of(module) {
                upward.push(format!("{} imports crate::{target}", file.display()));
            }
        }
        let (Some(folder), Some(stem)) = (file.parent(), file.file_stem()) else { continue };
        if folder.as_os_str().is_empty() || stem == "mod" {
            continue;
        }
        let stem = stem.to_str().unwrap().to_string();
        let names = siblings.entry(folder.to_path_buf()).or_default();
        let imports = paths_after(&text, "super").into_iter().filter(|name| {
            root.join(folder).join(format!("{name}.rs")).exists() || root.join(folder).join(name).is_dir()
        });
        names.entry(stem).or_default().extend(imports);
    }
    assert!(upward.is_empty(), "imports that do not go down:\n{}", upward.join("\n"));
    for (folder, graph) in &siblings {
        for start in graph.keys() {
            // Depth-first from `start`: reaching it again is a circle.
            let mut stack: Vec<&String> = graph[start].iter().collect();
            let mut seen = BTreeSet::new();
            while let Some(next) = stack.pop() {
                assert!(
                    next != start,
                    "files of {} import each other in a circle through {start}.rs",
                    folder.display()
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
    let code = code("use crate::engine::{Engine, View};\nuse crate::{Error, Result}; // crate::db\nlet x = crate::index::Alex::new();\n");
    assert_eq!(paths_after(&code, "crate"), ["engine", "Error", "Result", "index"]);
    let lib = "pub use range::Range;\npub use error::{Error, Result};\n";
    let map = reexports(lib);
    assert_eq!(map.get("Error").map(String::as_str), Some("error"));
    assert_eq!(map.get("Range").map(String::as_str), Some("range"));
    assert!(layer_of("engine") > layer_of("log") && layer_of("db") > layer_of("compaction"));
}
