//! A local S3 server for the S3 tests: `moto_server` from PyPI, installed on first use
//! into a venv kept beside the cargo target directory, and bound to 127.0.0.1. The same
//! venv holds pyarrow, the outside Parquet reader the part-format tests use
//! (`STRATA_PYTHON`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The bucket every S3 test uses; created empty when the server starts.
const BUCKET: &str = "strata-test";

/// A running `moto_server`, killed on drop.
pub(crate) struct MotoServer {
    child: Child,
    port: u16,
    /// The venv's interpreter, which can import pyarrow.
    python: PathBuf,
}

impl MotoServer {
    /// Installs moto if needed, starts it on a free loopback port and creates the bucket.
    pub(crate) fn start(root: &Path) -> anyhow::Result<MotoServer> {
        let venv = venv_dir(root);
        let server = venv.join("bin/moto_server");
        if !server.exists() || !has_packages(&venv) {
            install(&venv)?;
        }
        let port = free_port()?;
        let log_path = crate::target_dir(root).join("moto_server.log");
        if let Some(parent) = log_path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", server.display()))?;
        let python = venv.join("bin/python");
        let mut moto = MotoServer {
            child,
            port,
            python,
        };
        moto.wait_ready()
            .with_context(|| format!("moto_server did not come up; see {}", log_path.display()))?;
        moto.create_bucket()?;
        eprintln!("xtask: moto_server listening on 127.0.0.1:{port}, bucket {BUCKET}");
        Ok(moto)
    }

    /// The environment that points the S3 backend and its tests at this server.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("STRATA_PYTHON", self.python.to_string_lossy().into_owned()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("STRATA_S3_TEST_BUCKET", BUCKET.into()),
        ]
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("moto_server exited early with {status}");
            }
            if self.request("GET", "/").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("timed out after 60 s")
    }

    fn create_bucket(&self) -> anyhow::Result<()> {
        let status = self.request("PUT", &format!("/{BUCKET}"))?;
        if !(200..300).contains(&status) {
            bail!("creating bucket {BUCKET} answered HTTP {status}");
        }
        Ok(())
    }

    /// A bare HTTP/1.1 request with an empty body; returns the status code.
    fn request(&self, method: &str, path: &str) -> anyhow::Result<u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .context("malformed HTTP response from moto_server")?;
        Ok(status)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn venv_dir(root: &Path) -> PathBuf {
    std::env::var_os("STRATA_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::target_dir(root).join("moto-venv"))
}

/// The packages the venv must hold.
const PACKAGES: [&str; 2] = ["moto[server]>=5.1", "pyarrow>=15"];

/// Whether the venv's interpreter can import every package (a venv made before a
/// package joined [`PACKAGES`] gets it installed).
fn has_packages(venv: &Path) -> bool {
    Command::new(venv.join("bin/python"))
        .args(["-c", "import moto, pyarrow"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn install(venv: &Path) -> anyhow::Result<()> {
    eprintln!("xtask: installing {PACKAGES:?} into {}", venv.display());
    if !venv.join("bin/pip").exists() {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        crate::shell::run(
            Command::new(&python).args(["-m", "venv"]).arg(venv),
            "python3 -m venv",
        )?;
    }
    crate::shell::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PACKAGES),
        "pip install moto[server] pyarrow",
    )
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
