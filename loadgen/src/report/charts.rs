//! Charts drawn with plotters into SVG strings, inlined in the HTML reports and written beside
//! the Markdown ones. Text stays text (`<text>` elements): the reader's browser renders it, so the
//! SVGs need no font files.

use hdrhistogram::Histogram;
use plotters::prelude::*;

const SIZE: (u32, u32) = (860, 340);
const FONT: &str = "sans-serif";

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points in x order.
    pub points: Vec<(f64, f64)>,
    /// Drawn thin and light (e.g. service time beside corrected latency, or a target).
    pub faint: bool,
}

impl Series {
    /// A solid series.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points, faint: false }
    }

    /// A faint series.
    pub fn faint(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points, faint: true }
    }
}

fn color(index: usize) -> RGBColor {
    const COLORS: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(255, 127, 14),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(23, 190, 207),
    ];
    COLORS[index % COLORS.len()]
}

fn bounds(series: &[Series]) -> Option<(f64, f64, f64)> {
    let points = series.iter().flat_map(|s| s.points.iter()).filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0_f64);
    let mut any = false;
    for (x, y) in points {
        any = true;
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        y1 = y1.max(*y);
    }
    any.then_some((x0, if x1 > x0 { x1 } else { x0 + 1.0 }, if y1 > 0.0 { y1 * 1.08 } else { 1.0 }))
}

/// A line chart with linear axes; None when there is nothing to draw.
pub fn line_chart(title: &str, x_desc: &str, y_desc: &str, series: &[Series]) -> Result<Option<String>, String> {
    let Some((x0, x1, y1)) = bounds(series) else { return Ok(None) };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 17))
            .margin(12)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, 0.0..y1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT, 12))
            .light_line_style(RGBColor(235, 235, 235))
            .y_label_formatter(&|v| short_number(*v))
            .x_label_formatter(&|v| short_number(*v))
            .draw()
            .map_err(|e| e.to_string())?;
        draw_lines(&mut chart, series, |i| i)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Some(svg))
}

fn draw_lines<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate<From = (f64, f64)>>(
    chart: &mut ChartContext<'a, DB, CT>,
    series: &[Series],
    color_of: impl Fn(usize) -> usize,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    for (i, s) in series.iter().enumerate() {
        let base = color(color_of(i));
        let style = if s.faint { base.mix(0.55).stroke_width(1) } else { base.stroke_width(2) };
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), style))
            .map_err(|e| e.to_string())?
            .label(&s.name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())
}

/// Quantiles of a percentile spectrum: x = -log10(1 - q), from p50 (0.30) to p99.99 (4).
fn spectrum_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    (0..=74)
        .map(|i| std::f64::consts::LOG10_2 + f64::from(i) * (4.0 - std::f64::consts::LOG10_2) / 74.0)
        .map(|x| {
            let q = 1.0 - 10f64.powf(-x);
            (x, (h.value_at_quantile(q) as f64 / 1000.0).max(0.001))
        })
        .collect()
}

/// The latency percentile spectrum (p50 to p99.99, log scales) of each operation: corrected
/// latency solid, service time faint.
pub fn spectrum_chart(
    title: &str,
    operations: &[(String, &Histogram<u64>, &Histogram<u64>)],
) -> Result<Option<String>, String> {
    let mut series = Vec::new();
    for (name, latency, service) in operations {
        if latency.is_empty() {
            continue;
        }
        series.push(Series::new(format!("{name} (corrected)"), spectrum_points(latency)));
        series.push(Series::faint(format!("{name} (service time)"), spectrum_points(service)));
    }
    let Some((_, _, y1)) = bounds(&series) else { return Ok(None) };
    let y0 = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).fold(f64::INFINITY, f64::min).max(0.001);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (SIZE.0, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 17))
            .margin(12)
            .margin_right(28)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..4.0, (y0 * 0.8..y1 * 1.2).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("ms (log)")
            .label_style((FONT, 12))
            .light_line_style(RGBColor(235, 235, 235))
            // Ticks at p0 (unused: the data starts at p50), p90, p99, p99.9, p99.99.
            .x_labels(5)
            .x_label_formatter(&|x| percentile_label(*x))
            .y_label_formatter(&|v| short_number(*v))
            .draw()
            .map_err(|e| e.to_string())?;
        // Corrected and service time of one operation share its colour.
        draw_lines(&mut chart, &series, |i| i / 2)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Some(svg))
}

fn percentile_label(x: f64) -> String {
    let q = (1.0 - 10f64.powf(-x)) * 100.0;
    let text = format!("{q:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("p{text}")
}

/// `1.5k`, `250`, `0.25`: short axis labels.
pub fn short_number(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
