//! Charts: one panel per workload variant, engines side by side as horizontal bars,
//! AlexStorage highlighted, a log scale where the figures span more than 20x.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use plotters::coord::ranged1d::{IntoSegmentedCoord, SegmentValue, SegmentedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordusize;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::engines::SUBJECT;
use crate::report::{display, figure};
use crate::results::{Results, Unit};

/// Fonts tried in order; the first one found is used for every chart.
const FONTS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

const SUBJECT_COLOR: RGBColor = RGBColor(230, 85, 13);
const PEER_COLOR: RGBColor = RGBColor(49, 130, 189);
const MEMORY_COLOR: RGBColor = RGBColor(170, 170, 170);

/// Registers a system font with plotters. Fails (charts are then skipped) if none is
/// installed; `scripts/bench.sh` installs `fonts-dejavu-core`.
pub fn load_font() -> Result<()> {
    let path = FONTS
        .iter()
        .find(|path| Path::new(path).exists())
        .ok_or_else(|| anyhow!("no font found (tried {FONTS:?}); install fonts-dejavu-core"))?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path)?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{path} is not a usable font"))?;
    Ok(())
}

/// One bar of a panel.
struct Bar {
    engine: String,
    value: Option<f64>,
}

/// A panel: a workload variant with every engine's median.
pub struct Panel {
    title: String,
    unit: Unit,
    bars: Vec<Bar>,
}

/// Panels for the given (workload, variant) sections, in `engines` order.
pub fn panels(results: &Results, sections: &[(String, String)], engines: &[&str]) -> Vec<Panel> {
    sections
        .iter()
        .filter_map(|(workload, variant)| {
            let unit = results.rows.iter().find(|row| row.workload == *workload && row.variant == *variant)?.unit;
            let bars: Vec<Bar> = engines
                .iter()
                .filter(|engine| results.find(workload, variant, engine).is_some())
                .map(|engine| Bar {
                    engine: engine.to_string(),
                    value: results.median(workload, variant, engine).map(|sample| sample.value),
                })
                .collect();
            if bars.iter().all(|bar| bar.value.is_none()) {
                return None;
            }
            let title = if variant.is_empty() { workload.clone() } else { format!("{workload}: {variant}") };
            Some(Panel { title, unit, bars })
        })
        .collect()
}

/// Draws `panels` in a grid of `columns` into a PNG (or SVG, by extension) at `path`.
pub fn draw(path: &Path, panels: &[Panel], columns: usize, title: &str) -> Result<()> {
    if panels.is_empty() {
        bail!("nothing to draw");
    }
    let columns = columns.clamp(1, panels.len());
    let rows = panels.len().div_ceil(columns);
    let size = (columns as u32 * 520, rows as u32 * 300 + 50);
    let svg = path.extension().is_some_and(|extension| extension == "svg");
    if svg {
        let root = SVGBackend::new(path, size).into_drawing_area();
        draw_on(&root, panels, columns, rows, title)?;
        root.present().map_err(|error| anyhow!("writing {}: {error}", path.display()))
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        draw_on(&root, panels, columns, rows, title)?;
        root.present().map_err(|error| anyhow!("writing {}: {error}", path.display()))
    }
}

fn draw_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[Panel],
    columns: usize,
    rows: usize,
    title: &str,
) -> Result<()> {
    let fail = |error: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("drawing a chart: {error}");
    root.fill(&WHITE).map_err(fail)?;
    let root = root.titled(title, ("sans-serif", 24)).map_err(fail)?;
    let areas = root.split_evenly((rows, columns));
    for (panel, area) in panels.iter().zip(areas) {
        draw_panel(&area, panel).map_err(|error| anyhow!("drawing panel {}: {error}", panel.title))?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<()> {
    let fail = |error: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{error}");
    let values: Vec<f64> = panel.bars.iter().filter_map(|bar| bar.value).filter(|value| *value > 0.0).collect();
    let max = values.iter().copied().fold(f64::MIN, f64::max);
    let min = values.iter().copied().fold(f64::MAX, f64::min);
    let log = max / min > 20.0;
    let better = if panel.unit.higher_is_better() { "higher is better" } else { "lower is better" };
    let caption = format!("{} ({}, {better}{})", panel.title, panel.unit.label(), if log { ", log scale" } else { "" });
    let count = panel.bars.len();
    let name_of = |index: usize| {
        panel.bars.get(count - 1 - index).map_or(String::new(), |bar| display(&bar.engine).replace(" (in memory)", "*"))
    };
    // Engines top to bottom in report order: segment 0 is the bottom bar.
    let mut builder = ChartBuilder::on(area);
    builder.caption(caption, ("sans-serif", 15)).margin(8).x_label_area_size(22).y_label_area_size(95);
    let bar_color = |engine: &str| match engine {
        SUBJECT => SUBJECT_COLOR,
        "hashmap" | "btreemap" => MEMORY_COLOR,
        _ => PEER_COLOR,
    };
    if log {
        let low = 10f64.powf((min / 2.0).log10().floor());
        let high = max * 8.0;
        let mut chart =
            builder.build_cartesian_2d((low..high).log_scale(), (0..count).into_segmented()).map_err(fail)?;
        draw_axes_and_bars(&mut chart, 6, &name_of, panel, low, &bar_color).map_err(fail)?;
    } else {
        let high = if max > 0.0 { max * 1.3 } else { 1.0 };
        let mut chart = builder.build_cartesian_2d(0.0..high, (0..count).into_segmented()).map_err(fail)?;
        draw_axes_and_bars(&mut chart, 5, &name_of, panel, 0.0, &bar_color).map_err(fail)?;
    }
    Ok(())
}

type Rows = SegmentedCoord<RangedCoordusize>;

/// The axes (engine names on the left, `x_labels` figures below), then one bar per
/// engine from `base`, with its figure, or "n/a".
fn draw_axes_and_bars<DB: DrawingBackend, X: Ranged<ValueType = f64> + ValueFormatter<f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Rows>>,
    x_labels: usize,
    name_of: &dyn Fn(usize) -> String,
    panel: &Panel,
    base: f64,
    color: &dyn Fn(&str) -> RGBColor,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_labels(x_labels)
        .x_label_formatter(&|value| figure(*value))
        .y_label_formatter(&|segment| match segment {
            SegmentValue::CenterOf(index) => name_of(*index),
            _ => String::new(),
        })
        .label_style(("sans-serif", 12))
        .draw()?;
    let count = panel.bars.len();
    let label = TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (index, bar) in panel.bars.iter().enumerate() {
        let row = count - 1 - index;
        match bar.value {
            Some(value) if value > 0.0 => {
                let mut rectangle = Rectangle::new(
                    [(base, SegmentValue::Exact(row)), (value, SegmentValue::Exact(row + 1))],
                    color(&bar.engine).filled(),
                );
                rectangle.set_margin(3, 3, 0, 0);
                chart.draw_series(std::iter::once(rectangle))?;
                chart.draw_series(std::iter::once(Text::new(
                    format!(" {}", figure(value)),
                    (value, SegmentValue::CenterOf(row)),
                    label.clone(),
                )))?;
            }
            _ => {
                chart.draw_series(std::iter::once(Text::new(
                    " n/a",
                    (base, SegmentValue::CenterOf(row)),
                    label.clone().color(&RGBColor(120, 120, 120)),
                )))?;
            }
        }
    }
    Ok(())
}
