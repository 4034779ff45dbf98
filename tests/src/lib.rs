//! End-to-end test harness: real containers on the local Docker engine, a real Kafka-protocol
//! broker process (`tansu`), and Sightline's own binaries, talked to over HTTP.
//!
//! - [`Env`]: whether Docker and tansu are usable; with `SIGHTLINE_E2E_REQUIRED=1` (set by
//!   `.ci/run`) a missing one fails the test instead of skipping it.
//! - [`Broker`]: a tansu broker on a free loopback port, in-memory storage.
//! - [`Proc`]: a child process killed on drop (SIGKILL on demand, for crash tests).
//! - [`docker`]: the `FROM scratch` busybox test image and container helpers.
//! - [`dockerd`]: a private Docker engine the test may stop and restart.
//! - [`api`]: the query API client.
//! - [`moto`]: moto's ECS API server, for autoscaling.
//! - [`webhook`]: a webhook receiver that keeps what notifications POST.

pub mod api;
pub mod docker;
pub mod dockerd;
pub mod kafka;
pub mod moto;
pub mod proxy;
pub mod webhook;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Path of one of Sightline's binaries: `$SIGHTLINE_BIN_DIR/<name>`, else `target/debug/<name>`
/// (built by the README's test command before the tests run).
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("SIGHTLINE_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| repo_root().join("target"))
                .join("debug")
        });
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace --bins` first",
        p.display()
    );
    p
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 100 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the machine offers for end-to-end tests.
pub struct Env {
    /// The tansu binary.
    pub tansu: PathBuf,
}

fn find_tansu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SIGHTLINE_TANSU") {
        return Some(PathBuf::from(p));
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("tansu"))
        .find(|p| p.exists())
}

impl Env {
    /// `Some` when Docker answers and tansu is installed. Otherwise `None` (the caller skips),
    /// or a panic when `SIGHTLINE_E2E_REQUIRED=1`.
    pub fn get() -> Option<Env> {
        let required = std::env::var("SIGHTLINE_E2E_REQUIRED").is_ok_and(|v| v == "1");
        let docker_ok = Command::new("docker")
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let tansu = find_tansu();
        let missing = match (docker_ok, &tansu) {
            (true, Some(_)) => None,
            (false, _) => Some("no reachable Docker engine"),
            (_, None) => Some("no tansu broker binary (cargo install tansu --features dynostore)"),
        };
        if let Some(why) = missing {
            if required {
                panic!("end-to-end test cannot run: {why} (SIGHTLINE_E2E_REQUIRED=1)");
            }
            eprintln!("SKIPPED: {why}; set SIGHTLINE_E2E_REQUIRED=1 to make this a failure");
            return None;
        }
        Some(Env {
            tansu: tansu.unwrap(),
        })
    }
}

/// A child process, killed (SIGKILL) and reaped on drop.
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Label for messages.
    pub name: String,
}

impl Proc {
    /// Starts `cmd`; its stderr goes to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(format!("{name}.log")))
            .unwrap();
        cmd.stdout(log.try_clone().unwrap()).stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait up to `timeout` for a clean exit; true when it exited cleanly.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let exited = wait_for(timeout, || self.child.try_wait().ok().flatten());
        match exited {
            Some(s) => s.success(),
            None => {
                self.kill9();
                false
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A tansu broker on a free loopback port with in-memory storage.
pub struct Broker {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    _proc: Proc,
}

impl Broker {
    /// Starts tansu and waits until its port accepts connections.
    pub fn start(env: &Env, log_dir: &Path) -> Broker {
        let port = free_port();
        Self::spawn(env, log_dir, port, port)
    }

    /// Starts tansu behind a [`proxy::Proxy`]: clients bootstrap through the proxy and the
    /// broker advertises the proxy's port, so pausing the proxy cuts every client off.
    pub fn start_behind_proxy(env: &Env, log_dir: &Path) -> (Broker, proxy::Proxy) {
        let port = free_port();
        let proxy = proxy::Proxy::start(format!("127.0.0.1:{port}"));
        let mut broker = Self::spawn(env, log_dir, port, proxy.port);
        broker.addr = format!("127.0.0.1:{}", proxy.port);
        (broker, proxy)
    }

    fn spawn(env: &Env, log_dir: &Path, port: u16, advertised: u16) -> Broker {
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let mut cmd = Command::new(&env.tansu);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &advertised,
            "--storage-engine",
            "memory://tansu/",
        ]);
        let proc = Proc::spawn("tansu", cmd, log_dir);
        let addr = format!("127.0.0.1:{port}");
        wait_for(Duration::from_secs(30), || TcpStream::connect(&addr).ok())
            .expect("tansu did not start listening");
        Broker { addr, _proc: proc }
    }
}

/// A unique suffix for names in one test run (containers, topics, correlation IDs).
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", std::process::id(), nanos % 0xffff_ffff)
}

/// The collector's `/metrics` page (Prometheus text) on `127.0.0.1:port`, if it answers.
pub fn scrape(port: u16) -> Option<String> {
    ureq::get(format!("http://127.0.0.1:{port}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()
}

/// The value of the sample `metric` (its name and labels as written, e.g.
/// `sightline_collector_spool_bytes`) on the collector's `/metrics` page, if present.
pub fn scrape_value(port: u16, metric: &str) -> Option<f64> {
    scrape(port)?.lines().find_map(|l| {
        l.strip_prefix(metric)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}
