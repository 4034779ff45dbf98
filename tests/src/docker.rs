//! Docker helpers: the `FROM scratch` test image (Debian's static busybox, no registry
//! needed) and running containers that log through Docker's own json-file driver.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Tag of the test image.
pub const IMAGE: &str = "sightline-testbox:e2e";

const APPLETS: &[&str] = &[
    "sh", "cat", "echo", "printf", "head", "tr", "sleep", "seq", "yes", "wc", "awk", "grep",
];

fn busybox() -> PathBuf {
    std::env::var_os("SIGHTLINE_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/bin/busybox"))
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Builds [`IMAGE`] on the engine at `docker_host` (`unix://…`; `None`: the machine's own):
/// `FROM scratch`, busybox plus applet links, entrypoint `/bin/sh -c`. Needs a *static*
/// busybox (Debian's `busybox-static`).
pub fn build_image(docker_host: Option<&str>) {
    let ctx = tempfile::tempdir().unwrap();
    let bin = ctx.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(busybox(), bin.join("busybox"))
        .expect("busybox binary (apt-get install busybox-static)");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(a)).unwrap();
    }
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin\nENTRYPOINT [\"/bin/sh\", \"-c\"]\n",
    )
    .unwrap();
    let mut cmd = Command::new("docker");
    if let Some(h) = docker_host {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .args(["build", "-q", "-t", IMAGE])
        .arg(ctx.path())
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker build");
    assert!(
        out.status.success(),
        "docker build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds [`IMAGE`] on the machine's engine, once per process.
pub fn ensure_image() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_image(None));
}

/// A container started by a test; removed (with its logs) on drop.
pub struct TestContainer {
    /// Full container ID.
    pub id: String,
}

/// Options for [`run`].
#[derive(Default)]
pub struct RunOpts<'a> {
    /// Container name.
    pub name: &'a str,
    /// Labels (`key=value`).
    pub labels: Vec<String>,
    /// Read-only bind mounts: (host path, container path).
    pub mounts: Vec<(&'a Path, &'a str)>,
    /// Shell script run by `/bin/sh -c`.
    pub script: &'a str,
}

/// Starts a detached container with the json-file driver.
pub fn run(opts: RunOpts<'_>) -> TestContainer {
    ensure_image();
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--log-driver".into(),
        "json-file".into(),
        "--name".into(),
        opts.name.into(),
    ];
    for l in &opts.labels {
        args.push("--label".into());
        args.push(l.clone());
    }
    for (host, inside) in &opts.mounts {
        args.push("-v".into());
        args.push(format!("{}:{inside}:ro", host.display()));
    }
    args.push(IMAGE.into());
    args.push(opts.script.into());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    TestContainer { id: docker(&refs) }
}

impl TestContainer {
    /// Waits for the container to exit; returns its exit code.
    pub fn wait(&self) -> i32 {
        docker(&["wait", &self.id]).parse().unwrap_or(-1)
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.id]).output();
    }
}
