//! The documents, one per reader (README.md, docs/*.md, CONTRIBUTING.md, adapters/README.md):
//! every relative link points at a file that exists and, with an anchor, at a heading of that
//! file (GitHub's anchors); the README stays short, with its Quick start on the first screen and
//! a link to each of the other documents. No servers, no build of failprobe's binary.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The README's budget: what it is, the finding, Quick start, examples, exit codes, links.
const README_MAX_LINES: usize = 250;
/// Quick start's heading must be on the first screen.
const QUICK_START_WITHIN: usize = 60;
/// The two commands for a fresh machine, word for word (`.ci/run` runs the second).
const FRESH_MACHINE: [&str; 2] = [
    "scripts/install-servers.sh && cargo run -- demo",
    "scripts/install-servers.sh --valkey --redis 5.0.6 --redis 6.2.14 && adapters/install.sh && cargo test --all-targets",
];
/// The documents the README sends each reader to.
const OTHER_DOCS: [&str; 4] = ["docs/guide.md", "docs/measurement.md", "CONTRIBUTING.md", "adapters/README.md"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every document whose links are checked: README.md, CONTRIBUTING.md, docs/*.md,
/// adapters/README.md.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> =
        ["README.md", "CONTRIBUTING.md", "adapters/README.md"].iter().map(|d| root.join(d)).collect();
    let mut guides: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .map(|dir| dir.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "md")).collect())
        .unwrap_or_default();
    guides.sort();
    docs.extend(guides);
    docs
}

/// Lines outside fenced code blocks (a `# comment` in a shell block is no heading), numbered
/// from 1.
fn prose(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let marker = ["```", "~~~"].into_iter().find(|m| t.starts_with(m));
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// A line without its inline code spans (a `[x](y)` inside backticks is no link).
fn without_code(line: &str) -> String {
    let mut out = String::new();
    for (i, part) in line.split('`').enumerate() {
        if i % 2 == 0 {
            out.push_str(part);
        }
    }
    out
}

/// GitHub's anchor for a heading's text: inline links reduced to their text, lowercase,
/// letters, digits, `-` and `_` kept, each space a `-`, everything else dropped.
fn slug(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](url)` → `text`
    while let Some(open) = rest.find('[') {
        let Some(mid) = rest[open..].find("](").map(|m| open + m) else {
            break;
        };
        let Some(close) = rest[mid..].find(')').map(|c| mid + c) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..mid]);
        rest = &rest[close + 1..];
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The headings of a markdown text, as (line, text).
fn headings(text: &str) -> Vec<(usize, String)> {
    prose(text)
        .into_iter()
        .filter_map(|(n, line)| {
            let hashes = line.chars().take_while(|&c| c == '#').count();
            let rest = &line[hashes..];
            ((1..=6).contains(&hashes) && (rest.is_empty() || rest.starts_with(' ')))
                .then(|| (n, rest.trim().trim_end_matches('#').trim().to_string()))
        })
        .collect()
}

/// Every anchor GitHub gives the headings of a markdown text (a repeated one gets `-1`, `-2`…).
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for (_, heading) in headings(text) {
        let base = slug(&heading);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// The targets of a markdown text's links, `[text](target)`, `![alt](target)` and
/// `[label]: target`, with their line numbers; code blocks and code spans left out.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose(text) {
        let line = without_code(line);
        let t = line.trim_start();
        if let Some(label) = t.strip_prefix('[') {
            if let Some(definition) = label.find(']').and_then(|e| label[e + 1..].strip_prefix(':')) {
                if let Some(target) = definition.split_whitespace().next() {
                    out.push((n, target.to_string()));
                }
            }
        }
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].split_whitespace().next().unwrap_or("");
            out.push((n, target.trim_matches(['<', '>']).to_string()));
            rest = &after[end..];
        }
    }
    out
}

/// What is wrong with the relative links of one document, one line per broken link.
fn broken_links(root: &Path, doc: &Path) -> Vec<String> {
    let name = doc.strip_prefix(root).unwrap_or(doc).display().to_string();
    let Ok(text) = std::fs::read_to_string(doc) else {
        return vec![format!("{name}: missing")];
    };
    let mut broken = Vec::new();
    for (n, target) in links(&text) {
        if target.contains("://") || target.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let file = if path.is_empty() {
            doc.to_path_buf()
        } else if let Some(from_root) = path.strip_prefix('/') {
            root.join(from_root)
        } else {
            doc.parent().unwrap().join(path)
        };
        if path.is_empty() && anchor.is_none() {
            broken.push(format!("{name}:{n}: empty link"));
            continue;
        }
        if !file.exists() {
            broken.push(format!("{name}:{n}: {target}: no such file"));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        let heads = if file.extension().is_some_and(|e| e == "md") {
            anchors(&std::fs::read_to_string(&file).unwrap_or_default())
        } else {
            broken.push(format!("{name}:{n}: {target}: an anchor into a file that is not markdown"));
            continue;
        };
        if !heads.contains(anchor) {
            broken.push(format!("{name}:{n}: {target}: no heading with anchor #{anchor}"));
        }
    }
    broken
}

#[test]
fn slugs_follow_github() {
    for (heading, anchor) in [
        ("Triggers (`--trigger`)", "triggers---trigger"),
        (
            "External client adapters: your application's own client library",
            "external-client-adapters-your-applications-own-client-library",
        ),
        ("summary.json", "summaryjson"),
        ("Quick start (fresh Debian/Ubuntu machine with Rust)", "quick-start-fresh-debianubuntu-machine-with-rust"),
        ("`failprobe events`: what the 14-day event log forgets", "failprobe-events-what-the-14-day-event-log-forgets"),
        ("The [guide](docs/guide.md) and more", "the-guide-and-more"),
    ] {
        assert_eq!(slug(heading), anchor, "{heading}");
    }
    let text = "# A\n```sh\n# not a heading\n```\n## A\n### B b\n";
    let got = anchors(text);
    let want: HashSet<String> = ["a", "a-1", "b-b"].map(String::from).into();
    assert_eq!(got, want);
}

#[test]
fn a_broken_link_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(dir.path().join("docs/b.md"), "# B\n## Has `code`: yes\n").unwrap();
    let a = dir.path().join("a.md");
    std::fs::write(
        &a,
        "# A\n\
         [ok](docs/b.md) [ok](docs/b.md#has-code-yes) [ok](#a) [ok](https://example.com/x)\n\
         `[code](not-a-link.md)`\n\
         ```\n[fenced](not-a-link-either.md)\n```\n\
         [gone](docs/c.md) [bad anchor](docs/b.md#has-code) [self](#nope)\n\
         [label]: docs/missing.md\n",
    )
    .unwrap();
    let broken = broken_links(dir.path(), &a);
    assert_eq!(broken.len(), 4, "{broken:#?}");
    for (got, want) in broken.iter().zip([
        "a.md:7: docs/c.md: no such file",
        "a.md:7: docs/b.md#has-code: no heading",
        "a.md:7: #nope: no heading",
        "a.md:8: docs/missing.md: no such file",
    ]) {
        assert!(got.starts_with(want), "{got} (expected {want}…)");
    }
}

#[test]
fn every_relative_link_in_the_documents_resolves() {
    let root = root();
    let docs = documents(&root);
    assert!(docs.iter().any(|d| d.starts_with(root.join("docs"))), "no docs/*.md");
    let broken: Vec<String> = docs.iter().flat_map(|d| broken_links(&root, d)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn readme_is_short_with_quick_start_first_and_links_to_every_document() {
    let root = root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < README_MAX_LINES,
        "README.md has {lines} lines; it must stay under {README_MAX_LINES} (move the detail to docs/)"
    );
    let quick = headings(&readme).into_iter().find(|(_, h)| h.starts_with("Quick start"));
    match quick {
        Some((n, _)) => assert!(
            n <= QUICK_START_WITHIN,
            "README.md's Quick start heading is on line {n}, after line {QUICK_START_WITHIN}"
        ),
        None => panic!("README.md has no \"Quick start\" heading"),
    }
    for command in FRESH_MACHINE {
        assert!(readme.lines().any(|l| l.trim() == command), "README.md lost the fresh-machine command `{command}`");
    }
    let targets: Vec<String> = links(&readme).into_iter().map(|(_, t)| t).collect();
    for doc in OTHER_DOCS {
        assert!(targets.iter().any(|t| t.split('#').next() == Some(doc)), "README.md does not link to {doc}");
    }
}
