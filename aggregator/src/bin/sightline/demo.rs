//! The `--demo` workload: three services — `frontend` → `checkout` → `payments` — that pass
//! a correlation ID along with each request, like Jaeger's HotROD.
//!
//! With a reachable Docker engine and Debian's static busybox, they are real containers
//! (image `sightline-demo:latest`, built `FROM scratch`) handing request IDs to each other
//! through named pipes on a shared volume, logging through Docker's json-file driver.
//! Otherwise they are tasks of this process writing Docker's json-file format into a
//! temporary containers directory, which the collector then reads instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

const IMAGE: &str = "sightline-demo:latest";
const SERVICES: [&str; 3] = ["frontend", "checkout", "payments"];

/// How the demo runs; dropping it stops the workload.
pub enum Demo {
    /// Real containers (removed on drop).
    Containers {
        /// Container names.
        names: Vec<String>,
        /// Directory holding the named pipes.
        _pipes: tempfile::TempDir,
    },
    /// Simulated containers under this containers directory.
    Simulated {
        /// The temporary containers directory.
        root: tempfile::TempDir,
    },
}

impl Demo {
    /// The containers directory the collector must read, when it is not the host's.
    pub fn containers_dir(&self) -> Option<PathBuf> {
        match self {
            Demo::Containers { .. } => None,
            Demo::Simulated { root } => Some(root.path().to_path_buf()),
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Demo::Containers { names, .. } = self {
            remove_containers(names);
        }
    }
}

/// Force-removes the demo's containers, retrying those the engine still lists: a busy engine
/// can refuse one removal ("removal already in progress", a kill that times out), and a
/// container left behind would keep running after `sightline up` has exited.
fn remove_containers(names: &[String]) {
    let mut left: Vec<String> = names.to_vec();
    for attempt in 1..=5 {
        let out = Command::new("docker")
            .arg("rm")
            .arg("-f")
            .args(left.iter())
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "demo: docker rm -f (attempt {attempt}): {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("demo: cannot run docker rm -f: {e}"),
        }
        // Gone only when the engine says so: an engine too busy to answer keeps it listed.
        left.retain(|name| {
            Command::new("docker")
                .args([
                    "inspect",
                    "--type",
                    "container",
                    "--format",
                    "{{.Id}}",
                    name,
                ])
                .stdin(Stdio::null())
                .output()
                .map_or(true, |o| {
                    o.status.success()
                        || !String::from_utf8_lossy(&o.stderr).contains("No such container")
                })
        });
        if left.is_empty() {
            return;
        }
        if attempt < 5 {
            std::thread::sleep(Duration::from_millis(500 * attempt));
        }
    }
    eprintln!("demo: containers not removed: {}", left.join(", "));
}

fn docker_available() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn static_busybox() -> Option<PathBuf> {
    let p = PathBuf::from(std::env::var_os("SIGHTLINE_BUSYBOX").unwrap_or("/bin/busybox".into()));
    let out = Command::new("ldd").arg(&p).output().ok()?;
    // ldd says "not a dynamic executable" for a static binary.
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (p.exists() && text.contains("not a dynamic executable")).then_some(p)
}

/// Starts the demo: real containers when possible, else simulated ones.
pub fn start(shutdown: CancellationToken) -> std::io::Result<Demo> {
    if docker_available() {
        if let Some(busybox) = static_busybox() {
            match start_containers(&busybox) {
                Ok(d) => return Ok(d),
                Err(e) => eprintln!("demo: cannot start containers ({e}); simulating them instead"),
            }
        } else {
            eprintln!(
                "demo: no static busybox (apt-get install busybox-static); simulating containers"
            );
        }
    } else {
        eprintln!("demo: no Docker engine reachable; simulating containers");
    }
    start_simulated(shutdown)
}

fn run(cmd: &mut Command) -> std::io::Result<String> {
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn start_containers(busybox: &Path) -> std::io::Result<Demo> {
    let ctx = tempfile::tempdir()?;
    let bin = ctx.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    std::fs::copy(busybox, bin.join("busybox"))?;
    for applet in ["sh", "sleep", "cat", "echo"] {
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\nCOPY bin /bin\nENTRYPOINT [\"/bin/sh\", \"-c\"]\n",
    )?;
    run(Command::new("docker")
        .args(["build", "-q", "-t", IMAGE])
        .arg(ctx.path())
        .env("DOCKER_BUILDKIT", "0"))?;
    let pipes = tempfile::tempdir()?;
    for p in ["checkout.fifo", "payments.fifo"] {
        run(Command::new("mkfifo").arg(pipes.path().join(p)))?;
    }
    // Docker stamps a line when its per-container log copier reads it, so each service pauses
    // 50 ms before handing the request on: the stamps then follow the request path. A reader
    // that opens a pipe just as a writer closes it reads nothing: skip empty reads.
    let scripts = [
        r#"i=0; while true; do i=$((i+1)); id=demo-req-$i; echo "{\"level\":\"info\",\"correlation_id\":\"$id\",\"hop\":0,\"msg\":\"POST /checkout accepted\"}"; sleep 0.05; echo $id > /demo/checkout.fifo; sleep 1; done"#,
        r#"while true; do read id < /demo/checkout.fifo || continue; [ -n "$id" ] || continue; echo "INFO x-correlation-id=$id hop=1 reserved 3 items"; sleep 0.05; echo $id > /demo/payments.fifo; done"#,
        r#"n=0; while true; do read id < /demo/payments.fifo || continue; [ -n "$id" ] || continue; n=$((n+1)); if [ $((n % 5)) -eq 0 ]; then echo "ERROR x-correlation-id=$id hop=2 card declined" >&2; else echo "INFO x-correlation-id=$id hop=2 charged 42.00 EUR"; fi; done"#,
    ];
    let suffix = std::process::id();
    let mut names = Vec::new();
    // Start consumers of the pipes first.
    for (svc, script) in SERVICES.iter().zip(scripts).rev() {
        let name = format!("sightline-demo-{svc}-{suffix}");
        let started = run(Command::new("docker")
            .args(["run", "-d", "--log-driver", "json-file", "--name", &name])
            .args(["--label", &format!("com.docker.compose.service={svc}")])
            .arg("-v")
            .arg(format!("{}:/demo", pipes.path().display()))
            .args([IMAGE, script]));
        if let Err(e) = started {
            // The demo falls back to simulated containers: leave no real ones behind.
            names.push(name);
            remove_containers(&names);
            return Err(e);
        }
        names.push(name);
    }
    eprintln!("demo: started containers {}", names.join(", "));
    Ok(Demo::Containers {
        names,
        _pipes: pipes,
    })
}

/// One simulated container: its folder and json-file log.
struct SimContainer {
    log: std::fs::File,
}

impl SimContainer {
    fn create(root: &Path, service: &str) -> std::io::Result<Self> {
        let hex: String = service.bytes().map(|b| format!("{b:02x}")).collect();
        let id = format!("{hex:0>64}");
        let dir = root.join(&id);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join("config.v2.json"),
            format!(
                r#"{{"ID":"{id}","Name":"/demo-{service}-1","Config":{{"Image":"sightline-demo","Labels":{{"com.docker.compose.service":"{service}"}}}}}}"#
            ),
        )?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{id}-json.log")))?;
        Ok(SimContainer { log })
    }

    fn write(&mut self, stream: &str, text: &str) -> std::io::Result<()> {
        let now = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let line = serde_json::json!({"log": format!("{text}\n"), "stream": stream, "time": now});
        writeln!(self.log, "{line}")
    }
}

fn start_simulated(shutdown: CancellationToken) -> std::io::Result<Demo> {
    let root = tempfile::tempdir()?;
    let mut services = SERVICES
        .iter()
        .map(|s| SimContainer::create(root.path(), s))
        .collect::<std::io::Result<Vec<_>>>()?;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        for i in 1u64.. {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let id = format!("demo-req-{i}");
            let lines = [
                (
                    0,
                    "stdout",
                    format!(
                        r#"{{"level":"info","correlation_id":"{id}","hop":0,"msg":"POST /checkout accepted"}}"#
                    ),
                ),
                (
                    1,
                    "stdout",
                    format!("INFO x-correlation-id={id} hop=1 reserved 3 items"),
                ),
                if i % 5 == 0 {
                    (
                        2,
                        "stderr",
                        format!("ERROR x-correlation-id={id} hop=2 card declined"),
                    )
                } else {
                    (
                        2,
                        "stdout",
                        format!("INFO x-correlation-id={id} hop=2 charged 42.00 EUR"),
                    )
                },
            ];
            for (svc, stream, text) in lines {
                if let Err(e) = services[svc].write(stream, &text) {
                    eprintln!("demo: cannot write log: {e}");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    eprintln!(
        "demo: simulating containers under {}",
        root.path().display()
    );
    Ok(Demo::Simulated { root })
}
