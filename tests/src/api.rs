//! Client for the query API.

use serde_json::Value;

/// `GET {base}{path}`; the JSON body and status, or `None` when the server is unreachable.
pub fn get(base: &str, path: &str) -> Option<(u16, Value)> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent.get(&format!("{base}{path}")).call().ok()?;
    let status = resp.status().as_u16();
    let body: Value = resp.body_mut().read_json().ok()?;
    Some((status, body))
}

/// The messages of `GET /api/v1/correlations/{id}`, in the order returned.
pub fn correlation_messages(base: &str, id: &str) -> Option<Vec<String>> {
    let (status, body) = get(base, &format!("/api/v1/correlations/{id}"))?;
    if status != 200 {
        return None;
    }
    Some(
        body["events"]
            .as_array()?
            .iter()
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect(),
    )
}
