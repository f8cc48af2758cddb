//! The Call Automation reference (`reference/call-automation-api-2025-03-30.txt`, as published,
//! method by method), read into operations and request schemas the fake validates against.
//!
//! The text lists each method as `Name (new)`, its `METHOD: /path`, then the request as a
//! tree of `name: type ,` entries in braces: the body parameter (the one whose value is an
//! object, e.g. `answerCallRequest`), path parameters, `api-version` and the repeatability
//! headers; then each response by status.

use std::collections::BTreeMap;

/// The reference, built into the binary.
pub(crate) const REFERENCE: &str =
    include_str!("../../reference/call-automation-api-2025-03-30.txt");

/// A type of the reference.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Schema {
    String,
    Boolean,
    Integer,
    /// A string from a fixed set (the reference says only `enum`; the values are in
    /// [`super::validate`]).
    Enum,
    /// Any JSON object (SIP and VoIP headers).
    AnyObject,
    Object(BTreeMap<String, Schema>),
    Array(Box<Schema>),
}

/// One method.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    /// `CallConnection_TransferToParticipant`, `AnswerCall`…
    pub(crate) name: String,
    /// `GET`, `POST`, `DELETE`.
    pub(crate) method: String,
    /// `/calling/callConnections/{callConnectionId}:play`.
    pub(crate) path: String,
    /// The body parameter's name and schema, when the method takes a body.
    pub(crate) body: Option<(String, Schema)>,
    /// Whether the method lists `Repeatability-Request-ID`.
    pub(crate) repeatable: bool,
    /// The success status (the first response that is not `default`).
    pub(crate) success: u16,
}

impl Operation {
    /// The path parameters of `path` if it matches this operation's template.
    pub(crate) fn matches(&self, method: &str, path: &str) -> Option<Vec<(String, String)>> {
        if !self.method.eq_ignore_ascii_case(method) {
            return None;
        }
        let mut params = Vec::new();
        let (mut template, mut rest) = (self.path.as_str(), path);
        loop {
            match template.find('{') {
                None => return (template == rest).then_some(params),
                Some(open) => {
                    let close = template[open..].find('}')? + open;
                    if rest.get(..open)? != &template[..open] {
                        return None;
                    }
                    rest = &rest[open..];
                    let name = &template[open + 1..close];
                    template = &template[close + 1..];
                    // A parameter runs to the next literal character of the template (`:`,
                    // `/`) or the end.
                    let end = match template.chars().next() {
                        Some(c) => rest.find(c)?,
                        None => rest.len(),
                    };
                    if end == 0 || rest[..end].contains('/') {
                        return None;
                    }
                    params.push((name.to_owned(), rest[..end].to_owned()));
                    rest = &rest[end..];
                }
            }
        }
    }
}

/// Reads every operation of the reference.
pub(crate) fn operations() -> Result<Vec<Operation>, String> {
    let lines: Vec<&str> = REFERENCE.lines().collect();
    let mut operations = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = lines[i].trim().strip_suffix(" (new)") else {
            i += 1;
            continue;
        };
        let start = i;
        i += 1;
        while i < lines.len() && !lines[i].trim().ends_with(" (new)") {
            i += 1;
        }
        operations.push(operation(name, &lines[start..i])?);
    }
    if operations.is_empty() {
        return Err("no operations in the reference".to_owned());
    }
    Ok(operations)
}

fn operation(name: &str, lines: &[&str]) -> Result<Operation, String> {
    let err = |why: &str| format!("reference, {name}: {why}");
    let (method, path) = lines
        .iter()
        .find_map(|l| {
            // `POST:` then a no-break space and a space, then the path.
            let (method, path) = l.split_once(':')?;
            matches!(method, "GET" | "POST" | "DELETE" | "PUT" | "PATCH")
                .then(|| (method.to_owned(), path.trim().to_owned()))
        })
        .ok_or_else(|| err("no `METHOD: /path` line"))?;
    // Sections: the request, then responses, each a tree after its marker line.
    let mut sections: Vec<(String, Vec<&str>)> = Vec::new();
    for line in lines {
        let line = line.trim();
        if line.starts_with('⚼') || line.starts_with('⚐') {
            sections.push((line.to_owned(), Vec::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            if !line.starts_with(&format!("{method}:")) {
                body.push(line);
            }
        }
    }
    let (_, request) = sections
        .iter()
        .find(|(marker, _)| marker.starts_with('⚼'))
        .ok_or_else(|| err("no request"))?;
    let request = parse_tree(request).map_err(|e| err(&e))?;
    let Schema::Object(params) = request else {
        return Err(err("the request is not an object"));
    };
    let repeatable = params.contains_key("Repeatability-Request-ID");
    let body = params
        .into_iter()
        .find(|(_, schema)| matches!(schema, Schema::Object(_)));
    let success = sections
        .iter()
        .filter_map(|(marker, _)| {
            let status = marker.split_once("Response (")?.1.strip_suffix(')')?;
            status.parse::<u16>().ok()
        })
        .next()
        .ok_or_else(|| err("no success response"))?;
    Ok(Operation {
        name: name.to_owned(),
        method,
        path,
        body,
        repeatable,
        success,
    })
}

/// Parses `{ name: type , … }` trees.
fn parse_tree(lines: &[&str]) -> Result<Schema, String> {
    let text = lines.join(" ");
    let mut tokens = text
        .split_whitespace()
        .flat_map(|t| if t == "{}" { vec!["{", "}"] } else { vec![t] })
        .peekable();
    let schema = parse_value(&mut tokens)?;
    Ok(schema)
}

fn parse_value<'a, I: Iterator<Item = &'a str>>(
    tokens: &mut std::iter::Peekable<I>,
) -> Result<Schema, String> {
    match tokens.next() {
        Some("{") => {
            let mut fields = BTreeMap::new();
            loop {
                match tokens.next() {
                    Some("}") => break,
                    Some(key) => {
                        let key = key
                            .strip_suffix(':')
                            .ok_or_else(|| format!("expected `name:`, found `{key}`"))?;
                        let value = parse_value(tokens)?;
                        expect_comma(tokens)?;
                        fields.insert(key.to_owned(), value);
                    }
                    None => return Err("unclosed `{`".to_owned()),
                }
            }
            Ok(Schema::Object(fields))
        }
        Some("[") => {
            let item = parse_value(tokens)?;
            expect_comma(tokens)?;
            match tokens.next() {
                Some("]") => Ok(Schema::Array(Box::new(item))),
                other => Err(format!("expected `]`, found {other:?}")),
            }
        }
        Some("string") => Ok(Schema::String),
        Some("boolean") => Ok(Schema::Boolean),
        Some("integer") => Ok(Schema::Integer),
        Some("enum") => Ok(Schema::Enum),
        Some("object") => Ok(Schema::AnyObject),
        other => Err(format!("unexpected {other:?}")),
    }
}

fn expect_comma<'a, I: Iterator<Item = &'a str>>(
    tokens: &mut std::iter::Peekable<I>,
) -> Result<(), String> {
    match tokens.next() {
        Some(",") => Ok(()),
        other => Err(format!("expected `,`, found {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_of_the_reference_is_read() {
        let ops = operations().unwrap();
        assert_eq!(ops.len(), 33, "the reference lists 33 methods");
        let answer = ops.iter().find(|o| o.name == "AnswerCall").unwrap();
        assert_eq!(
            (answer.method.as_str(), answer.path.as_str()),
            ("POST", "/calling/callConnections:answer")
        );
        assert_eq!(answer.success, 200);
        assert!(answer.repeatable);
        let (name, Schema::Object(body)) = answer.body.as_ref().unwrap() else {
            panic!("an object body");
        };
        assert_eq!(name, "answerCallRequest");
        let Schema::Object(streaming) = &body["mediaStreamingOptions"] else {
            panic!("an object");
        };
        assert_eq!(streaming["audioFormat"], Schema::Enum);
        assert_eq!(streaming["enableBidirectional"], Schema::Boolean);
        let play = ops.iter().find(|o| o.name == "CallMedia_Play").unwrap();
        assert!(!play.repeatable);
        assert_eq!(play.success, 202);
        let terminate = ops
            .iter()
            .find(|o| o.name == "CallConnection_TerminateCall")
            .unwrap();
        assert!(terminate.body.is_none());
        let create = ops.iter().find(|o| o.name == "CreateCall").unwrap();
        assert_eq!(create.success, 201);
    }

    #[test]
    fn paths_match_their_templates() {
        let ops = operations().unwrap();
        let find = |method: &str, path: &str| {
            ops.iter()
                .find_map(|o| o.matches(method, path).map(|p| (o.name.clone(), p)))
        };
        assert_eq!(
            find("POST", "/calling/callConnections:answer").unwrap().0,
            "AnswerCall"
        );
        let (name, params) = find("POST", "/calling/callConnections/abc-1:play").unwrap();
        assert_eq!(name, "CallMedia_Play");
        assert_eq!(
            params,
            [("callConnectionId".to_owned(), "abc-1".to_owned())]
        );
        let (name, params) =
            find("GET", "/calling/callConnections/c/participants/4%3A%2B1").unwrap();
        assert_eq!(name, "CallConnection_GetParticipant");
        assert_eq!(params[1].1, "4%3A%2B1");
        assert_eq!(
            find("DELETE", "/calling/callConnections/c").unwrap().0,
            "CallConnection_HangupCall"
        );
        assert_eq!(
            find("GET", "/calling/callConnections/c").unwrap().0,
            "CallConnection_GetCall"
        );
        assert!(find("POST", "/calling/callConnections/c:dance").is_none());
        assert!(find("POST", "/calling/callConnections/:play").is_none());
    }
}
