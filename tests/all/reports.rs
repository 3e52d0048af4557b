//! Reports rendered for real runs: self-contained HTML with the verdict and every outage window,
//! well-formed SVG, decodable PNG, .hgrm and V2 logs that agree with summary.json, merge that
//! adds up, JUnit that fails exactly when the exit code does.

use crate::common::*;
use failprobe::lab::Topology;
use serde_json::Value;
use std::path::Path;

fn run(lab: &TestLab, name: &str, extra: &[&str]) -> (i32, std::path::PathBuf) {
    let junit = lab.out(&format!("{name}.junit.xml"));
    let mut args = vec!["--png", "--junit", junit.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (o, out) = lab.run(name, &args);
    assert!(code(&o) == 0 || code(&o) == 1, "{}", explain(&o));
    (code(&o), out)
}

fn check_html(dir: &Path, s: &Value) {
    let text = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let doc = scraper::Html::parse_document(&text);
    assert!(doc.errors.is_empty(), "HTML parse errors: {:?}", doc.errors);
    let sel = |css: &str| scraper::Selector::parse(css).unwrap();
    // Self-contained: no scripts, stylesheets, images or links to fetch.
    assert_eq!(doc.select(&sel("script, link, img, iframe")).count(), 0);
    let external: Vec<_> = doc.select(&sel("[src], [href]")).map(|el| format!("{:?}", el.value())).collect();
    assert!(external.is_empty(), "external references in report.html: {external:?}");
    assert!(!text.contains("url("), "CSS must not load anything");
    let badge: String = doc.select(&sel(".verdict .badge")).next().expect("verdict first").text().collect();
    // The badge is the one verdict's word, and agrees with the budget and the exit code.
    let expected = match s["verdict"]["kind"].as_str().unwrap() {
        "pass" => "PASS",
        "recovered" => "RECOVERED",
        "fail" => "FAIL",
        _ => "INCOMPLETE",
    };
    assert_eq!(badge, expected);
    let budget_passed = s["budget"]["passed"] == true;
    assert_eq!(
        matches!(expected, "PASS" | "RECOVERED"),
        budget_passed && s["interrupted"] == false,
        "{}",
        s["verdict"]
    );
    assert!(doc.select(&sel(".plot svg")).count() >= 3, "timeline, outages and percentiles inline");
    let cells: Vec<String> = doc.select(&sel("td")).map(|td| td.text().collect()).collect();
    for t in s["trials"].as_array().unwrap() {
        for stream in ["writes", "reads"] {
            for o in t[stream]["outages"].as_array().unwrap() {
                let start = format!("{:.1}", f(&o["start_ms"]));
                assert!(cells.contains(&start), "outage at {start} ms missing from report.html");
            }
        }
    }
}

fn check_plots(dir: &Path, trials: usize) {
    for name in ["timeline.svg", "outages.svg", "latency-percentiles.svg"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{name} is not well-formed XML: {e}"));
    }
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(dir.join("timeline.png")).unwrap()));
    let mut reader = decoder.read_info().expect("timeline.png decodes");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("timeline.png has a frame");
    assert_eq!((info.width, info.height), (1200, 260 * 2 * trials as u32));
    // Text was drawn with the embedded font: the picture is not blank.
    assert!(buf.iter().any(|b| *b < 100));
}

/// Rows of an .hgrm: (value ms, percentile, total count).
fn hgrm_rows(path: &Path) -> Vec<(f64, f64, u64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let header = text.lines().next().unwrap();
    let cols: Vec<&str> = header.split_whitespace().collect();
    assert_eq!(cols, ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]);
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let v: Vec<&str> = l.split_whitespace().collect();
            (v[0].parse().unwrap(), v[1].parse().unwrap(), v[2].parse().unwrap())
        })
        .collect()
}

fn check_histograms(dir: &Path, s: &Value) {
    let lat = &s["trials"][0]["writes"]["latency_ms"];
    let rows = hgrm_rows(&dir.join("histograms/trial0-writes.hgrm"));
    let at = |q: f64| rows.iter().find(|r| r.1 >= q).unwrap();
    assert!((at(0.5).0 - f(&lat["p50"])).abs() < 0.0015, "p50 {:?} vs {}", at(0.5), lat["p50"]);
    let last = rows.last().unwrap();
    assert_eq!(last.1, 1.0);
    assert!((last.0 - f(&lat["max"])).abs() < 0.0015);
    assert_eq!(last.2, u(&lat["count"]));

    let log = std::fs::read(dir.join("histograms/histograms.hlog")).unwrap();
    let entries = failprobe::report::hgrm::read_log(&log).unwrap();
    let (_, h) = entries.iter().find(|(tag, _)| tag == "trial0-writes").expect("tagged entry");
    assert_eq!(h.len(), u(&lat["count"]));
    assert_eq!(h.value_at_quantile(0.5) as f64 / 1000.0, f(&lat["p50"]));
    let (_, outages) = entries.iter().find(|(tag, _)| tag == "outages").unwrap();
    assert_eq!(outages.len(), u(&s["outage_histogram_ms"]["count"]));
}

fn check_junit(path: &Path, exit: i32) {
    let text = std::fs::read_to_string(path).unwrap();
    let doc = roxmltree::Document::parse(&text).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suite = root.children().find(|n| n.has_tag_name("testsuite")).expect("testsuite");
    let cases: Vec<_> = suite.children().filter(|n| n.has_tag_name("testcase")).collect();
    assert!(!cases.is_empty());
    assert!(cases.iter().all(|c| c.attribute("name").is_some() && c.attribute("classname").is_some()));
    let failures = cases.iter().filter(|c| c.children().any(|n| n.has_tag_name("failure"))).count();
    assert_eq!(suite.attribute("failures").unwrap().parse::<usize>().unwrap(), failures);
    assert_eq!(suite.attribute("tests").unwrap().parse::<usize>().unwrap(), cases.len());
    assert_eq!(failures > 0, exit != 0, "JUnit fails exactly when the exit code does ({exit})");
    for c in cases {
        if let Some(fail) = c.children().find(|n| n.has_tag_name("failure")) {
            let msg = fail.attribute("message").unwrap();
            assert!(msg.contains("budget"), "failure names measured figure and budget: {msg}");
        }
    }
}

#[test]
fn reports_of_a_clean_run_and_an_unrecovered_one_then_merged_and_compared() {
    let lab = TestLab::start(Topology::Replica);
    let (clean_exit, clean) = run(&lab, "clean", &["--trigger", "none", "--duration", "1500ms", "--max-outage", "1s"]);
    let (down_exit, down) = run(&lab, "down", &["--trigger", "kill", "--max-trial", "2s", "--max-outage", "1s"]);
    assert_eq!((clean_exit, down_exit), (0, 1));
    for (dir, exit, name) in [(&clean, clean_exit, "clean"), (&down, down_exit, "down")] {
        let s = summary(dir);
        check_html(dir, &s);
        check_plots(dir, 1);
        check_histograms(dir, &s);
        check_junit(&lab.out(&format!("{name}.junit.xml")), exit);
    }

    let merged = lab.out("merged");
    let o = failprobe(&["merge", clean.to_str().unwrap(), down.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert_eq!(code(&o), 1, "the merged run still holds the unrecovered trial: {}", explain(&o));
    // A second merge into the same directory is refused; the first is kept whole.
    let again =
        failprobe(&["merge", clean.to_str().unwrap(), down.to_str().unwrap(), "--out", merged.to_str().unwrap()]);
    assert_eq!(code(&again), 2, "{}", explain(&again));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a run"), "{}", explain(&again));
    let (a, b, m) = (summary(&clean), summary(&down), summary(&merged));
    assert_eq!(m["trials"].as_array().unwrap().len(), 2);
    let probes = |s: &Value| s["trials"].as_array().unwrap().iter().map(|t| u(&t["writes"]["probes"])).sum::<u64>();
    assert_eq!(probes(&m), probes(&a) + probes(&b));
    let windows = |s: &Value| u(&s["outage_histogram_ms"]["count"]);
    assert_eq!(windows(&m), windows(&a) + windows(&b));
    let sources: Vec<&str> = m["trials"].as_array().unwrap().iter().map(|t| t["source"].as_str().unwrap()).collect();
    assert!(sources[0].starts_with("clean") && sources[1].starts_with("down"), "{sources:?}");
    // Aligned on wall clock: the second run starts after the first in the merged timeline.
    assert!(f(&m["trials"][1]["started_at_ms"]) > f(&m["trials"][0]["ended_at_ms"]));
    check_html(&merged, &m);

    let html = lab.out("compare.html");
    let o = failprobe(&["compare", clean.to_str().unwrap(), down.to_str().unwrap(), "--html", html.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", explain(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("longest outage"));
    let doc = scraper::Html::parse_document(&std::fs::read_to_string(&html).unwrap());
    assert!(doc.errors.is_empty());
}

#[test]
fn report_of_a_sentinel_failover() {
    let lab = TestLab::start(Topology::Sentinel);
    let (exit, dir) = run(&lab, "failover", &["--trigger", "sentinel", "--max-lost-writes", "100000"]);
    assert_eq!(exit, 0);
    let s = summary(&dir);
    check_html(&dir, &s);
    check_plots(&dir, 1);
    check_histograms(&dir, &s);
    check_junit(&lab.out("failover.junit.xml"), exit);
    // Phases exist for a triggered run, each with its own .hgrm.
    for phase in ["before", "during", "after"] {
        assert!(dir.join(format!("histograms/trial0-writes-{phase}.hgrm")).exists());
    }
}
