//! The simulation as a picture (SVG, drawn with `plotters`): replicas over time on top, with
//! the syncs where a policy or a stabilization window limited the change marked, then one
//! panel per metric with its target. A `--what-if` HPA is drawn over the same axes in orange.

use std::path::Path;

use anyhow::anyhow;
use plotters::prelude::*;

use super::{Run, Simulation};
use crate::hpa::spec::Target;

const BASE: RGBColor = RGBColor(31, 119, 180);
const WHAT_IF: RGBColor = RGBColor(255, 127, 14);
const LIMITED: RGBColor = RGBColor(214, 39, 40);
const TARGET: RGBColor = RGBColor(120, 120, 120);
const DESIRED: RGBColor = RGBColor(110, 160, 210);

fn draw_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{e}")
}

/// One run's line in a metric panel: its segments, its target, its colour and a caption.
type PanelLine = (Vec<Vec<(f64, f64)>>, f64, RGBColor, String);

/// Minutes since the first sync, for the x axis.
fn x_of(sim: &Simulation, t_ms: i64) -> f64 {
    (t_ms - sim.window.start_ms) as f64 / 60_000.0
}

/// Replicas as a step function: each sync's result holds until the next sync.
fn replica_steps(sim: &Simulation, run: &Run) -> Vec<(f64, f64)> {
    let step = sim.window.step_ms as f64 / 60_000.0;
    let mut out = Vec::with_capacity(run.steps.len() * 2);
    for s in &run.steps {
        let x = x_of(sim, s.time);
        let r = f64::from(s.decision.replicas);
        out.push((x, r));
        out.push((x + step, r));
    }
    out
}

/// The runs of consecutive `Some` points, so gaps in a metric's history stay gaps.
fn segments(points: impl Iterator<Item = (f64, Option<f64>)>) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (x, y) in points {
        match y {
            Some(y) => out.last_mut().map(|s| s.push((x, y))).unwrap_or_default(),
            None if out.last().is_some_and(|s| !s.is_empty()) => out.push(Vec::new()),
            None => {}
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn target_kind(t: Target) -> &'static str {
    match t {
        Target::Value(_) => "Value",
        Target::AverageValue(_) => "AverageValue",
        Target::Utilization(_) => "Utilization",
    }
}

fn time_label(sim: &Simulation, minutes: f64) -> String {
    let ms = sim.window.start_ms + (minutes * 60_000.0).round() as i64;
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%H:%M").to_string())
        .unwrap_or_default()
}

/// Writes the picture to `path`.
pub fn svg(sim: &Simulation, path: &Path) -> anyhow::Result<()> {
    let metrics = &sim.base.hpa.metrics;
    let top_height = 360u32;
    let panel_height = 240u32;
    let height = top_height + panel_height * metrics.len() as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE).map_err(draw_err)?;
    let (top, rest) = root.split_vertically(top_height);
    let x_end = x_of(
        sim,
        sim.window.start_ms + sim.window.steps as i64 * sim.window.step_ms,
    );
    let x_range = 0.0..x_end.max(1.0 / 60.0);
    let x_fmt = |x: &f64| time_label(sim, *x);

    let runs: Vec<(&Run, RGBColor, String)> =
        std::iter::once((&sim.base, BASE, "replicas".to_string()))
            .chain(sim.what_if.as_ref().map(|(changes, run)| {
                (
                    run,
                    WHAT_IF,
                    format!("replicas with {}", changes.join(", ")),
                )
            }))
            .collect();
    let y_max = runs
        .iter()
        .flat_map(|(r, _, _)| {
            r.steps
                .iter()
                .map(|s| s.decision.replicas.max(s.current))
                .chain([r.hpa.bounds.max_replicas])
        })
        .max()
        .unwrap_or(1);
    let hpa = &sim.base.hpa;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "HPA {}/{} on {} {}: replicas (UTC)",
                sim.namespace, hpa.name, hpa.scale_target.kind, hpa.scale_target.name
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(48)
        .build_cartesian_2d(x_range.clone(), 0.0..f64::from(y_max) * 1.55 + 1.0)
        .map_err(draw_err)?;
    chart
        .configure_mesh()
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&|y| super::output::num(*y))
        .y_desc("replicas")
        .draw()
        .map_err(draw_err)?;
    for bound in [hpa.bounds.min_replicas, hpa.bounds.max_replicas] {
        chart
            .draw_series(DashedLineSeries::new(
                [(0.0, f64::from(bound)), (x_range.end, f64::from(bound))],
                6,
                4,
                TARGET.stroke_width(1),
            ))
            .map_err(draw_err)?;
    }
    // What the metrics asked for, before behavior: the gap to the replicas is what behavior
    // held back.
    let step = sim.window.step_ms as f64 / 60_000.0;
    for segment in segments(sim.base.steps.iter().map(|s| {
        (
            x_of(sim, s.time),
            s.decision.desired.map(|d| f64::from(d.clamp(0, y_max))),
        )
    })) {
        let held: Vec<(f64, f64)> = segment
            .iter()
            .flat_map(|&(x, y)| [(x, y), (x + step, y)])
            .collect();
        chart
            .draw_series(LineSeries::new(held, DESIRED.stroke_width(1)))
            .map_err(draw_err)?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            Vec::<(f64, f64)>::new(),
            DESIRED.stroke_width(1),
        )))
        .map_err(draw_err)?
        .label("desired by the metrics (before behavior)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], DESIRED.stroke_width(1)));
    for (run, color, label) in &runs {
        let color = *color;
        let drawn = if color == BASE {
            chart.draw_series(LineSeries::new(
                replica_steps(sim, run),
                color.stroke_width(2),
            ))
        } else {
            // Dashed, so the replicas of the HPA as given show through where both agree.
            chart.draw_series(DashedLineSeries::new(
                replica_steps(sim, run),
                7,
                5,
                color.stroke_width(2),
            ))
        };
        drawn
            .map_err(draw_err)?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        let marks: Vec<(f64, f64)> = run
            .steps
            .iter()
            .filter(|s| s.decision.behavior_limited())
            .map(|s| (x_of(sim, s.time), f64::from(s.decision.replicas)))
            .collect();
        let mark_style = if color == BASE {
            LIMITED.filled()
        } else {
            // Rings, so a base marker at the same sync shows inside.
            color.stroke_width(2)
        };
        chart
            .draw_series(
                marks
                    .into_iter()
                    .map(move |p| Circle::new(p, if color == BASE { 3 } else { 5 }, mark_style)),
            )
            .map_err(draw_err)?
            .label(if color == BASE {
                "limited by a policy or stabilization window".to_string()
            } else {
                "what-if: limited by a policy or stabilization window".to_string()
            })
            .legend(move |(x, y)| Circle::new((x + 10, y), 3, mark_style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()
        .map_err(draw_err)?;

    let panels = rest.split_evenly((metrics.len().max(1), 1));
    for (i, (metric, area)) in metrics.iter().zip(panels.iter()).enumerate() {
        let mut lines: Vec<PanelLine> = Vec::new();
        for (run, color, _) in &runs {
            let Some(m) = run.hpa.metrics.get(i) else {
                continue;
            };
            let values = segments(
                run.steps
                    .iter()
                    .map(|s| (x_of(sim, s.time), s.metrics.get(i).and_then(|v| v.value))),
            );
            let what = match (&m.source, m.target) {
                (_, Target::Value(_)) => "the value",
                (
                    crate::hpa::Source::Pods { .. } | crate::hpa::Source::Resource { .. },
                    Target::AverageValue(_),
                ) => "the average per pod",
                (_, Target::AverageValue(_)) => "the value per replica",
                (_, Target::Utilization(_)) => "% of requests",
            };
            let what = format!(
                "{} {}: {what}",
                target_kind(m.target),
                super::output::num(m.target.as_f64())
            );
            lines.push((values, m.target.as_f64(), *color, what));
        }
        let y_top = lines
            .iter()
            .flat_map(|(segs, target, _, _)| {
                segs.iter()
                    .flatten()
                    .map(|(_, y)| *y)
                    .chain(std::iter::once(*target))
            })
            .fold(0.0f64, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!(
                    "{} ({} metric, target {})",
                    metric.label(),
                    metric.kind(),
                    lines.first().map(|l| l.3.as_str()).unwrap_or("")
                ),
                ("sans-serif", 15),
            )
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(x_range.clone(), 0.0..(y_top * 1.4).max(1e-9))
            .map_err(draw_err)?;
        chart
            .configure_mesh()
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&|y| super::output::num(*y))
            .draw()
            .map_err(draw_err)?;
        for (k, (segs, target, color, _)) in lines.iter().enumerate() {
            let color = *color;
            let mut first = true;
            for seg in segs {
                let drawn = chart
                    .draw_series(LineSeries::new(seg.clone(), color.stroke_width(2)))
                    .map_err(draw_err)?;
                if first {
                    drawn
                        .label(if k == 0 { "value" } else { "what-if value" })
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                    first = false;
                }
            }
            if k > 0 && *target == lines[0].1 {
                // Same target: one line says it.
                continue;
            }
            let target_color = if k == 0 { TARGET } else { color };
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, *target), (x_range.end, *target)],
                    8,
                    4,
                    target_color.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label(if k == 0 { "target" } else { "what-if target" })
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], target_color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(draw_err)?;
    }
    root.present().map_err(draw_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::segments;

    #[test]
    fn gaps_split_a_line() {
        let s = segments(
            [
                (0.0, Some(1.0)),
                (1.0, None),
                (2.0, None),
                (3.0, Some(2.0)),
                (4.0, Some(3.0)),
            ]
            .into_iter(),
        );
        assert_eq!(s, vec![vec![(0.0, 1.0)], vec![(3.0, 2.0), (4.0, 3.0)]]);
    }
}
