//! Fuzzes the ECS agent, ecs-init and credentials audit log parsers: neither may panic, a
//! marked agent line keeps its raw text, and a parsed audit line converts to an event.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sightline_collector::parse::ecs_agent::parse_agent_line;
use sightline_collector::parse::ecs_audit::parse_audit_line;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let rec = parse_agent_line(&line);
    if rec.parse_error.is_some() {
        let raw = line.strip_suffix('\n').unwrap_or(&line);
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        assert_eq!(rec.message, raw);
    }
    let _ = rec.correlation_ids();
    if let Ok(audit) = parse_audit_line(&line) {
        let _ = audit.to_audit_event("fuzz-host", 1, 0, 0);
    }
});
