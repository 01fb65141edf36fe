//! The house rules of loadgen's source, checked on the source itself: every top-level module
//! depends only on modules before it in the layout (definition → engine → results → verdicts →
//! reports, deploy and observe beside the engine), so the arrows point one way and there is no
//! cycle; and what is specific to the challenge service is written in `target/` alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules in dependency order: each may use only those before it.
const LAYERS: [&str; 17] = [
    "target",
    "atomic",
    "definition",
    "engine",
    "deploy",
    "observe",
    "faults",
    "integrity",
    "results",
    "verdict",
    "terminal",
    "live",
    "report",
    "run",
    "sweep",
    "distributed",
    "cli",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for `lib.rs` and `main.rs`).
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// The code of a file without comments and without its unit tests (which may use anything).
fn code(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap();
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Every top-level module's dependencies on the others, by `crate::<module>` paths.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&file) else { continue };
        let used = graph.entry(module.clone()).or_default();
        let code = code(&file);
        for (at, _) in code.match_indices("crate::") {
            let name: String =
                code[at + "crate::".len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if name != module && !name.is_empty() {
                used.insert(name);
            }
        }
    }
    graph
}

#[test]
fn every_module_depends_only_on_the_layers_before_it() {
    let graph = dependencies();
    let known: BTreeSet<&str> = LAYERS.into_iter().collect();
    let modules: BTreeSet<&str> = graph.keys().map(String::as_str).collect();
    assert_eq!(modules, known, "every top-level module has its place in LAYERS (and lib.rs's tour)");
    let mut wrong = Vec::new();
    for (index, module) in LAYERS.iter().enumerate() {
        for used in &graph[*module] {
            let position = LAYERS.iter().position(|m| m == used);
            match position {
                Some(p) if p < index => {}
                Some(_) => wrong.push(format!("{module} → {used}")),
                None => wrong.push(format!("{module} → {used} (not a module)")),
            }
        }
    }
    assert!(wrong.is_empty(), "dependencies against the layering: {wrong:?}");
}

#[test]
fn the_challenge_services_specifics_are_written_in_target_alone() {
    // Its tables, its REST paths, its event protos and services, its fixtures' generator.
    let specifics = [
        "user_goal_progress",
        "user_stat_progress",
        "/v1/challenges",
        "proto::",
        "accelbyte.",
        "challenges::generate_users",
    ];
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut found = Vec::new();
    for file in files.iter().filter(|f| module_of(f).is_some_and(|m| m != "target")) {
        let code = code(file);
        for specific in specifics.iter().filter(|s| code.contains(**s)) {
            found.push(format!("{}: {specific}", file.strip_prefix(src()).unwrap().display()));
        }
    }
    assert!(found.is_empty(), "the challenge service's specifics outside target/: {found:?}");
}

#[test]
fn the_tour_in_lib_rs_names_every_module() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    for module in LAYERS {
        assert!(lib.contains(&format!("[`{module}`]")), "lib.rs's layout tour misses {module}");
        assert!(lib.contains(&format!("pub mod {module};")), "lib.rs does not declare {module}");
    }
}
