//! The one verdict: every check a budget implies, then pass / recovered / fail / incomplete.
//! The terminal, summary.json, report.md/html, JUnit, the step summary and the exit code all
//! read what is decided here.

use super::sentence::split_brain_part;
use super::summary::*;
use crate::duration::format_ms;
use crate::sample::{Budget, OWN_CLIENT};

/// Every check the budget implies, passed or not: JUnit shows them all, the verdict fails on any.
pub(crate) fn evaluate_budget(budget: &Budget, trials: &[TrialSummary], interrupted: bool) -> BudgetResult {
    let mut checks = Vec::new();
    for t in trials {
        // The trial's own figures are its first profile's (failprobe's when measured).
        let first = t.clients.first().map_or(OWN_CLIENT, |c| c.name.as_str());
        if budget.covers(first) {
            target_checks(&mut checks, budget, t, interrupted);
        }
        for c in t.clients.iter().skip(1).filter(|c| budget.covers(&c.name)) {
            client_checks(&mut checks, budget, t.index, c);
        }
        for c in t.clients.iter().filter(|c| budget.covers(&c.name)) {
            pubsub_checks(&mut checks, budget, t.index, c);
        }
    }
    for t in trials {
        if let Some(error) = &t.trigger.error {
            checks.push(BudgetCheck {
                trial: t.index,
                shard: None,
                name: "trigger completed".into(),
                passed: false,
                measured: error.clone(),
                limit: "the failover happened as asked".into(),
            });
        }
    }
    let violations = checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| format!("trial {}: {}: {} (limit {})", c.trial, c.name, c.measured, c.limit))
        .collect::<Vec<_>>();
    BudgetResult {
        passed: violations.is_empty(),
        max_outage_ms: budget.max_outage_ms,
        max_lost_writes: budget.max_lost_writes,
        max_lost_messages: budget.max_lost_messages,
        clients: if budget.clients.is_empty() { vec![OWN_CLIENT.to_string()] } else { budget.clients.clone() },
        violations,
        checks,
    }
}

/// The checks on the trial's own figures: whole-target streams, shards, integrity.
fn target_checks(checks: &mut Vec<BudgetCheck>, budget: &Budget, t: &TrialSummary, interrupted: bool) {
    for (name, s) in [("writes", &t.writes), ("reads", &t.reads)] {
        checks.push(BudgetCheck {
            trial: t.index,
            shard: None,
            name: format!("{name} recovered"),
            passed: s.recovered,
            measured: if s.recovered { "recovered".into() } else { "still down when the trial ended".into() },
            limit: "recovery within the trial".into(),
        });
        if let Some(max) = budget.max_outage_ms {
            checks.push(BudgetCheck {
                trial: t.index,
                shard: None,
                name: format!("{name} outage within --max-outage"),
                passed: s.longest_outage_ms <= max,
                measured: format!("longest outage {}", format_ms(s.longest_outage_ms)),
                limit: format_ms(max),
            });
        }
    }
    if let Some(max) = budget.max_outage_ms {
        for sh in &t.shards {
            for (name, s) in [("writes", &sh.writes), ("reads", &sh.reads)] {
                checks.push(BudgetCheck {
                    trial: t.index,
                    shard: Some(sh.name.clone()),
                    name: format!("{} {name} outage within --max-outage", sh.name),
                    passed: s.longest_outage_ms <= max,
                    measured: format!("longest outage {}", format_ms(s.longest_outage_ms)),
                    limit: format_ms(max),
                });
            }
        }
    }
    if let Some(max) = budget.max_lost_writes {
        for sh in t.shards.iter().filter(|sh| sh.integrity.checked) {
            checks.push(BudgetCheck {
                trial: t.index,
                shard: Some(sh.name.clone()),
                name: format!("{} acknowledged writes within --max-lost-writes", sh.name),
                passed: sh.integrity.lost_acked_writes <= max,
                measured: lost_measured(&sh.integrity),
                limit: max.to_string(),
            });
        }
    }
    if let Some(max) = budget.max_lost_writes {
        let i = &t.integrity;
        let (passed, measured) = if i.checked {
            (i.lost_acked_writes <= max, lost_measured(i))
        } else {
            (interrupted, "write log could not be read, loss unknown".to_string())
        };
        checks.push(BudgetCheck {
            trial: t.index,
            shard: None,
            name: "acknowledged writes within --max-lost-writes".into(),
            passed,
            measured,
            limit: max.to_string(),
        });
    }
}

/// The same checks on one more client profile's streams and write log.
fn client_checks(checks: &mut Vec<BudgetCheck>, budget: &Budget, trial: u32, c: &ClientSummary) {
    for (name, s) in [("writes", &c.writes), ("reads", &c.reads)] {
        checks.push(BudgetCheck {
            trial,
            shard: None,
            name: format!("{} {name} recovered", c.name),
            passed: s.recovered,
            measured: if s.recovered { "recovered".into() } else { "still down when the trial ended".into() },
            limit: "recovery within the trial".into(),
        });
        if let Some(max) = budget.max_outage_ms {
            checks.push(BudgetCheck {
                trial,
                shard: None,
                name: format!("{} {name} outage within --max-outage", c.name),
                passed: s.longest_outage_ms <= max,
                measured: format!("longest outage {}", format_ms(s.longest_outage_ms)),
                limit: format_ms(max),
            });
        }
    }
    if let (Some(max), true) = (budget.max_lost_writes, c.integrity.checked) {
        checks.push(BudgetCheck {
            trial,
            shard: None,
            name: format!("{} acknowledged writes within --max-lost-writes", c.name),
            passed: c.integrity.lost_acked_writes <= max,
            measured: lost_measured(&c.integrity),
            limit: max.to_string(),
        });
    }
}

/// `--probe stream`: its acknowledged appends within `--max-lost-writes`. `--probe pubsub`: its
/// subscriber receives again by the trial's end, and misses no more than `--max-lost-messages`.
fn pubsub_checks(checks: &mut Vec<BudgetCheck>, budget: &Budget, trial: u32, c: &ClientSummary) {
    if let (Some(max), Some(p)) = (budget.max_lost_writes, &c.stream) {
        checks.push(BudgetCheck {
            trial,
            shard: None,
            name: format!("{} acknowledged stream appends within --max-lost-writes", c.name),
            passed: p.lost.is_some_and(|n| n <= max),
            measured: p
                .lost
                .map_or("stream not read back, loss unknown".into(), |n| format!("{n} acknowledged appends lost")),
            limit: max.to_string(),
        });
    }
    let Some(p) = &c.pubsub else { return };
    checks.push(BudgetCheck {
        trial,
        shard: None,
        name: format!("{} subscriber resubscribed", c.name),
        passed: p.resubscribed,
        measured: match p.resubscribed {
            true => "receiving at the end".into(),
            false => format!("not receiving at the end: {} messages missed since its last", p.missed_at_end),
        },
        limit: "receiving again within the trial".into(),
    });
    if let Some(max) = budget.max_lost_messages {
        checks.push(BudgetCheck {
            trial,
            shard: None,
            name: format!("{} messages within --max-lost-messages", c.name),
            passed: p.missed <= max,
            measured: format!("{} acknowledged messages missed", p.missed),
            limit: max.to_string(),
        });
    }
}

/// "226 acknowledged writes lost (226 of them split-brain)": what a loss check measured.
fn lost_measured(i: &Integrity) -> String {
    format!(
        "{} acknowledged writes lost{}",
        i.lost_acked_writes,
        split_brain_part(i.split_brain_writes, i.split_brain_unknown)
    )
}

pub(crate) fn decide(
    planned_trials: usize,
    interrupted: bool,
    trials: &[TrialSummary],
    budget: &BudgetResult,
) -> Verdict {
    let failed_trigger = trials.iter().find(|t| t.trigger.error.is_some());
    let reason = if trials.len() < planned_trials {
        Some(format!("{} of {planned_trials} trial(s) ran", trials.len()))
    } else if interrupted {
        Some("interrupted".to_string())
    } else {
        failed_trigger.map(|t| format!("the trigger of trial {} failed", t.index))
    };
    let leaks = leak_clause(trials);
    if let Some(reason) = reason {
        return Verdict {
            kind: "incomplete".into(),
            headline: format!("INCOMPLETE ({reason}: no verdict){leaks}"),
            exit_code: crate::error::EXIT_USAGE,
            incomplete_reason: Some(reason),
        };
    }
    let lost_text = covered_loss(trials, budget);
    let has_budget =
        budget.max_outage_ms.is_some() || budget.max_lost_writes.is_some() || budget.max_lost_messages.is_some();
    // The budget decides the word and the exit code; the clients it leaves out are still named.
    let others = outside_budget(trials, budget);
    let scope = match (others.is_empty(), covered_clients(trials, budget).join(", ")) {
        (false, names) if !names.is_empty() => format!(" for {names}"),
        _ => String::new(),
    };
    let others = format!("{others}{leaks}");
    let (kind, headline, exit_code) = if !budget.passed {
        let n = budget.violations.len();
        ("fail", format!("FAIL{scope} — {n} check{} failed{lost_text}{others}", if n == 1 { "" } else { "s" }), 1)
    } else if has_budget {
        ("pass", format!("PASS{scope} — within the budget{lost_text}{others}"), 0)
    } else {
        ("recovered", format!("RECOVERED{scope}{lost_text} — no budget set{others}"), 0)
    };
    Verdict { kind: kind.into(), headline, exit_code, incomplete_reason: None }
}

/// Each client whose connections were counted in every trial and only grew, over at least three
/// trials: its connections per trial (summed over the nodes). A client that keeps opening
/// connections and never closes them ends out of them, or takes the server's (Redisson #4196,
/// redis-py #4187).
pub(crate) fn connection_leaks(trials: &[TrialSummary]) -> Vec<ConnectionLeak> {
    let mut names: Vec<&str> = Vec::new();
    for c in trials.iter().flat_map(|t| &t.clients).filter(|c| c.connections.is_some()) {
        if !names.contains(&c.name.as_str()) {
            names.push(&c.name);
        }
    }
    names
        .into_iter()
        .filter_map(|name| {
            let per_trial: Option<Vec<u64>> = trials
                .iter()
                .map(|t| t.clients.iter().find(|c| c.name == name)?.connections.as_ref().map(|m| m.values().sum()))
                .collect();
            let per_trial = per_trial?;
            let grows = per_trial.len() >= 3 && per_trial.windows(2).all(|w| w[1] > w[0]);
            grows.then(|| ConnectionLeak { client: name.to_string(), per_trial })
        })
        .collect()
}

/// "; redis-py's connections only grew, trial after trial: 2, 3, 4, 5 (a leak)".
fn leak_clause(trials: &[TrialSummary]) -> String {
    connection_leaks(trials)
        .iter()
        .map(|l| {
            let counts: Vec<String> = l.per_trial.iter().map(u64::to_string).collect();
            format!("; {}'s connections only grew, trial after trial: {} (a leak)", l.client, counts.join(", "))
        })
        .collect()
}

/// The acknowledged writes the covered clients lost, summed over trials (" — 12 acknowledged
/// writes lost"); "unknown" beside it when a covered client's write log could not be read. A
/// trial without per-client sections (an older run) counts its own figures.
fn covered_loss(trials: &[TrialSummary], budget: &BudgetResult) -> String {
    let (mut lost, mut split_brain, mut unchecked, mut unknown) = (0u64, 0u64, 0usize, false);
    for t in trials {
        let covered: Vec<_> = t.clients.iter().filter(|c| covers(budget, &c.name)).map(|c| &c.integrity).collect();
        let integrities = if t.clients.is_empty() { vec![&t.integrity] } else { covered };
        for i in integrities {
            lost += if i.checked { i.lost_acked_writes } else { 0 };
            split_brain += if i.checked { i.split_brain_writes } else { 0 };
            unknown |= i.checked && i.split_brain_unknown;
            unchecked += usize::from(!i.checked);
        }
    }
    let mut text = match lost {
        0 => String::new(),
        n => {
            let part = split_brain_part(split_brain, unknown);
            format!(" — {n} acknowledged write{} lost{part}", if n == 1 { "" } else { "s" })
        }
    };
    if unchecked > 0 {
        text.push_str(&format!(" — loss unknown in {unchecked} write log(s) not read"));
    }
    let covered = trials.iter().flat_map(|t| &t.clients).filter(|c| covers(budget, &c.name));
    let missed: u64 = covered.filter_map(|c| c.pubsub.as_ref()).map(|p| p.missed).sum();
    if missed > 0 {
        text.push_str(&format!(" — {missed} pub/sub message{} missed", if missed == 1 { "" } else { "s" }));
    }
    let covered = trials.iter().flat_map(|t| &t.clients).filter(|c| covers(budget, &c.name));
    let appends: u64 = covered.filter_map(|c| c.stream.as_ref()?.lost).sum();
    if appends > 0 {
        text.push_str(&format!(" — {appends} acknowledged stream append{} lost", if appends == 1 { "" } else { "s" }));
    }
    text
}

/// Whether the verdict covers client profile `name` (`--budget-clients`, as evaluated).
fn covers(budget: &BudgetResult, name: &str) -> bool {
    budget.clients.iter().any(|c| c == "all" || c == name)
}

/// The measured client profiles the budget covers, in the order measured.
fn covered_clients<'a>(trials: &'a [TrialSummary], budget: &BudgetResult) -> Vec<&'a str> {
    let mut names: Vec<&str> = Vec::new();
    for c in trials.iter().flat_map(|t| &t.clients).filter(|c| covers(budget, &c.name)) {
        if !names.contains(&c.name.as_str()) {
            names.push(&c.name);
        }
    }
    names
}

/// One client outside the budget, over the trials.
#[derive(Default)]
struct OutsideClient<'a> {
    name: &'a str,
    measured: usize,
    unrecovered: usize,
    /// Trials it did not recover in, answered by the deposed old primary: its "recovery" was
    /// onto it.
    onto_old_primary: usize,
    lost: u64,
    split_brain: u64,
    /// Answered by servers it does not name while an old primary was isolated (an adapter).
    split_brain_unknown: bool,
    /// Write logs not read.
    unread: usize,
    /// `--probe pubsub`: trials its subscriber was not receiving at the end of, and the
    /// acknowledged messages it missed.
    unsubscribed: usize,
    missed_messages: u64,
}

/// The headline's clause on every measured client outside the budget that did not recover in
/// some trial or lost acknowledged writes, one each: "; pinned NOT RECOVERED (outside the
/// budget)", "; pinned NOT RECOVERED in 1 of 3 trials and lost 12 acknowledged writes (outside
/// the budget)". Empty when there is none. Built here once: every output shows the headline.
pub(crate) fn outside_budget(trials: &[TrialSummary], budget: &BudgetResult) -> String {
    let mut seen: Vec<OutsideClient> = Vec::new();
    for c in trials.iter().flat_map(|t| &t.clients).filter(|c| !covers(budget, &c.name)) {
        let i = match seen.iter().position(|o| o.name == c.name) {
            Some(i) => i,
            None => {
                seen.push(OutsideClient { name: &c.name, ..Default::default() });
                seen.len() - 1
            }
        };
        let e = &mut seen[i];
        e.measured += 1;
        e.unrecovered += usize::from(!c.writes.recovered || !c.reads.recovered);
        let onto = c.writes.isolated_primary_at_ms.is_some() || c.reads.isolated_primary_at_ms.is_some();
        e.onto_old_primary += usize::from(onto && (!c.writes.recovered || !c.reads.recovered));
        e.lost += if c.integrity.checked { c.integrity.lost_acked_writes } else { 0 };
        e.split_brain += if c.integrity.checked { c.integrity.split_brain_writes } else { 0 };
        e.split_brain_unknown |= c.integrity.checked && c.integrity.split_brain_unknown;
        e.unread += usize::from(!c.integrity.checked);
        if let Some(p) = &c.pubsub {
            e.unsubscribed += usize::from(!p.resubscribed);
            e.missed_messages += p.missed;
        }
    }
    let mut out = String::new();
    for OutsideClient {
        name,
        measured,
        unrecovered,
        onto_old_primary,
        lost,
        split_brain,
        split_brain_unknown,
        unread,
        unsubscribed,
        missed_messages,
    } in seen
    {
        let mut parts = Vec::new();
        if unrecovered > 0 {
            let within = if measured > 1 { format!(" in {unrecovered} of {measured} trials") } else { String::new() };
            // Where it went back to was no recovery: say so, or its writes there read as one.
            let onto = match onto_old_primary {
                0 => String::new(),
                n if n == unrecovered => " (answered by the deposed old primary)".to_string(),
                n => format!(" (answered by the deposed old primary in {n} of them)"),
            };
            parts.push(format!("NOT RECOVERED{within}{onto}"));
        }
        if lost > 0 {
            let part = split_brain_part(split_brain, split_brain_unknown);
            parts.push(format!("lost {lost} acknowledged write{}{part}", if lost == 1 { "" } else { "s" }));
        }
        if unread > 0 {
            parts.push(format!("loss unknown in {unread} of {measured} trials"));
        }
        if unsubscribed > 0 {
            let within = if measured > 1 { format!(" in {unsubscribed} of {measured} trials") } else { String::new() };
            parts.push(format!("subscriber NOT RESUBSCRIBED{within}"));
        }
        if missed_messages > 0 {
            parts.push(format!("missed {missed_messages} message{}", if missed_messages == 1 { "" } else { "s" }));
        }
        if !parts.is_empty() {
            out.push_str(&format!("; {name} {} (outside the budget)", parts.join(" and ")));
        }
    }
    out
}
