//! Drawing a [`TopModel`] with ratatui: a title line, a line naming the
//! introspection collections found, the table of collections, and a line of keys (or
//! the last error).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table};

use super::model::{Frontier, Lag, TopModel, TopRow, clock_text, sparkline};

/// Lag samples kept and drawn per collection.
pub(crate) const HISTORY: usize = 30;

/// From this width on, the table also shows since, parts, shard and error.
pub(crate) const WIDE_FROM: u16 = 130;

/// The longest name shown whole; longer ones are cut with `…`.
const NAME_WIDTH: usize = 20;

/// The column headers of a narrow (80-column) and of a wide terminal.
pub(crate) const NARROW: [&str; 6] = ["id", "name", "status", "upper", "lag", "lag history"];
pub(crate) const WIDE: [&str; 10] = [
    "id",
    "name",
    "status",
    "since",
    "upper",
    "lag",
    "lag history",
    "parts",
    "shard",
    "error",
];

/// Draws the whole view into `frame`.
pub(crate) fn draw(frame: &mut Frame<'_>, model: &TopModel) {
    let [title, location, found, table, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(title_line(model)), title);
    frame.render_widget(
        Paragraph::new(Line::styled(
            model.url.clone(),
            Style::default().add_modifier(Modifier::DIM),
        )),
        location,
    );
    frame.render_widget(Paragraph::new(introspection_line(model)), found);
    draw_table(frame, table, model);
    frame.render_widget(Paragraph::new(keys_line(model)), keys);
}

fn title_line(model: &TopModel) -> Line<'static> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut spans = vec![Span::styled("strata top", bold)];
    if let Some(epoch) = model.epoch {
        spans.push(Span::raw(format!("  epoch {epoch}")));
    }
    spans.push(Span::raw(format!("  {} collections", model.rows.len())));
    let every = format!("every {}", interval_text(model.interval_ms));
    spans.push(Span::raw(match model.refreshed_at_ms {
        Some(at) => format!("  refreshed {} ({every})", clock_text(at)),
        None => format!("  reading… ({every})"),
    }));
    Line::from(spans)
}

fn interval_text(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

fn introspection_line(model: &TopModel) -> Line<'static> {
    let dim = Style::default().add_modifier(Modifier::DIM);
    if let Some(ago) = model.stale_for_ms {
        return Line::styled(
            format!(
                "* stale: no controller has written introspection for {}",
                Lag::Millis(ago).text()
            ),
            Style::default().fg(Color::Yellow),
        );
    }
    if model.introspection.is_empty() {
        return Line::styled(
            "introspection: none found yet (status shows -, frontiers come from the shards)",
            dim,
        );
    }
    Line::styled(
        format!(
            "introspection: {} collections; times are UTC",
            model.introspection.len()
        ),
        dim,
    )
}

fn keys_line(model: &TopModel) -> Line<'static> {
    match &model.problem {
        Some(problem) => Line::styled(format!("error: {problem}"), Style::default().fg(Color::Red)),
        None => Line::styled(
            if model.raw {
                "q quit   ↑/↓ scroll   r times of day"
            } else {
                "q quit   ↑/↓ scroll   r raw timestamps"
            },
            Style::default().add_modifier(Modifier::DIM),
        ),
    }
}

fn status_style(status: &str) -> Style {
    match status.trim_end_matches('*') {
        _ if status.ends_with('*') => Style::default().add_modifier(Modifier::DIM),
        "running" => Style::default().fg(Color::Green),
        "starting" | "paused" => Style::default().fg(Color::Yellow),
        "stalled" | "ceased" => Style::default().fg(Color::Red),
        _ => Style::default(),
    }
}

/// `name`, cut to [`NAME_WIDTH`] characters with `…`.
fn short_name(name: &str) -> String {
    if name.chars().count() <= NAME_WIDTH {
        return name.to_owned();
    }
    let cut: String = name.chars().take(NAME_WIDTH - 1).collect();
    format!("{cut}…")
}

fn table_row(model: &TopModel, row: &TopRow, wide: bool) -> Row<'static> {
    let lag_style = match row.lag {
        Lag::Done | Lag::Unknown => Style::default().add_modifier(Modifier::DIM),
        Lag::Millis(_) => Style::default(),
    };
    let time = |f: Frontier| if model.raw { f.text() } else { f.time_text() };
    let mut cells = vec![
        Cell::from(row.id.clone()),
        Cell::from(short_name(&row.name)),
        Cell::from(row.status.clone()).style(status_style(&row.status)),
    ];
    if wide {
        cells.push(Cell::from(time(row.since)));
    }
    cells.extend([
        Cell::from(time(row.upper)),
        Cell::from(row.lag.text()).style(lag_style),
        Cell::from(sparkline(model.history(&row.id), HISTORY))
            .style(Style::default().fg(Color::Cyan)),
    ]);
    if wide {
        cells.extend([
            Cell::from(row.parts.map_or_else(|| "-".to_owned(), |p| p.to_string())),
            Cell::from(row.shard.clone()),
            Cell::from(row.error.clone().unwrap_or_default())
                .style(Style::default().fg(Color::Red)),
        ]);
    }
    Row::new(cells)
}

fn draw_table(frame: &mut Frame<'_>, area: Rect, model: &TopModel) {
    let wide = area.width >= WIDE_FROM;
    let width_of = |f: &dyn Fn(&TopRow) -> usize, min: usize| {
        let w = model.rows.iter().map(f).max().unwrap_or(0).max(min);
        Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX))
    };
    let id = width_of(&|r| r.id.chars().count(), 2);
    let name = width_of(&|r| r.name.chars().count().min(NAME_WIDTH), 4);
    let time = Constraint::Length(if model.raw { 13 } else { 12 });
    let mut widths = vec![id, name, Constraint::Length(9)];
    if wide {
        widths.push(time);
    }
    widths.extend([time, Constraint::Length(6)]);
    if wide {
        widths.extend([
            Constraint::Length(u16::try_from(HISTORY).unwrap_or(u16::MAX)),
            Constraint::Length(5),
            Constraint::Length(38),
            Constraint::Fill(1),
        ]);
    } else {
        widths.push(Constraint::Fill(1));
    }
    let headers: &[&str] = if wide { &WIDE } else { &NARROW };
    let header = Row::new(headers.to_vec()).style(Style::default().add_modifier(Modifier::BOLD));
    let rows: Vec<Row<'static>> = model
        .rows
        .iter()
        .skip(model.offset)
        .map(|r| table_row(model, r, wide))
        .collect();
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(1),
        area,
    );
    if model.rows.is_empty() {
        let text = if model.refreshed_at_ms.is_some() {
            "(no collections in the catalog)"
        } else {
            "(reading…)"
        };
        let [_, below] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(area);
        frame.render_widget(Paragraph::new(text), below);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::model::{CollectionState, Frontier, Snapshot, StatusEntry};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use strata_controller_api::IntrospectionType;

    fn screen(model: &TopModel, width: u16, height: u16) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, model)).unwrap();
        let buffer = terminal.backend().buffer();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    fn model() -> TopModel {
        let mut model = TopModel::new("file:///data", 1000, HISTORY);
        let collections = vec![
            CollectionState {
                id: "u1".to_owned(),
                shard: "s11111111-1111-1111-1111-111111111111".to_owned(),
                since: Frontier::At(100),
                upper: Frontier::At(9_000),
                introspection: None,
                name: Some("orders".to_owned()),
                parts: Some(2),
            },
            CollectionState {
                id: "u2".to_owned(),
                shard: "s22222222-2222-2222-2222-222222222222".to_owned(),
                since: Frontier::Closed,
                upper: Frontier::Closed,
                introspection: None,
                name: None,
                parts: Some(2),
            },
            CollectionState {
                id: "s1".to_owned(),
                shard: "s33333333-3333-3333-3333-333333333333".to_owned(),
                since: Frontier::At(5),
                upper: Frontier::At(9_990),
                introspection: Some(IntrospectionType::Frontiers),
                name: None,
                parts: None,
            },
        ];
        for at in [9_500, 10_000] {
            let mut snapshot = Snapshot {
                taken_at_ms: at,
                epoch: 4,
                collections: collections.clone(),
                ..Snapshot::default()
            };
            snapshot.statuses.insert(
                "u1".to_owned(),
                StatusEntry {
                    occurred_at: 1,
                    status: "stalled".to_owned(),
                    error: Some("disk full".to_owned()),
                },
            );
            model.apply(snapshot);
        }
        model
    }

    #[test]
    fn a_wide_terminal_shows_every_column() {
        let text = screen(&model(), 160, 13);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("strata top  epoch 4  3 collections"),
            "{text}"
        );
        assert!(
            lines[0].contains("refreshed 00:00:10 UTC (every 1s)"),
            "{text}"
        );
        assert!(lines[1].starts_with("file:///data"), "{text}");
        assert!(lines[2].contains("introspection: 1 collections"), "{text}");
        let header: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "id", "name", "status", "since", "upper", "lag", "lag", "history", "parts",
                "shard", "error"
            ],
            "{text}"
        );
        let row = |id: &str| {
            *lines
                .iter()
                .find(|l| l.split_whitespace().next() == Some(id))
                .unwrap_or_else(|| panic!("no row {id}: {text}"))
        };
        let u1 = row("u1");
        for needle in [
            "orders",
            "stalled",
            "100",
            "9000",
            "1.0s",
            "▄█",
            "s11111111-",
            "disk full",
        ] {
            assert!(u1.contains(needle), "{needle} missing: {u1}");
        }
        let u2 = row("u2");
        assert!(
            u2.contains("done") && u2.contains("[]") && u2.contains(" - "),
            "{u2}"
        );
        let s1 = row("s1");
        assert!(
            s1.contains("frontiers") && s1.contains("10ms") && s1.contains("▁█"),
            "{s1}"
        );
        assert!(lines[12].contains("q quit"), "{text}");
    }

    #[test]
    fn an_80_column_terminal_shows_names_times_and_lag_whole() {
        let mut m = model();
        let text = screen(&m, 80, 13);
        for line in text.lines() {
            assert!(line.chars().count() <= 80, "{line}");
        }
        let header: Vec<&str> = text.lines().nth(3).unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["id", "name", "status", "upper", "lag", "lag", "history"],
            "{text}"
        );
        let u1 = text.lines().find(|l| l.starts_with("u1 ")).unwrap();
        for needle in ["orders", "stalled", "9000", "1.0s", "▄█"] {
            assert!(u1.contains(needle), "{needle} missing: {u1}");
        }
        // Wall-clock times are shown as times of day; `r` shows the raw value.
        m.rows[0].upper = Frontier::At(1_796_620_461_630);
        let text = screen(&m, 80, 13);
        assert!(text.contains("05:14:21.630"), "{text}");
        m.raw = true;
        let text = screen(&m, 80, 13);
        assert!(text.contains("1796620461630"), "{text}");
        assert!(text.contains("r times of day"), "{text}");
    }

    #[test]
    fn errors_and_empty_catalogs_are_shown() {
        let mut m = TopModel::new("mem://x", 250, HISTORY);
        let text = screen(&m, 100, 6);
        assert!(text.contains("reading… (every 250ms)"), "{text}");
        assert!(text.contains("(reading…)"), "{text}");
        assert!(text.contains("none found yet"), "{text}");
        m.apply(Snapshot::default());
        m.apply_error("no durable catalog at mem://x".to_owned());
        let text = screen(&m, 100, 6);
        assert!(text.contains("(no collections in the catalog)"), "{text}");
        assert!(
            text.contains("error: no durable catalog at mem://x"),
            "{text}"
        );
    }

    #[test]
    fn scrolled_rows_start_at_the_offset() {
        let mut m = model();
        m.scroll(1);
        let text = screen(&m, 160, 12);
        assert!(!text.lines().any(|l| l.starts_with("u1 ")), "{text}");
        assert!(text.lines().any(|l| l.starts_with("u2 ")), "{text}");
    }
}
