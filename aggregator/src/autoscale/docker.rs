//! Docker provider: scales a service on a host without an orchestrator, the way
//! `docker compose up --scale <service>=<n>` does, through the Engine API (bollard).
//!
//! - A service's replicas are the containers labelled `com.docker.compose.service=<name>`
//!   (and `com.docker.compose.project=<project>` when `[autoscale.docker] project` is set).
//!   Docker has no desired count of its own: desired = running = replicas running.
//! - Scale out: stopped replicas are started first; then new replicas are created as copies
//!   of the lowest-numbered running one (image, command, entrypoint, environment, labels,
//!   host config, networks with their aliases), numbered on from the highest
//!   `com.docker.compose.container-number` and named `<project>-<service>-<n>` (Compose v2's
//!   naming), labelled `sightline.autoscaled=true`. Published host ports are made
//!   ephemeral, since two replicas cannot bind the same host port.
//! - Scale in: the highest-numbered running replicas are stopped (the image's stop signal,
//!   then SIGKILL after the container's stop timeout) and removed.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, EndpointSettings, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures::future::BoxFuture;

use super::config::DockerConfig;
use super::provider::{Capacity, ProviderError, ScaleContext, ScalingProvider};

/// Compose's service label.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
/// Compose's project label.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// Compose's replica number label.
pub const NUMBER_LABEL: &str = "com.docker.compose.container-number";
/// Set on replicas Sightline created.
pub const AUTOSCALED_LABEL: &str = "sightline.autoscaled";

/// Scales Compose-style services on the local Docker engine.
pub struct DockerProvider {
    docker: Docker,
    project: Option<String>,
}

/// Compose's label of one-off containers (`docker compose run`), which are not replicas.
pub const ONEOFF_LABEL: &str = "com.docker.compose.oneoff";

/// One replica of a service.
#[derive(Clone, Debug)]
struct Replica {
    id: String,
    number: u32,
    /// Running (or restarting: a crash-looping replica still counts, so it is not
    /// replaced by more of the same).
    running: bool,
    /// Exited or created: can be started again.
    startable: bool,
    project: Option<String>,
    autoscaled: bool,
}

fn api(what: &str, e: bollard::errors::Error) -> ProviderError {
    ProviderError::Api(format!("Docker {what}: {e}"))
}

impl DockerProvider {
    /// Connects to the engine at `DOCKER_HOST`, else `/var/run/docker.sock` (nothing is
    /// called until the first request).
    ///
    /// Errors: [`ProviderError::Api`] when the client cannot be set up.
    pub fn new(cfg: &DockerConfig) -> Result<Self, ProviderError> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| api("connect", e))?;
        Ok(DockerProvider {
            docker,
            project: cfg.project.clone(),
        })
    }

    /// The service's replicas, running or not, ordered by replica number.
    async fn replicas(&self, service: &str) -> Result<Vec<Replica>, ProviderError> {
        let mut labels = vec![format!("{SERVICE_LABEL}={service}")];
        if let Some(p) = &self.project {
            labels.push(format!("{PROJECT_LABEL}={p}"));
        }
        let filters: HashMap<String, Vec<String>> = [("label".to_string(), labels)].into();
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| api("list containers", e))?;
        let mut out: Vec<Replica> = list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                if labels
                    .get(ONEOFF_LABEL)
                    .is_some_and(|v| v.eq_ignore_ascii_case("true"))
                {
                    return None;
                }
                use ContainerSummaryStateEnum as S;
                Some(Replica {
                    id: c.id?,
                    number: labels
                        .get(NUMBER_LABEL)
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                    running: matches!(c.state, Some(S::RUNNING | S::RESTARTING)),
                    startable: matches!(c.state, Some(S::EXITED | S::CREATED)),
                    project: labels.get(PROJECT_LABEL).cloned(),
                    autoscaled: labels.contains_key(AUTOSCALED_LABEL),
                })
            })
            .collect();
        if self.project.is_none() {
            let mut projects: Vec<&Option<String>> = out.iter().map(|r| &r.project).collect();
            projects.sort();
            projects.dedup();
            if projects.len() > 1 {
                return Err(ProviderError::Api(format!(
                    "service {service} has replicas in several Compose projects; set [autoscale.docker] project"
                )));
            }
        }
        out.sort_by_key(|r| (r.number, r.id.clone()));
        Ok(out)
    }

    async fn scale(&self, service: &str, desired: u32) -> Result<(), ProviderError> {
        let replicas = self.replicas(service).await?;
        let running: Vec<&Replica> = replicas.iter().filter(|r| r.running).collect();
        let have = running.len();
        let want = desired as usize;
        if want < have {
            // Newest (highest-numbered) first, as Compose.
            for r in running.iter().rev().take(have - want) {
                self.docker
                    .stop_container(&r.id, None::<StopContainerOptions>)
                    .await
                    .map_err(|e| api("stop", e))?;
                let remove = RemoveContainerOptions {
                    // Anonymous volumes of replicas Sightline created go with them.
                    v: r.autoscaled,
                    ..Default::default()
                };
                match self.docker.remove_container(&r.id, Some(remove)).await {
                    Ok(()) => {}
                    // Started with --rm: already gone once stopped.
                    Err(bollard::errors::Error::DockerResponseServerError {
                        status_code: 404 | 409,
                        ..
                    }) => {}
                    Err(e) => return Err(api("remove", e)),
                }
            }
            return Ok(());
        }
        let mut missing = want - have;
        for r in replicas.iter().filter(|r| r.startable) {
            if missing == 0 {
                return Ok(());
            }
            self.docker
                .start_container(&r.id, None::<StartContainerOptions>)
                .await
                .map_err(|e| api("start", e))?;
            missing -= 1;
        }
        if missing == 0 {
            return Ok(());
        }
        let template = running
            .first()
            .copied()
            .or(replicas.first())
            .ok_or_else(|| ProviderError::NotFound(service.to_string()))?;
        let first = replicas.iter().map(|r| r.number).max().unwrap_or(0) + 1;
        for number in (first..).take(missing) {
            self.clone_replica(&template.id, service, number).await?;
        }
        Ok(())
    }

    /// Creates and starts replica `number` as a copy of container `template`.
    async fn clone_replica(
        &self,
        template: &str,
        service: &str,
        number: u32,
    ) -> Result<(), ProviderError> {
        let t = self
            .docker
            .inspect_container(template, None::<InspectContainerOptions>)
            .await
            .map_err(|e| api("inspect", e))?;
        let config = t.config.unwrap_or_default();
        let mut labels = config.labels.unwrap_or_default();
        labels.insert(NUMBER_LABEL.into(), number.to_string());
        labels.insert(AUTOSCALED_LABEL.into(), "true".into());
        let project = labels.get(PROJECT_LABEL).cloned();
        let name = match project {
            Some(p) => format!("{p}-{service}-{number}"),
            None => format!("{service}-{number}"),
        };
        let mut host_config = t.host_config.unwrap_or_default();
        if let Some(ports) = host_config.port_bindings.as_mut() {
            for bindings in ports.values_mut().flatten() {
                bindings.iter_mut().for_each(|b| b.host_port = None);
            }
        }
        // The template's own networks, with their aliases (Compose's service DNS name);
        // addresses are assigned anew.
        // Aliases naming the template itself (its container name, its short ID) stay
        // with it.
        let own_name = t
            .name
            .as_deref()
            .unwrap_or("")
            .trim_start_matches('/')
            .to_string();
        let own_id = t.id.clone().unwrap_or_default();
        let endpoints: HashMap<String, EndpointSettings> = t
            .network_settings
            .and_then(|n| n.networks)
            .unwrap_or_default()
            .into_iter()
            .map(|(net, e)| {
                let aliases = e.aliases.map(|a| {
                    a.into_iter()
                        .filter(|x| {
                            *x != own_name && !(x.len() >= 12 && own_id.starts_with(x.as_str()))
                        })
                        .collect()
                });
                (
                    net,
                    EndpointSettings {
                        aliases,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let body = ContainerCreateBody {
            image: config.image,
            cmd: config.cmd,
            entrypoint: config.entrypoint,
            env: config.env,
            labels: Some(labels),
            working_dir: config.working_dir,
            user: config.user,
            exposed_ports: config.exposed_ports,
            healthcheck: config.healthcheck,
            stop_signal: config.stop_signal,
            stop_timeout: config.stop_timeout,
            tty: config.tty,
            open_stdin: config.open_stdin,
            volumes: config.volumes,
            host_config: Some(host_config),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(endpoints),
            }),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| api(&format!("create {name}"), e))?;
        self.docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
            .map_err(|e| api(&format!("start {name}"), e))?;
        tracing::info!(service, replica = %name, "started a replica");
        Ok(())
    }
}

impl ScalingProvider for DockerProvider {
    fn current<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Capacity, ProviderError>> {
        Box::pin(async move {
            let replicas = self.replicas(service).await?;
            if replicas.is_empty() {
                return Err(ProviderError::NotFound(service.to_string()));
            }
            let running = replicas.iter().filter(|r| r.running).count() as u32;
            Ok(Capacity {
                desired_count: running,
                running_count: running,
            })
        })
    }

    fn set_desired<'a>(
        &'a self,
        service: &'a str,
        desired: u32,
        _ctx: &'a ScaleContext,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.scale(service, desired))
    }
}
