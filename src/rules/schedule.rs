//! Schedule floors (`scheduleRules`): external metrics that need no backend, whose value is a
//! replica count that follows cron windows in a time zone.
//!
//! The terms are KEDA's cron scaler's: a window is active from its most recent `start` until the
//! next `end`, and the metric is the highest `replicas` among the active windows, else 0. Served
//! as an external metric with an `AverageValue` target of 1, it keeps at least that many
//! replicas while the HPA's other metrics can still push higher. Cron matching and daylight
//! saving are `croner`'s and `chrono-tz`'s; nothing here does calendar arithmetic itself.

use std::collections::{BTreeSet, HashSet};
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::errors::CronError;
use croner::parser::{CronParser, Seconds, Year};

use super::RuleError;
use super::naming::is_valid_api_metric_name;
use crate::config::{ScheduleRule as RawSchedule, Text};

/// The config section schedule rules come from.
pub const SECTION: &str = "scheduleRules";

/// How far ahead `check` and start-up look for windows that are active at the same time.
const OVERLAP_HORIZON: chrono::Duration = chrono::Duration::days(14);

/// Bound on the intervals examined per window within the horizon (an every-minute `start`
/// would otherwise make thousands).
const MAX_INTERVALS: usize = 1_000;

/// One compiled window.
#[derive(Debug)]
pub struct Window {
    /// Opens the window.
    pub start: Cron,
    /// Closes the window.
    pub end: Cron,
    /// The metric's value while the window is active.
    pub replicas: u32,
}

impl Window {
    /// Whether the window is active at `now`: the first `end` at or after its most recent
    /// `start` (at or before `now`) is still ahead. A start and an end in the same minute close
    /// it. The end is searched forward from the start, never backward from `now`, because a
    /// backward search in local time finds the earlier copy of a repeated autumn hour and would
    /// reopen a window that already closed. In that repeated hour cron times happen once, in
    /// its first pass (croner's rule for both `start` and `end`), so a window's state there is
    /// the one it had when the first pass ended.
    pub fn is_active(&self, now: &DateTime<Tz>) -> Result<bool, CronError> {
        let last_start = match self.start.find_previous_occurrence(now, true) {
            Ok(t) => t,
            Err(CronError::TimeSearchLimitExceeded) => return Ok(false),
            Err(e) => return Err(e),
        };
        match self.end.find_next_occurrence(&last_start, true) {
            Ok(next_end) => Ok(next_end > *now),
            Err(CronError::TimeSearchLimitExceeded) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// The active intervals of the window from `from` until `until` (at most
    /// [`MAX_INTERVALS`]); an interval that never ends is cut at `until`.
    fn intervals(
        &self,
        from: DateTime<Tz>,
        until: DateTime<Tz>,
    ) -> Vec<(DateTime<Tz>, DateTime<Tz>)> {
        let mut out = Vec::new();
        let mut t = from;
        let mut opened = if self.is_active(&t).unwrap_or(false) {
            Some(t)
        } else {
            None
        };
        while out.len() < MAX_INTERVALS {
            let start = match opened.take() {
                Some(s) => s,
                None => match self.start.find_next_occurrence(&t, false) {
                    Ok(s) if s < until => s,
                    _ => break,
                },
            };
            let end = match self.end.find_next_occurrence(&start, false) {
                Ok(e) if e < until => e,
                _ => {
                    out.push((start, until));
                    break;
                }
            };
            out.push((start, end));
            t = end;
        }
        out
    }
}

/// One compiled schedule rule.
#[derive(Debug)]
pub struct Schedule {
    /// Index in `scheduleRules`.
    pub index: usize,
    /// The external metric name served.
    pub name: String,
    /// The zone the windows are read in.
    pub zone: Tz,
    /// Namespaces served; empty means every namespace.
    pub namespaces: BTreeSet<String>,
    /// The windows.
    pub windows: Vec<Window>,
}

/// The value of a schedule at an instant, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleState {
    /// The highest `replicas` of the active windows, 0 when none is active.
    pub value: u32,
    /// Indexes of the active windows.
    pub active: Vec<usize>,
}

/// A schedule that could not be evaluated (cron evaluation failed at this instant).
#[derive(Debug, thiserror::Error)]
#[error("{rule}.windows[{window}]: unable to evaluate the window at {at}: {source}")]
pub struct ScheduleError {
    /// `scheduleRules[2]`.
    pub rule: String,
    /// The window's index.
    pub window: usize,
    /// The instant, in the rule's zone.
    pub at: String,
    /// What croner said.
    pub source: CronError,
}

impl Schedule {
    /// `scheduleRules[2]`: how logs and errors name the rule.
    pub fn label(&self) -> String {
        format!("{SECTION}[{}]", self.index)
    }

    /// Whether the metric is served in `namespace`.
    pub fn serves_namespace(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.contains(namespace)
    }

    /// The schedule's value at `now`.
    pub fn state_at(&self, now: DateTime<Utc>) -> Result<ScheduleState, ScheduleError> {
        let local = now.with_timezone(&self.zone);
        let mut state = ScheduleState {
            value: 0,
            active: Vec::new(),
        };
        for (i, w) in self.windows.iter().enumerate() {
            let active = w.is_active(&local).map_err(|source| ScheduleError {
                rule: self.label(),
                window: i,
                at: local.to_rfc3339(),
                source,
            })?;
            if active {
                state.active.push(i);
                state.value = state.value.max(w.replicas);
            }
        }
        Ok(state)
    }

    /// Pairs of windows active at the same time within [`OVERLAP_HORIZON`] of `from`, with the
    /// first instant both are active.
    pub fn overlaps(&self, from: DateTime<Utc>) -> Vec<(usize, usize, DateTime<Tz>)> {
        let from = from.with_timezone(&self.zone);
        let until = from + OVERLAP_HORIZON;
        let intervals: Vec<_> = self
            .windows
            .iter()
            .map(|w| w.intervals(from, until))
            .collect();
        let mut out = Vec::new();
        for i in 0..intervals.len() {
            for j in i + 1..intervals.len() {
                let first = intervals[i]
                    .iter()
                    .flat_map(|a| intervals[j].iter().map(move |b| (a, b)))
                    .filter(|(a, b)| a.0 < b.1 && b.0 < a.1)
                    .map(|(a, b)| a.0.max(b.0))
                    .min();
                if let Some(at) = first {
                    out.push((i, j, at));
                }
            }
        }
        out
    }
}

/// Compiled schedule rules with what was found wrong or doubtful.
#[derive(Debug, Default)]
pub struct CompiledSchedules {
    /// The rules that compiled.
    pub schedules: Vec<Arc<Schedule>>,
    /// What stops the config from loading.
    pub errors: Vec<RuleError>,
    /// What works, perhaps not as meant (overlapping windows).
    pub warnings: Vec<RuleError>,
}

/// The five-field cron parser: no seconds and no year field, as KEDA's cron scaler and crontab.
fn parse_cron(field: &str, text: &Text) -> Result<Cron, RuleError> {
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    let cron = parser.parse(text.as_str().trim()).map_err(|e| {
        RuleError::at(
            field,
            text,
            format!(
                "{:?} is not a five-field cron expression (minute hour day-of-month month \
                 day-of-week): {e}",
                text.as_str()
            ),
        )
    })?;
    // A pattern that can never match (February 30th) would leave the window shut or open forever.
    if let Err(e) = cron.find_next_occurrence(&Utc::now(), false) {
        return Err(RuleError::at(
            field,
            text,
            format!("{:?} never matches: {e}", text.as_str()),
        ));
    }
    Ok(cron)
}

/// An IANA zone, with the closest known name suggested when it is misspelt.
fn parse_zone(text: &Text) -> Result<Tz, RuleError> {
    if text.as_str().trim().is_empty() {
        return Err(RuleError::at(
            "timezone",
            text,
            "timezone is required: an IANA name such as Europe/Berlin or America/New_York, or UTC",
        ));
    }
    Tz::from_str(text.as_str().trim()).map_err(|_| {
        let closest = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|z| (strsim::jaro_winkler(z.name(), text.as_str()), z.name()))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .filter(|(score, _)| *score > 0.85)
            .map(|(_, name)| format!(" (did you mean {name}?)"))
            .unwrap_or_default();
        RuleError::at(
            "timezone",
            text,
            format!("{:?} is not an IANA time zone{closest}", text.as_str()),
        )
    })
}

fn compile_one(index: usize, raw: &RawSchedule) -> Result<Schedule, Vec<RuleError>> {
    let mut errors = Vec::new();
    let name = raw.name.as_str().trim().to_string();
    if name.is_empty() {
        errors.push(RuleError::at("name", &raw.name, "name is required"));
    } else if !is_valid_api_metric_name(&name) {
        errors.push(RuleError::at(
            "name",
            &raw.name,
            format!("{name:?} cannot be an external metric name (it must be a URL path segment)"),
        ));
    }
    let zone = parse_zone(&raw.timezone).map_err(|e| errors.push(e)).ok();
    let mut namespaces = BTreeSet::new();
    for (i, ns) in raw.namespaces.iter().enumerate() {
        if ns.as_str().trim().is_empty() {
            errors.push(RuleError::at(
                &format!("namespaces[{i}]"),
                ns,
                "empty namespace name",
            ));
        }
        namespaces.insert(ns.as_str().trim().to_string());
    }
    if raw.windows.is_empty() {
        errors.push(RuleError::new(
            "windows",
            "no windows: the metric would always be 0",
        ));
    }
    let mut windows = Vec::new();
    for (i, w) in raw.windows.iter().enumerate() {
        let start = parse_cron(&format!("windows[{i}].start"), &w.start);
        let end = parse_cron(&format!("windows[{i}].end"), &w.end);
        match (start, end) {
            (Ok(start), Ok(end)) => windows.push(Window {
                start,
                end,
                replicas: w.replicas.value,
            }),
            (start, end) => errors.extend(start.err().into_iter().chain(end.err())),
        }
    }
    match zone {
        Some(zone) if errors.is_empty() => Ok(Schedule {
            index,
            name,
            zone,
            namespaces,
            windows,
        }),
        _ => Err(errors),
    }
}

/// Compiles `scheduleRules`, looking for overlapping windows from `now`.
pub fn compile(raw: &[RawSchedule], now: DateTime<Utc>) -> CompiledSchedules {
    let mut out = CompiledSchedules::default();
    let mut seen = HashSet::new();
    for (index, rule) in raw.iter().enumerate() {
        let schedule = match compile_one(index, rule) {
            Ok(s) => s,
            Err(errors) => {
                out.errors
                    .extend(errors.into_iter().map(|e| e.in_rule(SECTION, index)));
                continue;
            }
        };
        if !seen.insert(schedule.name.clone()) {
            out.errors.push(
                RuleError::at(
                    "name",
                    &rule.name,
                    format!("{:?} is served by an earlier schedule rule", schedule.name),
                )
                .in_rule(SECTION, index),
            );
            continue;
        }
        for (a, b, at) in schedule.overlaps(now) {
            let (ra, rb) = (schedule.windows[a].replicas, schedule.windows[b].replicas);
            out.warnings.push(
                RuleError::new(
                    "windows",
                    format!(
                        "windows[{a}] ({ra} replicas) and windows[{b}] ({rb} replicas) are active \
                         at the same time (first at {}); the higher, {}, applies while both are",
                        at.format("%Y-%m-%d %H:%M %Z"),
                        ra.max(rb)
                    ),
                )
                .in_rule(SECTION, index),
            );
        }
        out.schedules.push(Arc::new(schedule));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rules(yaml: &str) -> Vec<RawSchedule> {
        crate::config::parse(&format!("scheduleRules:\n{yaml}"), "test")
            .unwrap()
            .schedule_rules
    }

    fn one(yaml: &str) -> Arc<Schedule> {
        let c = compile(&rules(yaml), Utc::now());
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        c.schedules[0].clone()
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    const BUSINESS_HOURS: &str = r#"
- name: business-hours-floor
  timezone: Europe/Berlin
  windows:
  - {start: "0 8 * * 1-5", end: "0 18 * * 1-5", replicas: 4}
"#;

    #[test]
    fn a_window_is_active_from_its_start_until_its_end_in_local_time() {
        let s = one(BUSINESS_HOURS);
        // Tuesday 2026-12-01, CET = UTC+1: 08:00 local is 07:00 UTC.
        assert_eq!(s.state_at(utc(2026, 12, 1, 6, 59)).unwrap().value, 0);
        assert_eq!(s.state_at(utc(2026, 12, 1, 7, 0)).unwrap().value, 4);
        assert_eq!(s.state_at(utc(2026, 12, 1, 16, 59)).unwrap().value, 4);
        assert_eq!(s.state_at(utc(2026, 12, 1, 17, 0)).unwrap().value, 0);
        // Saturday: no start since Friday's end.
        assert_eq!(s.state_at(utc(2026, 12, 5, 10, 0)).unwrap().value, 0);
    }

    #[test]
    fn the_window_follows_local_time_across_the_spring_daylight_saving_change() {
        let s = one(BUSINESS_HOURS);
        // Friday 2027-03-26 is CET (UTC+1); Monday 2027-03-29 is CEST (UTC+2), after the change
        // on Sunday 2027-03-28 at 02:00.
        assert_eq!(s.state_at(utc(2027, 3, 26, 6, 30)).unwrap().value, 0);
        assert_eq!(s.state_at(utc(2027, 3, 26, 7, 0)).unwrap().value, 4);
        assert_eq!(s.state_at(utc(2027, 3, 29, 6, 0)).unwrap().value, 4);
        assert_eq!(s.state_at(utc(2027, 3, 29, 5, 59)).unwrap().value, 0);
        assert_eq!(s.state_at(utc(2027, 3, 29, 15, 59)).unwrap().value, 4);
        assert_eq!(s.state_at(utc(2027, 3, 29, 16, 0)).unwrap().value, 0);
    }

    #[test]
    fn a_window_opening_in_the_skipped_hour_still_opens_that_night() {
        // 02:30 does not exist in Berlin on 2027-03-28 (02:00 CET jumps to 03:00 CEST).
        let s = one(r#"
- name: nightly-batch
  timezone: Europe/Berlin
  windows:
  - {start: "30 2 * * *", end: "0 5 * * *", replicas: 3}
"#);
        // 03:30 CEST = 01:30 UTC, 04:59 CEST = 02:59 UTC: open; 05:00 CEST = 03:00 UTC: shut.
        assert_eq!(s.state_at(utc(2027, 3, 28, 1, 30)).unwrap().value, 3);
        assert_eq!(s.state_at(utc(2027, 3, 28, 2, 59)).unwrap().value, 3);
        assert_eq!(s.state_at(utc(2027, 3, 28, 3, 0)).unwrap().value, 0);
        // Before the change, the night before: 02:30 CET = 01:30 UTC.
        assert_eq!(s.state_at(utc(2027, 3, 27, 1, 29)).unwrap().value, 0);
        assert_eq!(s.state_at(utc(2027, 3, 27, 1, 30)).unwrap().value, 3);
    }

    #[test]
    fn the_window_follows_local_time_across_the_autumn_change_in_new_york() {
        let s = one(r#"
- name: us-office
  timezone: America/New_York
  windows:
  - {start: "0 9 * * *", end: "0 17 * * *", replicas: 2}
"#);
        // Saturday 2027-11-06 is EDT (UTC-4); Sunday 2027-11-07 after 02:00 is EST (UTC-5).
        assert_eq!(s.state_at(utc(2027, 11, 6, 13, 0)).unwrap().value, 2);
        assert_eq!(s.state_at(utc(2027, 11, 6, 12, 59)).unwrap().value, 0);
        assert_eq!(s.state_at(utc(2027, 11, 7, 13, 30)).unwrap().value, 0);
        assert_eq!(s.state_at(utc(2027, 11, 7, 14, 0)).unwrap().value, 2);
        assert_eq!(s.state_at(utc(2027, 11, 7, 21, 59)).unwrap().value, 2);
        assert_eq!(s.state_at(utc(2027, 11, 7, 22, 0)).unwrap().value, 0);
    }

    #[test]
    fn a_window_that_closed_in_the_repeated_autumn_hour_stays_closed() {
        // New York, 2027-11-07: 01:00-02:00 local happens twice (EDT, then EST). The window
        // opens at midnight (04:00 UTC) and closes at the first 01:30 (05:30 UTC); it must not
        // reopen when the clock runs through 01:00-01:30 again (06:00-06:30 UTC).
        let s = one(r#"
- name: night-batch
  timezone: America/New_York
  windows:
  - {start: "0 0 * * *", end: "30 1 * * *", replicas: 4}
"#);
        assert_eq!(s.state_at(utc(2027, 11, 7, 4, 30)).unwrap().value, 4);
        assert_eq!(s.state_at(utc(2027, 11, 7, 5, 29)).unwrap().value, 4);
        for minute in [31, 59] {
            assert_eq!(s.state_at(utc(2027, 11, 7, 5, minute)).unwrap().value, 0);
        }
        for minute in [0, 15, 29, 30, 45] {
            assert_eq!(
                s.state_at(utc(2027, 11, 7, 6, minute)).unwrap().value,
                0,
                "06:{minute:02} UTC is in the repeated hour, after the window closed"
            );
        }
        assert_eq!(s.state_at(utc(2027, 11, 8, 5, 0)).unwrap().value, 4);
    }

    #[test]
    fn cron_times_in_the_repeated_autumn_hour_happen_once_in_its_first_pass() {
        // New York, 2027-11-07: local 01:00-02:00 runs twice (05:00-06:00 UTC, then
        // 06:00-07:00 UTC). Starts and ends of the repeated hour happen in the first pass only,
        // so the second pass keeps the state the first left: closed since 01:45.
        let s = one(r#"
- name: half-hourly
  timezone: America/New_York
  windows:
  - {start: "0,30 * * * *", end: "15,45 * * * *", replicas: 2}
"#);
        for (h, m, want) in [
            (5, 5, 2),  // first 01:05
            (5, 20, 0), // first 01:20
            (5, 35, 2), // first 01:35
            (5, 50, 0),
            (6, 5, 0), // second 01:05: no start again
            (6, 35, 0),
            (7, 5, 2), // 02:05 EST
            (7, 20, 0),
        ] {
            assert_eq!(
                s.state_at(utc(2027, 11, 7, h, m)).unwrap().value,
                want,
                "at {h:02}:{m:02} UTC"
            );
        }
    }

    const OVERLAPPING: &str = r#"
- name: shop-floor
  timezone: UTC
  windows:
  - {start: "0 8 * * *", end: "0 18 * * *", replicas: 3}
  - {start: "0 12 * * *", end: "0 14 * * *", replicas: 10}
  - {start: "0 16 * * *", end: "0 20 * * *", replicas: 2}
"#;

    #[test]
    fn overlapping_windows_take_the_highest_replicas_of_the_active_ones() {
        let s = one(OVERLAPPING);
        let at = |h, m| s.state_at(utc(2026, 12, 1, h, m)).unwrap();
        assert_eq!(at(7, 0).value, 0);
        assert_eq!(
            at(9, 0),
            ScheduleState {
                value: 3,
                active: vec![0]
            }
        );
        assert_eq!(
            at(12, 30),
            ScheduleState {
                value: 10,
                active: vec![0, 1]
            }
        );
        assert_eq!(
            at(14, 0),
            ScheduleState {
                value: 3,
                active: vec![0]
            }
        );
        assert_eq!(
            at(17, 0),
            ScheduleState {
                value: 3,
                active: vec![0, 2]
            }
        );
        assert_eq!(
            at(19, 0),
            ScheduleState {
                value: 2,
                active: vec![2]
            }
        );
        assert_eq!(at(20, 0).value, 0);
    }

    #[test]
    fn overlapping_windows_are_reported_with_the_first_instant_both_are_active() {
        let c = compile(&rules(OVERLAPPING), utc(2026, 12, 1, 0, 0));
        assert!(c.errors.is_empty());
        let messages: Vec<String> = c
            .warnings
            .iter()
            .map(|w| w.location() + ": " + &w.message)
            .collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(messages[0].starts_with(
            "scheduleRules[0].windows: windows[0] (3 replicas) and windows[1] (10 replicas)"
        ));
        assert!(
            messages[0].contains("2026-12-01 12:00 UTC"),
            "{}",
            messages[0]
        );
        assert!(messages[1].contains("windows[0] (3 replicas) and windows[2] (2 replicas)"));
        assert!(
            messages[1].contains("2026-12-01 16:00 UTC"),
            "{}",
            messages[1]
        );
        // Windows that follow one another do not overlap.
        let c = compile(&rules(BUSINESS_HOURS), utc(2026, 12, 1, 0, 0));
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn bad_zones_crons_and_names_are_config_errors_with_their_lines() {
        let c = compile(
            &rules(
                r#"
- name: floor
  timezone: Europe/Berln
  windows:
  - {start: "0 8 * * 1-5", end: "0 18 * * 1-5", replicas: 4}
- name: floor-two
  timezone: UTC
  windows:
  - {start: "0 0 8 * * 1-5", end: "0 18 * * *", replicas: 4}
  - {start: "0 0 30 2 *", end: "0 18 * * *", replicas: 4}
- name: floor-two
  timezone: UTC
  windows:
  - {start: "0 8 * * *", end: "0 18 * * *", replicas: 1}
- name: ""
  timezone: ""
"#,
            ),
            Utc::now(),
        );
        let messages: Vec<String> = c.errors.iter().map(|e| e.to_string()).collect();
        let all = messages.join("\n");
        assert!(all.contains("scheduleRules[0].timezone (line 4)"), "{all}");
        assert!(all.contains("did you mean Europe/Berlin?"), "{all}");
        assert!(
            all.contains("scheduleRules[1].windows[0].start (line 10)"),
            "{all}"
        );
        assert!(all.contains("not a five-field cron expression"), "{all}");
        assert!(
            all.contains("scheduleRules[1].windows[1].start (line 11)"),
            "{all}"
        );
        assert!(all.contains("never matches"), "{all}");
        assert!(all.contains("scheduleRules[3].name"), "{all}");
        assert!(all.contains("scheduleRules[3].timezone"), "{all}");
        assert!(
            all.contains("scheduleRules[3].windows: no windows"),
            "{all}"
        );
        // floor-two's first definition failed, so the second is the only one: no duplicate.
        assert!(!all.contains("earlier schedule rule"), "{all}");
        assert!(c.schedules.iter().any(|s| s.index == 2));
    }

    #[test]
    fn a_name_served_twice_is_an_error() {
        let c = compile(
            &rules(
                r#"
- name: floor
  timezone: UTC
  windows: [{start: "0 8 * * *", end: "0 9 * * *", replicas: 1}]
- name: floor
  timezone: UTC
  windows: [{start: "0 10 * * *", end: "0 11 * * *", replicas: 1}]
"#,
            ),
            Utc::now(),
        );
        assert_eq!(c.errors.len(), 1);
        assert_eq!(c.errors[0].location(), "scheduleRules[1].name (line 6)");
    }

    #[test]
    fn namespaces_restrict_where_the_metric_is_served() {
        let s = one(r#"
- name: floor
  timezone: UTC
  namespaces: [shop, checkout]
  windows: [{start: "0 8 * * *", end: "0 9 * * *", replicas: 1}]
"#);
        assert!(s.serves_namespace("shop"));
        assert!(!s.serves_namespace("default"));
        assert!(one(BUSINESS_HOURS).serves_namespace("anything"));
    }
}
