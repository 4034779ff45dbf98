//! The Docker autoscaling provider on the real engine: a Compose-labelled service with one
//! replica is scaled out to three (copies of the first, numbered and named as Compose
//! does) and back in to one (newest removed first).

use std::process::Command;

use sightline_aggregator::autoscale::{
    DockerConfig, DockerProvider, ProviderError, ScaleContext, ScalingProvider,
};
use sightline_tests::docker::{self, RunOpts, IMAGE};
use sightline_tests::{run_id, Env};

/// Removes every container of the test's Compose project, also on panic.
struct Project(String);
impl Drop for Project {
    fn drop(&mut self) {
        for id in containers(&self.0, true) {
            let _ = Command::new("docker").args(["rm", "-f", &id.0]).output();
        }
    }
}

/// `(id, name, replica number, running)` of the project's containers, by replica number.
fn containers(project: &str, all: bool) -> Vec<(String, String, String, bool)> {
    let mut args = vec!["ps", "--no-trunc"];
    if all {
        args.push("-a");
    }
    let filter = format!("label=com.docker.compose.project={project}");
    args.extend([
        "--filter",
        &filter,
        "--format",
        "{{.ID}} {{.Names}} {{.Label \"com.docker.compose.container-number\"}} {{.State}}",
    ]);
    let out = Command::new("docker").args(&args).output().unwrap();
    let mut v: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].to_string(),
                f[3] == "running",
            )
        })
        .collect();
    v.sort_by(|a, b| a.2.cmp(&b.2));
    v
}

fn inspect(id: &str, format: &str) -> String {
    let out = Command::new("docker")
        .args(["inspect", "--format", format, id])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn docker_provider_scales_a_compose_service_out_and_in() {
    let Some(_env) = Env::get() else { return };
    let project = format!("sl-{}", run_id());
    let _cleanup = Project(project.clone());
    let first = docker::run(RunOpts {
        name: &format!("{project}-web-1"),
        labels: vec![
            format!("com.docker.compose.project={project}"),
            "com.docker.compose.service=web".into(),
            "com.docker.compose.container-number=1".into(),
        ],
        script: "while :; do sleep 1; done",
        ..Default::default()
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let provider = DockerProvider::new(&DockerConfig {
        project: Some(project.clone()),
    })
    .unwrap();
    let ctx = ScaleContext {
        policy: "web-cpu".into(),
        current: 1,
        running: 1,
        reason: "test".into(),
    };
    rt.block_on(async {
        let c = provider.current("web").await.unwrap();
        assert_eq!((c.desired_count, c.running_count), (1, 1));
        assert!(matches!(
            provider.current("nope").await,
            Err(ProviderError::NotFound(_))
        ));

        provider.set_desired("web", 3, &ctx).await.unwrap();
        let c = provider.current("web").await.unwrap();
        assert_eq!((c.desired_count, c.running_count), (3, 3));
    });
    let now = containers(&project, false);
    let names: Vec<&str> = now.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(
        names,
        [
            format!("{project}-web-1"),
            format!("{project}-web-2"),
            format!("{project}-web-3")
        ]
    );
    assert!(now.iter().all(|c| c.3), "{now:?}");
    for (id, ..) in &now[1..] {
        // Copies of the first: same image, same command, same labels plus ours.
        assert_eq!(inspect(id, "{{.Config.Image}}"), IMAGE);
        assert_eq!(
            inspect(id, "{{json .Config.Cmd}}"),
            inspect(&first.id, "{{json .Config.Cmd}}")
        );
        assert_eq!(
            inspect(
                id,
                "{{index .Config.Labels \"com.docker.compose.service\"}}"
            ),
            "web"
        );
        assert_eq!(
            inspect(id, "{{index .Config.Labels \"sightline.autoscaled\"}}"),
            "true"
        );
    }

    rt.block_on(async {
        provider.set_desired("web", 1, &ctx).await.unwrap();
        let c = provider.current("web").await.unwrap();
        assert_eq!((c.desired_count, c.running_count), (1, 1));
    });
    // Newest removed first, and removed (not left stopped).
    let left = containers(&project, true);
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].0, first.id);
}
