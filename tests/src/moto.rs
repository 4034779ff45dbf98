//! moto's server mode (`pip install 'moto[server]'`): a real ECS API implementation on a
//! free loopback port, driven over its JSON protocol (`X-Amz-Target`), so the end-to-end
//! crate needs no AWS SDK of its own. moto does not check signatures.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A running `moto_server`, killed and reaped on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts moto; new ECS services report `running` tasks (moto's
    /// `MOTO_ECS_SERVICE_RUNNING`). `None` (skip) when `moto_server` is missing, or a panic
    /// with `SIGHTLINE_E2E_REQUIRED=1`.
    pub fn start(running: u32) -> Option<Moto> {
        let required = std::env::var("SIGHTLINE_E2E_REQUIRED").is_ok_and(|v| v == "1");
        let port = crate::free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_ECS_SERVICE_RUNNING", running.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                let why = format!("moto_server not runnable ({e}); pip install 'moto[server]'");
                if required {
                    panic!("{why} (SIGHTLINE_E2E_REQUIRED=1)");
                }
                eprintln!("SKIPPED: {why}; set SIGHTLINE_E2E_REQUIRED=1 to make this a failure");
                return None;
            }
        };
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    /// Calls one ECS action (`CreateCluster`, `DescribeServices`, …) with a JSON body.
    pub fn ecs(&self, action: &str, body: Value) -> Value {
        let mut resp = ureq::post(&self.endpoint)
            .header(
                "X-Amz-Target",
                &format!("AmazonEC2ContainerServiceV20141113.{action}"),
            )
            .header("Content-Type", "application/x-amz-json-1.1")
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20261121/us-east-1/ecs/aws4_request, \
                 SignedHeaders=host, Signature=0",
            )
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("ECS {action}: {e}"));
        resp.body_mut().read_json().unwrap()
    }

    /// Creates cluster `cluster` and service `service` (one busybox container) with
    /// `desired` tasks.
    pub fn create_service(&self, cluster: &str, service: &str, desired: u32) {
        self.ecs("CreateCluster", json!({ "clusterName": cluster }));
        self.ecs(
            "RegisterTaskDefinition",
            json!({
                "family": service,
                "containerDefinitions": [{ "name": "app", "image": "busybox", "memory": 64 }]
            }),
        );
        self.ecs(
            "CreateService",
            json!({
                "cluster": cluster,
                "serviceName": service,
                "taskDefinition": service,
                "desiredCount": desired
            }),
        );
    }

    /// `desiredCount` of the service, as `DescribeServices` reports it.
    pub fn desired_count(&self, cluster: &str, service: &str) -> u64 {
        let out = self.ecs(
            "DescribeServices",
            json!({ "cluster": cluster, "services": [service] }),
        );
        out["services"][0]["desiredCount"]
            .as_u64()
            .unwrap_or_else(|| panic!("DescribeServices: {out}"))
    }
}
