//! A guard on module layering: no two sibling modules of `controller-core`'s
//! `controller/` import each other, directly or around a cycle (ARCHITECTURE.md says
//! so, and the code review of #19 found `bootstrap` and `worker` did).
//!
//! It reads the sources: a module `x` (the file `x.rs`, or every file under `x/`)
//! depends on its sibling `y` when it names `super::y` (from `x.rs` or `x/mod.rs`),
//! `super::super::y` (from a file under `x/`) or `crate::controller::y`.

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    /// The sibling modules of `dir` and the files of each.
    fn modules(dir: &Path) -> BTreeMap<String, Vec<(PathBuf, bool)>> {
        let mut out: BTreeMap<String, Vec<(PathBuf, bool)>> = BTreeMap::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                for file in std::fs::read_dir(&path).unwrap().flatten() {
                    let file = file.path();
                    let top = file.file_name().is_some_and(|n| n == "mod.rs");
                    if file.extension().is_some_and(|e| e == "rs") {
                        out.entry(name.clone()).or_default().push((file, top));
                    }
                }
            } else if path.extension().is_some_and(|e| e == "rs") && name != "mod" {
                out.entry(name).or_default().push((path, true));
            }
        }
        out
    }

    /// The siblings that module files name.
    fn dependencies(
        modules: &BTreeMap<String, Vec<(PathBuf, bool)>>,
        parent: &str,
    ) -> BTreeMap<String, BTreeSet<String>> {
        let mut graph = BTreeMap::new();
        for (name, files) in modules {
            let mut deps = BTreeSet::new();
            for (file, top) in files {
                let text = std::fs::read_to_string(file).unwrap();
                let prefixes = [
                    if *top { "super::" } else { "super::super::" },
                    &format!("crate::{parent}::"),
                ];
                for other in modules.keys().filter(|other| *other != name) {
                    let named = prefixes.iter().any(|p| {
                        let needle = format!("{p}{other}");
                        text.match_indices(&needle).any(|(i, _)| {
                            let next = text[i + needle.len()..].chars().next();
                            !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        })
                    });
                    if named {
                        deps.insert(other.clone());
                    }
                }
            }
            graph.insert(name.clone(), deps);
        }
        graph
    }

    /// A cycle of `graph`, if it has one.
    fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
        fn visit(
            node: &str,
            graph: &BTreeMap<String, BTreeSet<String>>,
            path: &mut Vec<String>,
            done: &mut BTreeSet<String>,
        ) -> Option<Vec<String>> {
            if let Some(at) = path.iter().position(|n| n == node) {
                let mut found = path[at..].to_vec();
                found.push(node.to_owned());
                return Some(found);
            }
            if done.contains(node) {
                return None;
            }
            path.push(node.to_owned());
            for next in graph.get(node).into_iter().flatten() {
                if let Some(found) = visit(next, graph, path, done) {
                    return Some(found);
                }
            }
            path.pop();
            done.insert(node.to_owned());
            None
        }
        let mut done = BTreeSet::new();
        graph
            .keys()
            .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
    }

    #[test]
    fn controller_modules_import_no_cycle() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("crates/controller-core/src/controller");
        let modules = modules(&root);
        assert!(modules.len() > 10, "{modules:?}");
        let graph = dependencies(&modules, "controller");
        assert_eq!(cycle(&graph), None, "{graph:#?}");
    }

    #[test]
    fn a_cycle_is_found() {
        let graph: BTreeMap<String, BTreeSet<String>> = [
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a"]),
            ("d", vec![]),
        ]
        .into_iter()
        .map(|(n, deps)| (n.to_owned(), deps.into_iter().map(str::to_owned).collect()))
        .collect();
        assert_eq!(
            cycle(&graph),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
        let acyclic: BTreeMap<String, BTreeSet<String>> = [
            ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
            ("b".to_owned(), BTreeSet::new()),
        ]
        .into_iter()
        .collect();
        assert_eq!(cycle(&acyclic), None);
    }
}
