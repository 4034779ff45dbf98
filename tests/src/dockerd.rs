//! A private Docker engine for tests that stop and restart the engine itself: its own
//! `dockerd` process with its own socket, data root (so its own `containers/` directory of
//! json-file logs), exec root, managed containerd (or, where a system containerd runs, its
//! own namespaces in it), no bridge network and no iptables rules, in a network namespace
//! of its own (`unshare --net`): with `--bridge none` dockerd deletes any interface named
//! `docker0` in its namespace, which in the host's would be the machine engine's bridge.
//! The machine's engine, which every other test uses, is never touched.
//!
//! Needs root (dockerd mounts overlay file systems); [`PrivateEngine::start`] returns `None`
//! (the test skips) without it, or panics when `SIGHTLINE_E2E_REQUIRED=1`. Dropping it
//! removes its containers, stops it and deletes everything it wrote.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_for;

/// A `dockerd` of the test's own; see the module docs.
pub struct PrivateEngine {
    root: tempfile::TempDir,
    log_dir: PathBuf,
    starts: u32,
    child: Option<Child>,
}

impl PrivateEngine {
    /// Starts the engine and waits (up to 60 s) until it answers. `log_dir` receives
    /// `dockerd.log` (appended across restarts).
    pub fn start(log_dir: &Path) -> Option<PrivateEngine> {
        let required = std::env::var("SIGHTLINE_E2E_REQUIRED").is_ok_and(|v| v == "1");
        let is_root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let has = |cmd: &str| {
            Command::new(cmd)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !(is_root && has("dockerd") && has("unshare")) {
            let why = "a private dockerd needs root, dockerd and unshare (util-linux)";
            assert!(!required, "{why} (SIGHTLINE_E2E_REQUIRED=1)");
            eprintln!("SKIPPED: {why}");
            return None;
        }
        // Short paths: the sockets under it must stay within 108 bytes.
        let root = tempfile::Builder::new()
            .prefix("sl-dockerd-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        // The machine's /etc/docker/daemon.json may set data-root or a storage driver of its
        // own; an empty config file keeps this engine's settings to its command line.
        std::fs::write(root.path().join("daemon.json"), "{}").unwrap();
        let mut e = PrivateEngine {
            root,
            log_dir: log_dir.to_path_buf(),
            starts: 0,
            child: None,
        };
        e.up();
        Some(e)
    }

    /// The engine's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.root.path().join("docker.sock")
    }

    /// The containerd namespace of this engine: the temp dir's name (`sl-dockerd-…`).
    fn namespace(&self) -> String {
        let name = self.root.path().file_name().unwrap_or_default();
        name.to_string_lossy().to_lowercase()
    }

    /// A `docker -H <this engine>` command that gives up after `secs` (a hung engine must
    /// fail the test, not hang it).
    fn docker_cmd(&self, secs: u32) -> Command {
        let mut c = Command::new("timeout");
        c.args([&secs.to_string(), "docker", "-H", &self.host()])
            .stdin(Stdio::null());
        c
    }

    /// `unix://<socket>`, for `docker -H` and `$DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// Where this engine keeps containers' json-file logs (`<data-root>/containers`).
    pub fn containers_dir(&self) -> PathBuf {
        self.root.path().join("data").join("containers")
    }

    /// Runs `docker -H <this engine> args…`; panics with its stderr when it fails. Returns
    /// its trimmed stdout.
    pub fn docker(&self, args: &[&str]) -> String {
        let out = self.docker_cmd(120).args(args).output().expect("docker");
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Whether the engine answers `docker version`.
    pub fn answers(&self) -> bool {
        self.docker_cmd(10)
            .args(["version", "--format", "{{.Server.Version}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts `dockerd` (again) and waits until it answers.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "engine already running");
        let r = self.root.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join("dockerd.log"))
            .expect("dockerd log");
        let child = Command::new("unshare")
            .args(["--net", "dockerd"])
            .arg("--config-file")
            .arg(r.join("daemon.json"))
            .arg("--host")
            .arg(self.host())
            .arg("--data-root")
            .arg(r.join("data"))
            .arg("--exec-root")
            .arg(r.join("exec"))
            .arg("--pidfile")
            .arg(r.join("docker.pid"))
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            // Its own managed containerd (under the exec root) unless a system containerd
            // exists; then at least its own namespaces there, apart from the machine engine's.
            .args(["--containerd-namespace", &self.namespace()])
            .args([
                "--containerd-plugins-namespace",
                &format!("{}-plugins", self.namespace()),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dockerd log"))
            .stderr(log)
            .spawn()
            .expect("dockerd");
        self.child = Some(child);
        self.starts += 1;
        if wait_for(Duration::from_secs(60), || self.answers().then_some(())).is_none() {
            let text =
                std::fs::read_to_string(self.log_dir.join("dockerd.log")).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            panic!(
                "private dockerd (start {}) did not answer within 60 s:\n{}",
                self.starts,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }

    /// Stops `dockerd` as a service manager does (SIGTERM; the engine stops its containers,
    /// which without live-restore all exit) and waits up to 90 s for it to exit.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let exited = wait_for(Duration::from_secs(90), || child.try_wait().ok().flatten());
        if exited.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateEngine {
    fn drop(&mut self) {
        if self.child.is_some() {
            // Containers first, so that stopping the engine does not wait on them.
            let ids = self
                .docker_cmd(30)
                .args(["ps", "-aq"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
                .unwrap_or_default();
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let _ = self.docker_cmd(60).args(["rm", "-f"]).args(&ids).output();
            }
            self.stop();
        }
        // dockerd leaves its data root bind-mounted (made private for overlay2), and a killed
        // one may leave overlay mounts: unmount all below the root, deepest first.
        let root = self.root.path().to_string_lossy().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut below: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| *m == root || m.starts_with(&format!("{root}/")))
            .collect();
        below.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in below {
            let _ = Command::new("umount").args(["-l", m]).output();
        }
    }
}
