//! failprobe: measure how long a Redis/Valkey deployment is unavailable during a failover, and
//! whether it loses acknowledged writes.
//!
//! Data flows one way: `target` → `probe` → `control` → `record` → `analysis` → `report`, on top
//! of shared leaves (`sample`, `sink`, `os`, `file`, `clock`); `run` wires a live measurement
//! together; `lab` starts local servers for CI and the demo. `LAYERS` below is the table a test
//! holds every `use crate::` to.

/// `eprintln!` that never panics: stderr may be a closed pipe or a terminal that hung up
/// (SIGHUP), and the clean-up after it must still run.
#[macro_export]
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that never panics: stdout may be a closed pipe (`| head`) or a dropped terminal,
/// and the run still finishes, stops its lab and writes its report.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `eprint!` that never panics.
#[macro_export]
macro_rules! note_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod adapter_check;
pub mod analysis;
pub mod aws;
pub mod cli;
pub mod clock;
pub(crate) mod control;
pub(crate) mod duration;
pub mod error;
pub(crate) mod file;
pub mod fleet;
pub mod lab;
pub mod live;
pub mod memcached;
pub mod os;
pub mod probe;
pub mod record;
pub mod report;
pub mod run;
pub mod sample;
pub mod scenario;
pub mod secret;
pub mod sink;
pub(crate) mod spawn;
pub mod target;

/// Data flows one way. A module may use its own layer and the layers below it, never one above:
/// this table is the architecture, and the test below holds the code to it.
#[cfg(test)]
const LAYERS: &[(&str, u8)] = &[
    // What everything shares: the clock, durations, errors, OS processes and signals, atomic
    // files, and the persisted stream (samples, events, error classes).
    ("clock", 0),
    ("duration", 0),
    ("error", 0),
    ("os", 0),
    ("spawn", 0),
    ("file", 0),
    ("sample", 0),
    // Talking to a deployment: targets and their connections, secrets, the event sink, the
    // memcached protocol.
    ("target", 1),
    ("secret", 1),
    ("sink", 1),
    ("memcached", 1),
    ("probe", 2),
    ("aws", 3),
    ("lab", 4),
    ("control", 5),
    ("record", 6),
    ("analysis", 7),
    ("report", 8),
    // The live metrics a run serves while it lasts (`--metrics-listen`).
    ("live", 8),
    ("scenario", 9),
    ("run", 10),
    ("adapter_check", 10),
    // Many runs at once, and the command line that can ask for them.
    ("fleet", 11),
    ("cli", 12),
];

#[cfg(test)]
mod layers {
    use super::LAYERS;
    use std::path::Path;

    fn rank(module: &str) -> Option<u8> {
        LAYERS.iter().find(|(m, _)| *m == module).map(|(_, r)| *r)
    }

    /// The top-level modules a source text names after `crate::` (also inside `crate::{a, b::c}`),
    /// comments left out.
    fn imports(text: &str) -> Vec<String> {
        let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        let ident =
            |s: &str| s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
        let mut out = Vec::new();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let Some(group) = rest.strip_prefix('{') else {
                out.push(ident(rest));
                continue;
            };
            let (mut depth, mut start) = (0, 0);
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        out.push(ident(&group[start..i]));
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.push(ident(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        }
        out.retain(|m| !m.is_empty());
        out
    }

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn the_parser_sees_grouped_and_nested_imports() {
        let text = "use crate::{analysis::Analyzer, sample::{Event, Stream}};\nlet x = crate::report::exit_code(s); // crate::run\n";
        assert_eq!(imports(text), vec!["analysis", "sample", "report"]);
    }

    #[test]
    fn no_module_imports_a_higher_layer() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut violations = Vec::new();
        for file in files {
            let relative = file.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
            let module = first.trim_end_matches(".rs");
            if module == "lib" || module == "main" {
                continue;
            }
            let Some(own) = rank(module) else {
                violations.push(format!("src/{module}: not in the table of layers (src/lib.rs LAYERS)"));
                continue;
            };
            let text = std::fs::read_to_string(&file).unwrap();
            for used in imports(&text) {
                // Macros (`crate::note!`) and anything else that is not a module are not layers.
                if let Some(theirs) = rank(&used).filter(|r| *r > own) {
                    violations
                        .push(format!("{} (layer {own}) uses crate::{used} (layer {theirs})", relative.display()));
                }
            }
        }
        assert!(violations.is_empty(), "imports against the flow of data:\n{}", violations.join("\n"));
    }

    /// Which sibling files a file of `folder` names (`super::x`, `crate::folder::x`), tests left
    /// out: the edges of the folder's own import graph.
    fn siblings_used(text: &str, folder: &str, siblings: &[String]) -> Vec<String> {
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let code: String = code.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
        let names = |prefix: &str| -> Vec<String> {
            code.match_indices(prefix)
                .map(|(at, _)| {
                    code[at + prefix.len()..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()
                })
                .collect()
        };
        let mut used: Vec<String> = names("super::").into_iter().chain(names(&format!("crate::{folder}::"))).collect();
        used.retain(|u| siblings.contains(u));
        used.sort();
        used.dedup();
        used
    }

    /// A folder's files form no circle of imports: the data flows one way inside a stage too,
    /// so each file can be read knowing only those below it.
    #[test]
    fn no_import_circle_inside_a_folder() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut circles = Vec::new();
        for folder in std::fs::read_dir(&src).unwrap().flatten().filter(|e| e.path().is_dir()) {
            let name = folder.file_name().to_string_lossy().into_owned();
            let files: Vec<_> = std::fs::read_dir(folder.path())
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "rs") && !p.ends_with("mod.rs"))
                .collect();
            let stems: Vec<String> =
                files.iter().map(|p| p.file_stem().unwrap().to_string_lossy().into_owned()).collect();
            let edges: std::collections::BTreeMap<String, Vec<String>> = files
                .iter()
                .zip(&stems)
                .map(|(p, stem)| (stem.clone(), siblings_used(&std::fs::read_to_string(p).unwrap(), &name, &stems)))
                .collect();
            // Depth-first from every file; a path that comes back to a file on it is a circle.
            fn walk(
                at: &str,
                path: &mut Vec<String>,
                edges: &std::collections::BTreeMap<String, Vec<String>>,
                found: &mut Vec<String>,
            ) {
                for next in edges.get(at).into_iter().flatten() {
                    if let Some(i) = path.iter().position(|p| p == next) {
                        found.push(path[i..].join(" → ") + " → " + next);
                    } else if path.len() < 12 {
                        path.push(next.clone());
                        walk(next, path, edges, found);
                        path.pop();
                    }
                }
            }
            for stem in &stems {
                let mut found = Vec::new();
                walk(stem, &mut vec![stem.clone()], &edges, &mut found);
                circles.extend(found.into_iter().map(|c| format!("src/{name}: {c}")));
            }
        }
        circles.sort();
        circles.dedup();
        assert!(circles.is_empty(), "import circles inside a folder:\n{}", circles.join("\n"));
    }
}
