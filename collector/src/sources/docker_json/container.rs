//! Reading a container's metadata from `<containers_dir>/<id>/config.v2.json` (and the log
//! driver from `hostconfig.json`), and deriving its service name.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use sightline_model::Container;

#[derive(Deserialize)]
struct ConfigV2 {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Config", default)]
    config: Option<InnerConfig>,
}

#[derive(Deserialize, Default)]
struct InnerConfig {
    #[serde(rename = "Image", default)]
    image: String,
    #[serde(rename = "Labels", default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct HostConfig {
    #[serde(rename = "LogConfig", default)]
    log_config: Option<LogConfig>,
}

#[derive(Deserialize)]
struct LogConfig {
    #[serde(rename = "Type", default)]
    kind: String,
}

/// Why a container's metadata could not be read (it may still be being written: retried).
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// `config.v2.json` is missing or unreadable.
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    /// `config.v2.json` is not the JSON Docker writes.
    #[error("cannot parse {0}: {1}")]
    Parse(String, serde_json::Error),
}

/// Reads `dir/config.v2.json`. Returns the container and whether its log driver is
/// `json-file` (true when `hostconfig.json` is absent or says nothing).
pub fn read_container(dir: &Path) -> Result<(Container, bool), ContainerError> {
    let path = dir.join("config.v2.json");
    let shown = path.display().to_string();
    let bytes = std::fs::read(&path).map_err(|e| ContainerError::Io(shown.clone(), e))?;
    let cfg: ConfigV2 =
        serde_json::from_slice(&bytes).map_err(|e| ContainerError::Parse(shown, e))?;
    let inner = cfg.config.unwrap_or_default();
    let id = if cfg.id.is_empty() {
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    } else {
        cfg.id
    };
    let json_file = std::fs::read(dir.join("hostconfig.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<HostConfig>(&b).ok())
        .and_then(|h| h.log_config)
        .is_none_or(|l| l.kind.is_empty() || l.kind == "json-file");
    Ok((
        Container {
            id,
            name: cfg.name.trim_start_matches('/').to_string(),
            image: inner.image,
            labels: inner.labels.unwrap_or_default(),
        },
        json_file,
    ))
}

/// The service a container belongs to: label `com.amazonaws.ecs.task-definition-family`,
/// then `com.docker.compose.service`, then `service_label` (if configured), then the name.
pub fn service_name(c: &Container, service_label: Option<&str>) -> String {
    let labels = [
        Some("com.amazonaws.ecs.task-definition-family"),
        Some("com.docker.compose.service"),
        service_label,
    ];
    labels
        .into_iter()
        .flatten()
        .find_map(|l| c.labels.get(l).filter(|v| !v.is_empty()).cloned())
        .unwrap_or_else(|| c.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_docker_config_and_derives_service() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.v2.json"),
            r#"{"ID":"abc123","Name":"/web-1","Config":{"Image":"busybox:latest","Labels":{"com.docker.compose.service":"web","app":"shop"}},"State":{"Running":true},"Unknown":1}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("hostconfig.json"),
            r#"{"LogConfig":{"Type":"json-file","Config":{}}}"#,
        )
        .unwrap();
        let (c, json_file) = read_container(dir.path()).unwrap();
        assert!(json_file);
        assert_eq!(
            (c.id.as_str(), c.name.as_str(), c.image.as_str()),
            ("abc123", "web-1", "busybox:latest")
        );
        assert_eq!(service_name(&c, Some("app")), "web");
        let mut ecs = c.clone();
        ecs.labels.insert(
            "com.amazonaws.ecs.task-definition-family".into(),
            "checkout".into(),
        );
        assert_eq!(service_name(&ecs, None), "checkout");
        let mut bare = c.clone();
        bare.labels.clear();
        assert_eq!(service_name(&bare, Some("app")), "web-1");
        bare.labels.insert("app".into(), "shop".into());
        assert_eq!(service_name(&bare, Some("app")), "shop");
    }

    #[test]
    fn garbage_config_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.v2.json"), b"{\"ID\": ").unwrap();
        assert!(matches!(
            read_container(dir.path()),
            Err(ContainerError::Parse(..))
        ));
    }
}
