//! Audit reports (built in the next step).

use std::sync::Arc;

use super::signing::AuditKey;
use crate::config::Settings;
use crate::jobs::Job;

pub fn scheduled(_settings: &Settings, _key: &Arc<AuditKey>) -> Vec<Job> {
    Vec::new()
}
