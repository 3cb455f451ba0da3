//! A local PostgreSQL server for the Postgres source's tests: the Debian `postgresql`
//! package's binaries (which `.ci/run` installs when they are missing), a fresh
//! `initdb` cluster in a new directory under the system's temporary directory, with
//! `wal_level=logical`, on 127.0.0.1 and a free port, stopped and removed on drop.
//!
//! `initdb` refuses to run as root, so as root the cluster belongs to a system user
//! `strata-pg` (created if missing) and every server command runs as that user.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The unprivileged user that owns the cluster when xtask runs as root.
const USER: &str = "strata-pg";

/// A running server, stopped (and its directory removed) on drop.
pub(crate) struct PostgresServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_user: Option<&'static str>,
}

impl PostgresServer {
    /// Creates a cluster and starts it.
    pub(crate) fn start() -> anyhow::Result<PostgresServer> {
        let bin = binaries().context(
            "no PostgreSQL server binaries under /usr/lib/postgresql (install the Debian \
             `postgresql` package; .ci/run does)",
        )?;
        // Under the temporary directory, which the server's user can reach (a target
        // directory under root's home is not).
        let dir = std::env::temp_dir().join(format!("strata-postgres-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        let as_user = if is_root()? {
            ensure_user()?;
            chown(&dir)?;
            Some(USER)
        } else {
            None
        };
        let port = free_port()?;
        let server = PostgresServer {
            bin,
            dir,
            port,
            as_user,
        };
        let data = server.dir.join("data");
        server.run(
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -c wal_level=logical \
             -c max_replication_slots=32 -c max_wal_senders=32 -c fsync=off \
             -c unix_socket_directories={}",
            server.dir.display()
        );
        let log = server.dir.join("server.log");
        server
            .run(
                "pg_ctl",
                &[
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    &data.to_string_lossy(),
                    "-l",
                    &log.to_string_lossy(),
                    "-o",
                    &options,
                ],
            )
            .with_context(|| format!("PostgreSQL did not start; see {}", log.display()))?;
        eprintln!(
            "xtask: PostgreSQL ({}) listening on 127.0.0.1:{port}, wal_level=logical",
            server.bin.display()
        );
        // Stop the cluster if anything below fails: `server` drops.
        Ok(server)
    }

    /// The environment that points the Postgres tests at this server: its URL, and a
    /// shell command that restarts it (for the tests of a restart mid-stream).
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.dir.join("data");
        let log = self.dir.join("server.log");
        let restart = format!(
            "{}{} restart -w -t 60 -m fast -D {} -l {}",
            self.as_user
                .map(|user| format!("runuser -u {user} -- "))
                .unwrap_or_default(),
            pg_ctl.display(),
            data.display(),
            log.display()
        );
        vec![
            (
                "STRATA_TEST_POSTGRES_URL",
                format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            ),
            ("STRATA_TEST_POSTGRES_RESTART", restart),
        ]
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match self.as_user {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(path);
                cmd
            }
            None => Command::new(path),
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<()> {
        let output = self
            .command(program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {program}"))?;
        if !output.status.success() {
            bail!(
                "{program} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.run(
            "pg_ctl",
            &["stop", "-m", "immediate", "-D", &data.to_string_lossy()],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb` and `pg_ctl`.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> anyhow::Result<bool> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .context("running id -u")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

fn ensure_user() -> anyhow::Result<()> {
    let exists = Command::new("id")
        .arg(USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?
        .success();
    if !exists {
        let status = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                USER,
            ])
            .status()
            .context("running useradd")?;
        if !status.success() {
            bail!("useradd {USER} failed with {status}");
        }
    }
    Ok(())
}

/// Gives the cluster directory to the server's user.
fn chown(dir: &Path) -> anyhow::Result<()> {
    let status = Command::new("chown")
        .args([
            &format!("{USER}:{USER}"),
            &dir.to_string_lossy().into_owned(),
        ])
        .status()
        .context("running chown")?;
    if !status.success() {
        bail!("chown of {} failed with {status}", dir.display());
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
