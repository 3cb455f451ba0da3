//! The terminal side of `strata top`: raw mode and the alternate screen for as long as
//! a [`TerminalGuard`] lives (restored on drop, on error and on panic), and the loop
//! that reads keys and redraws when a refresh arrives.

use std::io::{Stdout, Write};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use super::model::{Snapshot, TopModel};
use super::render;

/// How often the loop looks for keys and refreshes.
const TICK: Duration = Duration::from_millis(50);

/// Puts the terminal back as it was: cooked mode, main screen, visible cursor. Safe to
/// call more than once.
pub(crate) fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        terminal::LeaveAlternateScreen,
        cursor::Show
    );
}

/// The terminal in raw mode on the alternate screen; restores it on drop.
pub(crate) struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    /// Takes over the terminal. A panic restores it before the panic message prints.
    pub(crate) fn enter() -> anyhow::Result<TerminalGuard> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        let mut stdout = std::io::stdout();
        if let Err(e) = execute!(stdout, terminal::EnterAlternateScreen, cursor::Hide) {
            restore();
            return Err(e).context("cannot switch to the alternate screen");
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore();
                Err(e).context("cannot draw on the terminal")
            }
        }
    }

    fn draw(&mut self, model: &TopModel) -> anyhow::Result<()> {
        self.terminal
            .draw(|frame| render::draw(frame, model))
            .context("cannot draw on the terminal")?;
        Ok(())
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = self.terminal.backend_mut().flush();
        restore();
    }
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Leave `top`.
    Quit,
    /// Scroll the table by this many rows.
    Scroll(isize),
    /// Switch between times of day and raw timestamps.
    ToggleRaw,
    /// Nothing.
    None,
}

/// The action of a key: `q`, Esc and Ctrl-C quit; arrows, `j`/`k` and page keys scroll;
/// `r` switches between times of day and raw timestamps.
pub(crate) fn action(key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::None;
    }
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('q' | 'Q') | KeyCode::Esc => Action::Quit,
        KeyCode::Down | KeyCode::Char('j') => Action::Scroll(1),
        KeyCode::Up | KeyCode::Char('k') => Action::Scroll(-1),
        KeyCode::PageDown => Action::Scroll(10),
        KeyCode::PageUp => Action::Scroll(-10),
        KeyCode::Char('r') => Action::ToggleRaw,
        _ => Action::None,
    }
}

/// One refresh's outcome, from the loader.
pub(crate) type Refresh = Result<Snapshot, String>;

/// Runs the view until a quit key, or until the loader stops.
pub(crate) fn run(
    guard: &mut TerminalGuard,
    model: &mut TopModel,
    refreshes: &Receiver<Refresh>,
) -> anyhow::Result<()> {
    guard.draw(model)?;
    loop {
        let mut dirty = false;
        if event::poll(TICK).context("cannot read the terminal")? {
            match event::read().context("cannot read the terminal")? {
                Event::Key(key) => match action(key) {
                    Action::Quit => return Ok(()),
                    Action::Scroll(delta) => {
                        model.scroll(delta);
                        dirty = true;
                    }
                    Action::ToggleRaw => {
                        model.raw = !model.raw;
                        dirty = true;
                    }
                    Action::None => {}
                },
                Event::Resize(..) => dirty = true,
                _ => {}
            }
        }
        loop {
            match refreshes.try_recv() {
                Ok(Ok(snapshot)) => model.apply(snapshot),
                Ok(Err(error)) => model.apply_error(error),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    anyhow::bail!("the reader of {} stopped", model.url)
                }
            }
            dirty = true;
        }
        if dirty {
            guard.draw(model)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn keys_table() {
        let none = KeyModifiers::NONE;
        for (k, want) in [
            (key(KeyCode::Char('q'), none), Action::Quit),
            (key(KeyCode::Char('Q'), KeyModifiers::SHIFT), Action::Quit),
            (key(KeyCode::Esc, none), Action::Quit),
            (key(KeyCode::Char('c'), KeyModifiers::CONTROL), Action::Quit),
            (key(KeyCode::Char('c'), none), Action::None),
            (key(KeyCode::Down, none), Action::Scroll(1)),
            (key(KeyCode::Char('k'), none), Action::Scroll(-1)),
            (key(KeyCode::PageDown, none), Action::Scroll(10)),
            (key(KeyCode::Char('r'), none), Action::ToggleRaw),
            (key(KeyCode::Char('x'), none), Action::None),
        ] {
            assert_eq!(action(k), want, "{k:?}");
        }
        let mut release = key(KeyCode::Char('q'), none);
        release.kind = KeyEventKind::Release;
        assert_eq!(action(release), Action::None);
    }
}
