//! Amazon ECS provider through the official AWS SDK for Rust: `DescribeServices` for the
//! desired and running counts, `UpdateService` with `desiredCount` to scale (the calls
//! App Auto Scaling makes for `ecs:service:DesiredCount`). HTTPS via rustls with ring (no
//! OpenSSL). IAM permissions needed: `ecs:DescribeServices`, `ecs:UpdateService`.

use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ecs::error::DisplayErrorContext;
use aws_sdk_ecs::Client;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use futures::future::BoxFuture;

use super::config::EcsConfig;
use super::provider::{Capacity, ProviderError, ScaleContext, ScalingProvider};

/// Scales services of one ECS cluster.
#[derive(Clone, Debug)]
pub struct EcsProvider {
    client: Client,
    cluster: String,
}

impl EcsProvider {
    /// A provider from `[autoscale.ecs]`: region, endpoint and static keys when given,
    /// otherwise the SDK's default chains (`AWS_REGION`, profiles, SSO, web identity, the
    /// ECS task role, IMDS). Nothing is called until the first request.
    pub async fn from_config(cfg: &EcsConfig) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
        if let Some(r) = &cfg.region {
            loader = loader.region(Region::new(r.clone()));
        }
        if let Some(u) = &cfg.endpoint_url {
            loader = loader.endpoint_url(u.clone());
        }
        if let (Some(id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) {
            loader = loader.credentials_provider(Credentials::new(
                id.clone(),
                secret.expose().to_string(),
                None,
                None,
                "sightline-config",
            ));
        }
        let sdk = loader.load().await;
        EcsProvider {
            client: Client::new(&sdk),
            cluster: cfg.cluster.clone(),
        }
    }

    /// A provider over an existing SDK client.
    pub fn from_client(client: Client, cluster: impl Into<String>) -> Self {
        EcsProvider {
            client,
            cluster: cluster.into(),
        }
    }

    /// The SDK client (e.g. to create services in tests).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The cluster name or ARN.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    async fn describe(&self, service: &str) -> Result<Capacity, ProviderError> {
        let out = self
            .client
            .describe_services()
            .cluster(&self.cluster)
            .services(service)
            .send()
            .await
            .map_err(|e| {
                ProviderError::Api(format!("DescribeServices: {}", DisplayErrorContext(e)))
            })?;
        // DRAINING (being deleted) and INACTIVE services are not scaled.
        let svc = out
            .services()
            .iter()
            .find(|s| s.status().is_none_or(|st| st == "ACTIVE"));
        let Some(svc) = svc else {
            return Err(ProviderError::NotFound(service.to_string()));
        };
        let count = |n: i32| u32::try_from(n).unwrap_or(0);
        Ok(Capacity {
            desired_count: count(svc.desired_count()),
            running_count: count(svc.running_count()),
        })
    }

    async fn update(&self, service: &str, desired: u32) -> Result<(), ProviderError> {
        let n = i32::try_from(desired)
            .map_err(|_| ProviderError::Api(format!("desired count {desired} too large")))?;
        self.client
            .update_service()
            .cluster(&self.cluster)
            .service(service)
            .desired_count(n)
            .send()
            .await
            .map_err(|e| {
                ProviderError::Api(format!("UpdateService: {}", DisplayErrorContext(e)))
            })?;
        Ok(())
    }
}

impl ScalingProvider for EcsProvider {
    fn current<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Capacity, ProviderError>> {
        Box::pin(self.describe(service))
    }

    fn set_desired<'a>(
        &'a self,
        service: &'a str,
        desired: u32,
        _ctx: &'a ScaleContext,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(self.update(service, desired))
    }
}

/// An [`EcsProvider`] whose SDK configuration is loaded on first use, so it can be built
/// outside an async context (the aggregator builds its providers while opening). The
/// region and credential chains are resolved once, at the first `DescribeServices`.
pub struct LazyEcsProvider {
    config: EcsConfig,
    cell: tokio::sync::OnceCell<EcsProvider>,
}

impl LazyEcsProvider {
    /// A provider for `[autoscale.ecs]`; nothing is resolved or called yet.
    pub fn new(config: EcsConfig) -> Self {
        LazyEcsProvider {
            config,
            cell: tokio::sync::OnceCell::new(),
        }
    }

    async fn get(&self) -> &EcsProvider {
        self.cell
            .get_or_init(|| EcsProvider::from_config(&self.config))
            .await
    }
}

impl ScalingProvider for LazyEcsProvider {
    fn current<'a>(&'a self, service: &'a str) -> BoxFuture<'a, Result<Capacity, ProviderError>> {
        Box::pin(async move { self.get().await.describe(service).await })
    }

    fn set_desired<'a>(
        &'a self,
        service: &'a str,
        desired: u32,
        _ctx: &'a ScaleContext,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async move { self.get().await.update(service, desired).await })
    }
}
