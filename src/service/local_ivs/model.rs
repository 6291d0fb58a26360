//! The AWS service model of IVS, embedded, and input validation driven by it.
//!
//! Every request is checked against the model's own constraints (required
//! members, types, lengths, patterns, enums, ranges, list and map sizes), so
//! the local IVS refuses what IVS refuses, with AWS's wording:
//! `1 validation error detected: Value 'x' at 'name' failed to satisfy
//! constraint: Member must satisfy regular expression pattern: ...`.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

const MODEL_JSON: &str = include_str!("ivs-service-2.json");

/// One operation of the model.
#[derive(Debug)]
pub(crate) struct Operation {
    pub(crate) input: Option<String>,
    pub(crate) response_code: u16,
}

#[derive(Debug)]
enum Shape {
    String {
        min: Option<u64>,
        max: Option<u64>,
        pattern: Option<(String, Regex)>,
        values: Option<Vec<String>>,
    },
    Integer {
        min: Option<i64>,
        max: Option<i64>,
    },
    Boolean,
    List {
        member: String,
        min: Option<u64>,
        max: Option<u64>,
    },
    Map {
        key: String,
        value: String,
        min: Option<u64>,
        max: Option<u64>,
    },
    Structure {
        members: Vec<(String, String)>,
        required: Vec<String>,
    },
    Other,
}

/// The parsed model.
#[derive(Debug)]
pub(crate) struct Model {
    operations: HashMap<String, Operation>,
    shapes: HashMap<String, Shape>,
}

impl Model {
    /// The embedded model, parsed once.
    pub(crate) fn get() -> &'static Model {
        static MODEL: OnceLock<Model> = OnceLock::new();
        MODEL.get_or_init(|| Model::parse(MODEL_JSON))
    }

    fn parse(text: &str) -> Model {
        // The model is compiled in and checked by a unit test: an unreadable
        // model is a build defect, and an empty model refuses every request.
        let doc: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let mut operations = HashMap::new();
        if let Some(ops) = doc["operations"].as_object() {
            for (name, op) in ops {
                operations.insert(
                    name.clone(),
                    Operation {
                        input: op["input"]["shape"].as_str().map(str::to_owned),
                        response_code: op["http"]["responseCode"]
                            .as_u64()
                            .and_then(|c| u16::try_from(c).ok())
                            .unwrap_or(200),
                    },
                );
            }
        }
        let mut shapes = HashMap::new();
        if let Some(all) = doc["shapes"].as_object() {
            for (name, s) in all {
                shapes.insert(name.clone(), Self::parse_shape(name, s));
            }
        }
        Model { operations, shapes }
    }

    fn parse_shape(name: &str, s: &Value) -> Shape {
        let min = s["min"].as_u64();
        let max = s["max"].as_u64();
        match s["type"].as_str() {
            Some("string") => Shape::String {
                min,
                max,
                pattern: s["pattern"].as_str().and_then(|p| {
                    // ResourceArn's pattern, `...:[a-z-]/...`, allows a
                    // one-letter resource type, so no real ARN matches it;
                    // IVS evidently accepts channel and playback-key ARNs, so
                    // the class is read as `[a-z-]+` [OPEN].
                    let fixed = if name == "ResourceArn" {
                        p.replace(":[a-z-]/", ":[a-z-]+/")
                    } else {
                        p.to_owned()
                    };
                    // Model patterns are not anchored; IVS validates whole
                    // values, so they are anchored here.
                    let anchored = format!("^(?:{fixed})$");
                    Regex::new(&anchored).ok().map(|r| (p.to_owned(), r))
                }),
                values: s["enum"].as_array().map(|v| {
                    v.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                }),
            },
            Some("integer" | "long") => Shape::Integer {
                min: s["min"].as_i64(),
                max: s["max"].as_i64(),
            },
            Some("boolean") => Shape::Boolean,
            Some("list") => Shape::List {
                member: s["member"]["shape"].as_str().unwrap_or_default().to_owned(),
                min,
                max,
            },
            Some("map") => Shape::Map {
                key: s["key"]["shape"].as_str().unwrap_or_default().to_owned(),
                value: s["value"]["shape"].as_str().unwrap_or_default().to_owned(),
                min,
                max,
            },
            Some("structure") => Shape::Structure {
                members: s["members"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| {
                                (
                                    k.clone(),
                                    v["shape"].as_str().unwrap_or_default().to_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                required: s["required"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            _ => Shape::Other,
        }
    }

    /// The operation of this name.
    pub(crate) fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.get(name)
    }

    /// Checks an operation's input. The message lists every violation, as
    /// AWS does.
    pub(crate) fn validate(&self, operation: &Operation, input: &Value) -> Result<(), String> {
        let Some(shape) = operation.input.as_deref() else {
            return Ok(());
        };
        let mut errors = Vec::new();
        self.check(shape, input, "", &mut errors);
        match errors.len() {
            0 => Ok(()),
            1 => Err(format!("1 validation error detected: {}", errors[0])),
            n => Err(format!(
                "{n} validation errors detected: {}",
                errors.join("; ")
            )),
        }
    }

    fn check(&self, shape_name: &str, value: &Value, path: &str, errors: &mut Vec<String>) {
        let Some(shape) = self.shapes.get(shape_name) else {
            return;
        };
        let shown = |v: &Value| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let fail = |errors: &mut Vec<String>, v: &Value, rule: String| {
            errors.push(format!(
                "Value '{}' at '{path}' failed to satisfy constraint: {rule}",
                shown(v)
            ));
        };
        match shape {
            Shape::String {
                min,
                max,
                pattern,
                values,
            } => {
                let Some(s) = value.as_str() else {
                    return fail(errors, value, "Member must be a string".into());
                };
                let len = s.chars().count() as u64;
                if let Some(rule) = length_rule(len, *min, *max) {
                    fail(errors, value, rule);
                }
                if let Some((text, _)) = pattern.as_ref().filter(|(_, re)| !re.is_match(s)) {
                    fail(
                        errors,
                        value,
                        format!("Member must satisfy regular expression pattern: {text}"),
                    );
                }
                // IVS documents preset "" for BASIC and STANDARD channels,
                // outside the enum; it is accepted as IVS returns it.
                let documented_empty = shape_name == "TranscodePreset" && s.is_empty();
                if let Some(values) = values
                    .as_ref()
                    .filter(|v| !documented_empty && !v.iter().any(|x| x == s))
                {
                    fail(
                        errors,
                        value,
                        format!(
                            "Member must satisfy enum value set: [{}]",
                            values.join(", ")
                        ),
                    );
                }
            }
            Shape::Integer { min, max } => {
                let Some(n) = value.as_i64() else {
                    return fail(errors, value, "Member must be an integer".into());
                };
                if let Some(min) = min.filter(|&m| n < m) {
                    fail(
                        errors,
                        value,
                        format!("Member must have value greater than or equal to {min}"),
                    );
                }
                if let Some(max) = max.filter(|&m| n > m) {
                    fail(
                        errors,
                        value,
                        format!("Member must have value less than or equal to {max}"),
                    );
                }
            }
            Shape::Boolean => {
                if !value.is_boolean() {
                    fail(errors, value, "Member must be a boolean".into());
                }
            }
            Shape::List { member, min, max } => {
                let Some(items) = value.as_array() else {
                    return fail(errors, value, "Member must be a list".into());
                };
                let len = items.len() as u64;
                if let Some(rule) = length_rule(len, *min, *max) {
                    fail(errors, value, rule);
                }
                for (i, item) in items.iter().enumerate() {
                    self.check(member, item, &format!("{path}.{}.member", i + 1), errors);
                }
            }
            Shape::Map {
                key,
                value: value_shape,
                min,
                max,
            } => {
                let Some(map) = value.as_object() else {
                    return fail(errors, value, "Member must be a map".into());
                };
                let len = map.len() as u64;
                if let Some(rule) = length_rule(len, *min, *max) {
                    fail(errors, value, rule);
                }
                for (k, v) in map {
                    self.check(
                        key,
                        &Value::String(k.clone()),
                        &format!("{path}.{k}.key"),
                        errors,
                    );
                    self.check(value_shape, v, &format!("{path}.{k}.value"), errors);
                }
            }
            Shape::Structure { members, required } => {
                let Some(object) = value.as_object() else {
                    return fail(errors, value, "Member must be an object".into());
                };
                for name in required {
                    if object.get(name).is_none_or(Value::is_null) {
                        let at = join(path, name);
                        errors.push(format!(
                            "Value null at '{at}' failed to satisfy constraint: Member must not be null"
                        ));
                    }
                }
                // Members the model does not know are ignored, as AWS's
                // REST-JSON services do.
                for (name, member_shape) in members {
                    if let Some(v) = object.get(name).filter(|v| !v.is_null()) {
                        self.check(member_shape, v, &join(path, name), errors);
                    }
                }
            }
            Shape::Other => {}
        }
    }
}

/// The broken length rule, in AWS's words, if `len` is out of bounds.
fn length_rule(len: u64, min: Option<u64>, max: Option<u64>) -> Option<String> {
    if let Some(min) = min.filter(|&m| len < m) {
        return Some(format!(
            "Member must have length greater than or equal to {min}"
        ));
    }
    max.filter(|&m| len > m)
        .map(|max| format!("Member must have length less than or equal to {max}"))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn validate(op: &str, input: Value) -> Result<(), String> {
        let model = Model::get();
        model.validate(model.operation(op).unwrap(), &input)
    }

    #[test]
    fn the_embedded_model_parses_with_every_pattern() {
        let model = Model::get();
        assert!(model.operations.len() >= 40);
        assert_eq!(model.operation("DeleteChannel").unwrap().response_code, 204);
        for (name, shape) in &model.shapes {
            if let Shape::String { pattern: None, .. } = shape {
                let raw: Value = serde_json::from_str(MODEL_JSON).unwrap();
                assert!(
                    raw["shapes"][name]["pattern"].is_null(),
                    "{name}: pattern did not compile"
                );
            }
        }
    }

    #[test]
    fn names_the_member_and_the_rule() {
        let err = validate("CreateChannel", json!({"name": "bad name!"})).unwrap_err();
        assert!(
            err.starts_with("1 validation error detected: Value 'bad name!' at 'name'"),
            "{err}"
        );
        assert!(err.contains("regular expression pattern"), "{err}");
        let err = validate("GetChannel", json!({})).unwrap_err();
        assert!(err.contains("Value null at 'arn'"), "{err}");
        let err = validate(
            "CreateChannel",
            json!({"latencyMode": "FAST", "authorized": "yes"}),
        )
        .unwrap_err();
        assert!(err.starts_with("2 validation errors detected"), "{err}");
        let err = validate("ListChannels", json!({"maxResults": 101})).unwrap_err();
        assert!(err.contains("less than or equal to 100"), "{err}");
        let err = validate("BatchGetChannel", json!({"arns": []})).unwrap_err();
        assert!(err.contains("greater than or equal to 1"), "{err}");
        let err = validate(
            "BatchStartViewerSessionRevocation",
            json!({"viewerSessions": [{"channelArn": "arn:aws:ivs:us-west-2:1:channel/a", "viewerId": ""}]}),
        )
        .unwrap_err();
        assert!(err.contains("'viewerSessions.1.member.viewerId'"), "{err}");
    }

    #[test]
    fn accepts_valid_input_and_whole_value_patterns_only() {
        assert!(
            validate(
                "CreateChannel",
                json!({"name": "ok-name_1", "authorized": true, "tags": {"team": "video"}})
            )
            .is_ok()
        );
        assert!(
            validate(
                "GetChannel",
                json!({"arn": "arn:aws:ivs:us-west-2:123:channel/abc"})
            )
            .is_ok()
        );
        assert!(
            validate(
                "GetChannel",
                json!({"arn": "xarn:aws:ivs:us-west-2:123:channel/abc"})
            )
            .is_err()
        );
        assert!(
            validate(
                "GetChannel",
                json!({"arn": "arn:aws:ivs:us-west-2:123:channel/abc/"})
            )
            .is_err()
        );
        assert!(
            validate(
                "TagResource",
                json!({"resourceArn": "arn:aws:ivs:us-west-2:123:playback-key/abc", "tags": {}})
            )
            .is_ok()
        );
        assert!(validate("CreateChannel", json!({"recordingConfigurationArn": ""})).is_ok());
    }
}
