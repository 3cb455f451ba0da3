//! Shared helpers of the binary's tests: run `strata`, read what it printed.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStderr, Command, Output, Stdio};

/// The built `strata` binary, with a clean environment for its logs and AWS settings.
pub fn strata() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strata"));
    command.env_remove("RUST_LOG");
    command.env("RUST_BACKTRACE", "0");
    command
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(command: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap();
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// The run failed with exit code 1 and exactly one stderr line, `error: …` containing
/// every one of `needles`, and no panic output.
pub fn assert_one_line_error(run: &Run, needles: &[&str]) {
    assert_eq!(run.code, Some(1), "{run:?}");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line: {run:?}");
    assert!(lines[0].starts_with("error: "), "{run:?}");
    for needle in needles {
        assert!(lines[0].contains(needle), "missing {needle:?}: {run:?}");
    }
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    assert!(!run.stderr.contains("RUST_BACKTRACE"), "{run:?}");
}

/// A `file://` URL of `path`.
pub fn file_url(path: &std::path::Path) -> String {
    format!("file://{}", path.display())
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `strata replica`, killed on drop if still running.
pub struct ReplicaProcess {
    pub child: Child,
    pub addr: String,
    pub stderr: BufReader<ChildStderr>,
}

impl ReplicaProcess {
    /// Starts `strata replica --listen 127.0.0.1:0` with `extra` arguments and waits
    /// for its "listening on" line.
    // The child escapes into `ReplicaProcess`, whose `Drop` waits for it.
    #[allow(clippy::zombie_processes)]
    pub fn start(persist: &str, extra: &[&str]) -> ReplicaProcess {
        let mut child = strata()
            .args(["replica", "--listen", "127.0.0.1:0", "--persist", persist])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                let status = child.wait().unwrap();
                panic!("replica exited ({status}) before listening: {seen}");
            }
            seen.push_str(&line);
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap().to_owned();
                return ReplicaProcess {
                    child,
                    addr,
                    stderr,
                };
            }
        }
    }

    /// Sends SIGTERM with the `kill` command and waits for the exit; returns the exit
    /// code and the rest of stderr.
    pub fn terminate(self) -> (Option<i32>, String) {
        self.signal("TERM")
    }

    /// Sends `signal` (such as `INT`) with the `kill` command and waits for the exit.
    pub fn signal(mut self, signal: &str) -> (Option<i32>, String) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stderr, &mut rest).unwrap();
        let code = self.child.wait().unwrap().code();
        (code, rest)
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
