//! The invariants ARCHITECTURE.md states, checked against the source: who
//! may touch redb, wasmtime and `bindgen!`, what the SDK and the drivers
//! may depend on, that the host's modules form no cycle, that every module
//! says what it is, and that the document names every folder and every
//! migration phase.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the host crate sits in the workspace")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "target") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without its comments and without its test modules
/// (everything from the first `#[cfg(test)]` on, which by convention ends
/// a file), so that words in prose and test-only imports do not count.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => &text,
    };
    text.lines()
        .filter(|l| {
            let t = l.trim_start();
            !t.starts_with("//")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn host_src() -> PathBuf {
    workspace().join("host/src")
}

/// Files of the host that are tests themselves (`tests.rs`, `tests_*.rs`).
fn is_test_file(path: &Path) -> bool {
    path.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s == "tests" || s.starts_with("tests_") || s.ends_with("_tests"))
}

fn offenders(files: &[PathBuf], needle: &str, allowed: impl Fn(&Path) -> bool) -> Vec<String> {
    files
        .iter()
        .filter(|f| !allowed(f) && !is_test_file(f))
        .filter(|f| code(f).contains(needle))
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn only_store_touches_redb() {
    let store = host_src().join("store");
    let bad = offenders(&rust_files(&host_src()), "redb::", |f| {
        f.starts_with(&store)
    });
    assert!(bad.is_empty(), "redb used outside store: {bad:?}");
}

#[test]
fn only_the_migration_table_moves_a_phase() {
    let table = host_src().join("model/migration.rs");
    for needle in [".phase = ", ".status = MigrationStatus::"] {
        let bad = offenders(&rust_files(&host_src()), needle, |f| f == table);
        assert!(
            bad.is_empty(),
            "{needle:?} outside model/migration.rs: {bad:?}"
        );
    }
}

#[test]
fn api_never_calls_wasmtime_or_the_runtime() {
    let files = rust_files(&host_src().join("api"));
    for needle in ["wasmtime", "crate::runtime"] {
        let bad = offenders(&files, needle, |_| false);
        assert!(bad.is_empty(), "{needle} in api: {bad:?}");
    }
}

#[test]
fn bindgen_runs_in_exactly_one_host_module() {
    let bindings = host_src().join("runtime/bindings.rs");
    let bad = offenders(&rust_files(&host_src()), "bindgen!", |f| f == bindings);
    assert!(
        bad.is_empty(),
        "bindgen! outside runtime/bindings.rs: {bad:?}"
    );
    assert!(code(&bindings).contains("bindgen!"));
}

/// The names of a manifest's dependencies, of every kind.
fn dependencies(manifest: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(manifest).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    let mut names = BTreeSet::new();
    for key in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(t) = doc.get(key).and_then(|v| v.as_table()) {
            names.extend(t.keys().cloned());
        }
    }
    names
}

#[test]
fn the_sdk_and_the_drivers_never_depend_on_the_host() {
    let ws = workspace();
    let mut manifests = vec![ws.join("sdk/Cargo.toml")];
    for group in ["drivers", "tests/components"] {
        for entry in std::fs::read_dir(ws.join(group)).unwrap() {
            let m = entry.unwrap().path().join("Cargo.toml");
            if m.is_file() {
                manifests.push(m);
            }
        }
    }
    assert!(manifests.len() >= 4, "{manifests:?}");
    for m in manifests {
        let deps = dependencies(&m);
        assert!(
            !deps.contains("ferry"),
            "{} depends on the host",
            m.display()
        );
        assert!(
            !deps.contains("wasmtime"),
            "{} depends on wasmtime",
            m.display()
        );
    }
}

/// The host's top-level modules and, for each, the others its non-test
/// code names through `crate::`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = host_src();
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        if path.is_dir() || (name != "lib" && name != "main") {
            modules.insert(name);
        }
    }
    let mut graph = BTreeMap::new();
    for m in &modules {
        let dir = src.join(m);
        let files = if dir.is_dir() {
            rust_files(&dir)
        } else {
            vec![src.join(format!("{m}.rs"))]
        };
        let mut uses = BTreeSet::new();
        for f in files.iter().filter(|f| !is_test_file(f)) {
            let code = code(f);
            for other in &modules {
                if other != m
                    && (code.contains(&format!("crate::{other}::"))
                        || code.contains(&format!("crate::{other}}}"))
                        || code.contains(&format!("crate::{other};"))
                        || code.contains(&format!("crate::{other},")))
                {
                    uses.insert(other.clone());
                }
            }
        }
        graph.insert(m.clone(), uses);
    }
    graph
}

#[test]
fn the_host_modules_form_no_cycle() {
    let graph = module_graph();
    assert!(graph.len() > 10, "{graph:?}");
    // Depth-first search; a node met again on the current path is a cycle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("module cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn every_module_says_what_it_is() {
    let ws = workspace();
    let mut files = rust_files(&ws.join("host/src"));
    files.extend(rust_files(&ws.join("sdk/src")));
    files.extend(rust_files(&ws.join("drivers")));
    files.extend(rust_files(&ws.join("xtask/src")));
    let bad: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(bad.is_empty(), "modules without a //! line: {bad:?}");
}

#[test]
fn the_architecture_document_names_every_folder_and_phase() {
    let ws = workspace();
    let doc = std::fs::read_to_string(ws.join("ARCHITECTURE.md")).unwrap();
    for entry in std::fs::read_dir(ws.join("host/src")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            let name = format!("`{}/`", path.file_name().unwrap().to_str().unwrap());
            assert!(doc.contains(&name), "ARCHITECTURE.md does not map {name}");
        }
    }
    for phase in ferry::model::MigrationPhase::ALL {
        let name = serde_json::to_value(phase).unwrap();
        let name = format!("`{}`", name.as_str().unwrap());
        assert!(
            doc.contains(&name),
            "ARCHITECTURE.md does not draw phase {name}"
        );
    }
}

#[test]
fn every_route_comes_from_a_documented_handler() {
    // The router is built only through `Routes::protected` and
    // `Routes::open`, which take `routes!(handler)` and so the handler's
    // `#[utoipa::path]`: a route added any other way would be served
    // without being in the OpenAPI document.
    let files = rust_files(&host_src().join("api"));
    for needle in [".route(", ".route_service(", ".nest(", ".nest_service("] {
        let bad = offenders(&files, needle, |_| false);
        assert!(bad.is_empty(), "{needle} in api: {bad:?}");
    }
}

/// The string literal at the start of `text`, if one is there.
fn literal_at(text: &str) -> Option<&str> {
    let rest = text.trim_start().strip_prefix('"')?;
    rest.split('"').next()
}

/// Every error code a source file answers with: the arms of its `fn code`
/// and the code argument of each `ApiError::new` / `Self::new(status, ..)`.
fn error_codes_in(path: &Path) -> BTreeSet<String> {
    let code = code(path);
    let mut found = BTreeSet::new();
    for body in code.split("fn code(").skip(1) {
        let body = body.split("\n    }\n").next().unwrap_or(body);
        for arm in body.split("=>").skip(1) {
            if let Some(lit) = literal_at(arm) {
                found.insert(lit.to_owned());
            }
        }
    }
    for call in code
        .split("ApiError::new(")
        .chain(code.split("Self::new("))
        .skip(1)
    {
        // The code is the second argument, after the status.
        if let Some((_, rest)) = call.split_once(',')
            && let Some(lit) = literal_at(rest)
        {
            found.insert(lit.to_owned());
        }
    }
    found
}

#[test]
fn every_error_code_is_in_the_documents_list() {
    let src = host_src();
    let mut files = vec![
        src.join("service/error.rs"),
        src.join("runtime/error.rs"),
        src.join("runtime/types.rs"),
    ];
    files.extend(rust_files(&src.join("api")));
    let mut codes = BTreeSet::new();
    for f in &files {
        codes.extend(error_codes_in(f));
    }
    assert!(codes.len() > 40, "{codes:?}");
    for known in [
        "driver_trap",
        "compile_busy",
        "invalid_query",
        "unauthorized",
    ] {
        assert!(codes.contains(known), "the scan missed {known}: {codes:?}");
    }
    let listed: BTreeSet<String> =
        serde_json::to_value(<ferry::api::error::ErrorCode as utoipa::PartialSchema>::schema())
            .unwrap()["enum"]
            .as_array()
            .expect("ErrorCode is an enum")
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
    let missing: Vec<_> = codes.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "codes the API may answer with but api::error::ErrorCode does not list: {missing:?}"
    );
}
