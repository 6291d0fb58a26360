//! Faults injected on purpose, so that clients can be tested against a
//! misbehaving IVS: an error, a delay, or a dropped connection for the next N
//! calls of an operation.

use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;

use super::error::ApiError;

/// What a fault does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Answer with this IVS error.
    Error(ApiError),
    /// Wait, then answer normally.
    Delay(Duration),
    /// Close the connection without an answer.
    Drop,
}

/// `POST /_local/faults` body: `{"operation": "ImportPlaybackKeyPair" | "*",
/// "count": 2, "error": "ThrottlingException"}`, or `"delayMs": 500`, or
/// `"drop": true`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct FaultRequest {
    operation: String,
    #[serde(default = "one")]
    count: u32,
    error: Option<String>,
    delay_ms: Option<u64>,
    #[serde(default)]
    drop: bool,
}

fn one() -> u32 {
    1
}

#[derive(Debug)]
struct Rule {
    operation: String,
    remaining: u32,
    fault: Fault,
}

/// The pending faults. A std mutex: it is never held across an await.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    rules: Mutex<Vec<Rule>>,
}

impl Faults {
    /// How many injected faults are still to be served.
    pub(crate) fn pending(&self) -> u64 {
        self.rules
            .lock()
            .map(|rules| rules.iter().map(|r| u64::from(r.remaining)).sum())
            .unwrap_or(0)
    }

    /// Adds a rule from its request; the error message names the field.
    pub(crate) fn add(&self, request: FaultRequest) -> Result<(), String> {
        let chosen = usize::from(request.error.is_some())
            + usize::from(request.delay_ms.is_some())
            + usize::from(request.drop);
        if chosen != 1 {
            return Err("give exactly one of `error`, `delayMs` or `drop`".into());
        }
        if request.count == 0 {
            return Err("`count` must be at least 1".into());
        }
        if request.operation.is_empty() {
            return Err("`operation` must name an operation or be `*`".into());
        }
        let fault = if let Some(code) = request.error {
            Fault::Error(ApiError::injected(&code).ok_or_else(|| {
                format!("`error` {code} is not one of ThrottlingException, InternalServerException, ServiceUnavailable, AccessDeniedException, PendingVerification, ValidationException, ConflictException")
            })?)
        } else if let Some(ms) = request.delay_ms {
            if ms > 120_000 {
                return Err("`delayMs` must be at most 120000".into());
            }
            Fault::Delay(Duration::from_millis(ms))
        } else {
            Fault::Drop
        };
        self.lock().push(Rule {
            operation: request.operation,
            remaining: request.count,
            fault,
        });
        Ok(())
    }

    /// The fault for this call of `operation`, if one is pending; consumes it.
    pub(crate) fn take(&self, operation: &str) -> Option<Fault> {
        let mut rules = self.lock();
        let i = rules
            .iter()
            .position(|r| r.operation == operation || r.operation == "*")?;
        let fault = rules[i].fault.clone();
        rules[i].remaining -= 1;
        if rules[i].remaining == 0 {
            rules.remove(i);
        }
        Some(fault)
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Rule>> {
        // A panic while holding this lock cannot leave the rules half-changed
        // (each change is one push, decrement or remove), so poison is ignored.
        self.rules.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> FaultRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_rule_fires_count_times_for_its_operation() {
        let faults = Faults::default();
        faults
            .add(request(
                r#"{"operation":"GetChannel","count":2,"error":"ThrottlingException"}"#,
            ))
            .unwrap();
        assert!(faults.take("ListChannels").is_none());
        assert!(
            matches!(faults.take("GetChannel"), Some(Fault::Error(e)) if e.code == "ThrottlingException")
        );
        assert!(faults.take("GetChannel").is_some());
        assert!(faults.take("GetChannel").is_none());
    }

    #[test]
    fn refuses_ambiguous_or_unknown_faults() {
        let faults = Faults::default();
        assert!(
            faults
                .add(request(r#"{"operation":"*","drop":true,"delayMs":5}"#))
                .is_err()
        );
        assert!(faults.add(request(r#"{"operation":"*"}"#)).is_err());
        assert!(
            faults
                .add(request(r#"{"operation":"*","error":"Teapot"}"#))
                .is_err()
        );
        assert!(
            faults
                .add(request(r#"{"operation":"*","count":0,"drop":true}"#))
                .is_err()
        );
        assert!(serde_json::from_str::<FaultRequest>(r#"{"operation":"*","drp":true}"#).is_err());
    }
}
