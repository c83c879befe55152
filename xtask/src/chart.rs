//! The bench's chart: one stacked bar per firmware and machine, tQEMU + tFW +
//! tKernel, and beside it a panel with the firmware's own time on its own
//! scale (tKernel is seconds, tFW milliseconds: on one scale tFW is a hair),
//! written as SVG with plotters.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

/// One bar: its label and its three phases in ms (tKernel may be missing).
pub struct Bar {
    pub label: String,
    pub tqemu: f64,
    pub tfw: f64,
    pub tkernel: Option<f64>,
    /// The firmware's time for its own panel: from QMP `cont` to the kernel
    /// entry in one process where measured, else `tfw`.
    pub firmware: Option<f64>,
}

pub fn write_svg(path: &Path, title: &str, bars: &[Bar]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let top = bars
        .iter()
        .map(|b| b.tqemu + b.tfw.max(0.0) + b.tkernel.unwrap_or(0.0).max(0.0))
        .fold(1.0, f64::max)
        * 1.1;
    let phases_width = 160 + 110 * bars.len() as u32;
    let firmware_width = 140 + 80 * bars.len() as u32;
    let root = SVGBackend::new(path, (phases_width + firmware_width, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = root.split_horizontally(phases_width);
    let mut chart = ChartBuilder::on(&left)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..bars.len() as f64, 0f64..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len() * 2 + 1)
        .x_label_formatter(&|x| bar_label(bars, *x))
        .y_desc("ms from QEMU start")
        .draw()
        .map_err(|e| err(&e))?;
    const PHASES: [(&str, RGBColor); 3] = [
        ("tQEMU", RGBColor(170, 170, 170)),
        ("tFW", RGBColor(230, 120, 30)),
        ("tKernel", RGBColor(60, 110, 190)),
    ];
    for (k, &(name, color)) in PHASES.iter().enumerate() {
        let rects: Vec<_> = bars
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let segs = [b.tqemu, b.tfw.max(0.0), b.tkernel.unwrap_or(0.0).max(0.0)];
                let base: f64 = segs[..k].iter().sum();
                let x = i as f64;
                Rectangle::new([(x + 0.2, base), (x + 0.8, base + segs[k])], color.filled())
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    firmware_panel(&right, bars).map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// The label under the bar whose middle is at `x` (bars stand at 0.5, 1.5, ...).
fn bar_label(bars: &[Bar], x: f64) -> String {
    let i = x.floor() as usize;
    if (x - i as f64 - 0.5).abs() < 0.01 && i < bars.len() {
        bars[i].label.clone()
    } else {
        String::new()
    }
}

/// The firmware's own time per bar, on a millisecond scale of its own.
fn firmware_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    bars: &[Bar],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let value = |b: &Bar| b.firmware.unwrap_or(b.tfw).max(0.0);
    let top = bars.iter().map(value).fold(1.0, f64::max) * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption("firmware alone, own scale", ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..bars.len() as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len() * 2 + 1)
        .x_label_formatter(&|x| bar_label(bars, *x))
        .y_desc("ms (QMP cont to kernel entry)")
        .draw()?;
    let color = RGBColor(230, 120, 30);
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let x = i as f64;
        Rectangle::new([(x + 0.2, 0.0), (x + 0.8, value(b))], color.filled())
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        Text::new(
            format!("{:.1}", value(b)),
            (i as f64 + 0.25, value(b) + top * 0.03),
            ("sans-serif", 12),
        )
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg_with_every_bar() {
        let path = std::env::temp_dir().join(format!("ferrite-chart-{}.svg", std::process::id()));
        let bars = [
            Bar {
                label: "q35 ferrite".into(),
                tqemu: 50.0,
                tfw: 5.0,
                tkernel: Some(900.0),
                firmware: Some(4.2),
            },
            Bar {
                label: "q35 qboot".into(),
                tqemu: 50.0,
                tfw: 8.0,
                tkernel: None,
                firmware: None,
            },
        ];
        write_svg(&path, "test", &bars).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(
            svg.contains("q35 ferrite") && svg.contains("q35 qboot") && svg.contains("tKernel")
        );
        // the firmware panel, with each bar's value written on it
        assert!(
            svg.contains("firmware alone") && svg.contains("\n4.2\n") && svg.contains("\n8.0\n")
        );
        std::fs::remove_file(&path).unwrap();
    }
}
