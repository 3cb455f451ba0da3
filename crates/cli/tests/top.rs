//! `strata top` on a real pseudo-terminal: in tmux when it is installed, else (or with
//! `STRATA_TEST_PTY=script`) under util-linux `script`; with neither the test fails.
//! The screen must show every collection of the catalog (one written by hand, with a
//! status history and a frontiers collection; one left by `strata demo`) and the lag
//! column; `q` or Ctrl-C must quit with exit code 0 and give the terminal back.

#![cfg(test)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use strata_controller_api::{
    Antichain, Datum, GlobalId, IntrospectionType, RelationDesc, Row, ShardId, StorageTxn,
    Timestamp,
};
use strata_controller_core::catalog::DurableCatalog;
use strata_introspection::schema::desc;
use strata_persist_backend::PersistClient;
use strata_persist_backend::conformance::{new_shard, test_desc, test_row};

/// How long the screen may take to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn fr(t: u64) -> Antichain<Timestamp> {
    Antichain::from_elem(Timestamp::new(t))
}

/// Writes `rows` at time `at` to a new shard of schema `desc`: its upper is `at + 1`.
async fn shard_with(
    client: &PersistClient,
    desc: RelationDesc,
    rows: Vec<Row>,
    at: u64,
) -> ShardId {
    let shard = new_shard();
    let mut writer = client.open_writer::<Timestamp>(shard, desc).await.unwrap();
    let updates: Vec<_> = rows
        .into_iter()
        .map(|r| (Ok(r), Timestamp::new(at), 1))
        .collect();
    writer
        .compare_and_append(&updates, fr(0), fr(at + 1))
        .await
        .unwrap()
        .unwrap();
    shard
}

fn text(s: &str) -> Datum {
    Datum::String(s.to_owned())
}

/// A location with a catalog of two tables, a frontiers and a status history
/// introspection collection, as a controller leaves it. Returns every collection id.
async fn populate(url: &str) -> Vec<String> {
    let client = PersistClient::open(url).await.unwrap();
    let now = now_ms();
    let u1 = shard_with(&client, test_desc(), vec![test_row(1)], now - 2_000).await;
    let u2 = shard_with(&client, test_desc(), vec![test_row(2)], now - 60_000).await;
    let statuses = vec![
        Row::pack(&[
            Datum::TimestampMillis(now - 5_000),
            text("u1"),
            text("starting"),
            Datum::Null,
            Datum::Null,
            text("r1"),
        ]),
        Row::pack(&[
            Datum::TimestampMillis(now - 4_000),
            text("u1"),
            text("running"),
            Datum::Null,
            Datum::Null,
            text("r1"),
        ]),
    ];
    let s1 = shard_with(
        &client,
        desc(IntrospectionType::SourceStatusHistory),
        statuses,
        now - 1_000,
    )
    .await;
    let frontiers = vec![Row::pack(&[text("u1"), text("[0]"), text("[1]")])];
    let s2 = shard_with(
        &client,
        desc(IntrospectionType::Frontiers),
        frontiers,
        now - 1_000,
    )
    .await;
    let catalog = DurableCatalog::open(&client).await.unwrap();
    let mut txn = catalog.begin::<Timestamp>();
    let ids = BTreeMap::from([
        (GlobalId::User(1), u1),
        (GlobalId::User(2), u2),
        (GlobalId::System(1), s1),
        (GlobalId::System(2), s2),
    ]);
    txn.insert_collection_metadata(ids.clone()).unwrap();
    txn.commit().await.unwrap();
    ids.keys().map(ToString::to_string).collect()
}

/// Text with every escape sequence replaced by a space, so words drawn by separate
/// writes stay separate words.
fn strip_escapes(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        out.push(' ');
        match chars.next() {
            // CSI: parameters, then one final byte in @..~.
            Some('[') => {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: up to BEL or ST.
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A terminal that `strata top` runs in.
enum Screen {
    /// A detached tmux session on a private server socket.
    /// A tmux server on its own socket; the pane's shell writes strata's exit code
    /// to `exit_file` (tmux 3.3 does not always report a dead pane's status).
    Tmux {
        socket: String,
        exit_file: tempfile::TempPath,
    },
    /// `script` giving the child a pty; everything it printed, raw.
    Script {
        child: Child,
        stdin: ChildStdin,
        output: Arc<Mutex<Vec<u8>>>,
    },
}

fn tmux_available() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Screen {
    /// Starts `strata top` on `url` in a 160x50 terminal.
    fn start(url: &str, tag: &str) -> Screen {
        let command = format!(
            "{} top --persist {} --interval 200ms",
            shell_quote(env!("CARGO_BIN_EXE_strata")),
            shell_quote(url)
        );
        // `STRATA_TEST_PTY=script` tries the fallback where tmux is installed.
        let forced_script = std::env::var("STRATA_TEST_PTY").as_deref() == Ok("script");
        if !forced_script && tmux_available() {
            let socket = format!("strata-top-{}-{tag}", std::process::id());
            let exit_file = tempfile::NamedTempFile::new().unwrap().into_temp_path();
            let command = format!(
                "{command}; echo $? > {}.tmp && mv {0}.tmp {0}",
                shell_quote(&exit_file.to_string_lossy())
            );
            let status = Command::new("tmux")
                .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
                .args(["-x", "160", "-y", "50", "-s", "top"])
                .args([";", "set-option", "-g", "remain-on-exit", "on", ";"])
                .args(["respawn-pane", "-k", "-t", "top", &command])
                .env_remove("RUST_LOG")
                .status()
                .unwrap();
            assert!(status.success(), "tmux did not start");
            return Screen::Tmux { socket, exit_file };
        }
        let mut child = Command::new("script")
            .args(["-q", "-f", "-e", "-c"])
            .arg(format!("stty rows 50 cols 160; exec {command}"))
            .arg("/dev/null")
            .env_remove("RUST_LOG")
            .env("TERM", "xterm-256color")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("neither tmux nor util-linux script is installed: cannot give strata top a terminal");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Screen::Script {
            child,
            stdin,
            output,
        }
    }

    fn tmux(socket: &str, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", socket])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// What the screen shows now (for `script`, everything printed so far).
    fn text(&self) -> String {
        match self {
            Screen::Tmux { socket, .. } => {
                Screen::tmux(socket, &["capture-pane", "-p", "-t", "top"])
            }
            Screen::Script { output, .. } => strip_escapes(&output.lock().unwrap()),
        }
    }

    /// Waits until `done(screen)` holds, and returns that screen.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let text = self.text();
            if done(&text) {
                return text;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the screen never showed {what}:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn press(&mut self, key: &str) {
        match self {
            Screen::Tmux { socket, .. } => {
                Screen::tmux(socket, &["send-keys", "-t", "top", key]);
            }
            Screen::Script { stdin, .. } => {
                stdin.write_all(key.as_bytes()).unwrap();
                stdin.flush().unwrap();
            }
        }
    }

    /// Waits for `strata top` to exit and returns its exit code and what the terminal
    /// shows (tmux) or received (script) after it.
    fn wait_exit(&mut self) -> (i32, String) {
        let start = Instant::now();
        loop {
            match self {
                Screen::Tmux { exit_file, .. } => {
                    // The file is renamed into place, so it is whole once it exists.
                    if let Ok(written) = std::fs::read_to_string(&*exit_file)
                        && !written.trim().is_empty()
                    {
                        let code = written.trim().parse().unwrap_or_else(|_| {
                            panic!("the pane wrote a non-numeric exit status: {written}")
                        });
                        return (code, self.text());
                    }
                }
                Screen::Script { child, .. } => {
                    if let Some(status) = child.try_wait().unwrap() {
                        let output = self.raw();
                        return (status.code().unwrap(), output);
                    }
                }
            }
            assert!(start.elapsed() < PATIENCE, "strata top did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn raw(&self) -> String {
        match self {
            Screen::Tmux { .. } => String::new(),
            Screen::Script { output, .. } => {
                String::from_utf8_lossy(&output.lock().unwrap()).into_owned()
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        match self {
            Screen::Tmux { socket, .. } => {
                let _ = Command::new("tmux")
                    .args(["-L", socket, "kill-server"])
                    .status();
            }
            Screen::Script { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Whether `screen` has a line whose first word is `word`.
fn has_row(screen: &str, word: &str) -> bool {
    screen
        .lines()
        .any(|l| l.split_whitespace().next() == Some(word))
}

/// Whether `screen` has the word `word` anywhere.
fn has_word(screen: &str, word: &str) -> bool {
    screen.split_whitespace().any(|w| w == word)
}

/// Runs `strata top` on `dir` until the screen shows every one of `ids` as a row and
/// the lag column (and, with `status`, that word), then quits it with `quit` (a tmux
/// key name and the bytes a terminal sends for it).
fn check_top(dir: &Path, ids: &[String], tag: &str, status: Option<&str>, quit: (&str, &str)) {
    let url = file_url(dir);
    let mut screen = Screen::start(&url, tag);
    let tmux = matches!(screen, Screen::Tmux { .. });
    let shown = screen.wait_for("every collection, its status and the lag column", |s| {
        let rows = ids.iter().all(|id| {
            if tmux {
                has_row(s, id)
            } else {
                has_word(s, id)
            }
        });
        rows && has_word(s, "lag") && status.is_none_or(|w| has_word(s, w))
    });
    if tmux {
        let header = shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some("id"))
            .unwrap_or_else(|| panic!("no header line:\n{shown}"));
        let words: Vec<&str> = header.split_whitespace().collect();
        for column in ["status", "since", "upper", "lag", "shard"] {
            assert!(words.contains(&column), "no {column} column:\n{shown}");
        }
        if let Some(status) = status {
            let u1 = shown.lines().find(|l| l.starts_with("u1 ")).unwrap();
            assert!(has_word(u1, status), "{u1}");
            let u2 = shown.lines().find(|l| l.starts_with("u2 ")).unwrap();
            assert!(has_word(u2, "-"), "u2 has no status rows: {u2}");
        }
    }
    screen.press(if tmux { quit.0 } else { quit.1 });
    let (code, after) = screen.wait_exit();
    assert_eq!(code, 0, "strata top exited with {code}:\n{after}");
    if tmux {
        // Back on the main screen: the table is gone.
        assert!(
            !has_row(&after, "u1"),
            "the view is still on screen:\n{after}"
        );
    } else {
        // Left the alternate screen and showed the cursor again.
        let tail = &after[after
            .rfind("\u{1b}[?1049l")
            .expect("never left the alternate screen")..];
        assert!(tail.contains("\u{1b}[?25h"), "the cursor stayed hidden");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_every_collection_and_the_lag_column_under_a_pty() {
    let dir = tempfile::tempdir().unwrap();
    let ids = populate(&file_url(dir.path())).await;
    let path: PathBuf = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        check_top(&path, &ids, "populated", Some("running"), ("q", "q"));
    })
    .await
    .unwrap();
}

#[test]
fn top_shows_every_demo_collection() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    let demo =
        run(strata()
            .current_dir(dir.path())
            .args(["demo", "--persist", &url, "--duration", "1"]));
    assert_eq!(demo.code, Some(0), "{demo:?}");
    let listed = run(strata().args(["inspect", "collections", "--persist", &url, "--json"]));
    assert_eq!(listed.code, Some(0), "{listed:?}");
    let report: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    let ids: Vec<String> = report["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(ids.len() > 4, "the demo made too few collections: {report}");
    // Ctrl-C quits too: in raw mode it is a key, not a signal.
    check_top(dir.path(), &ids, "demo", None, ("C-c", "\u{3}"));
}
