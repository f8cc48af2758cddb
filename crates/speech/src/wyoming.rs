//! `wyoming`: speech-to-text on any [Wyoming](https://github.com/OHF-Voice/wyoming) ASR server
//! (`wyoming-faster-whisper`, `wyoming-whisper-cpp`, Home Assistant's add-ons…).
//!
//! Each utterance the [`Transcriber`] cuts goes to the server on a TCP connection of its own:
//! `transcribe`, `audio-start`, `audio-chunk`s of 16 kHz PCM16 mono, `audio-stop`; the server
//! answers with one `transcript`. On the wire every event is a JSON header line (`type`,
//! `version`, and the lengths of what follows), then its JSON data, then its binary payload.
//!
//! ```toml
//! [pipeline]
//! processors = ["wav", "transcript", "wyoming"]
//! [pipeline.settings.wyoming]
//! uri = "tcp://127.0.0.1:10300"
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use mediagate_sinks::BuildError;
use mediagate_sinks::settings::{invalid, parse};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    Pass, Recognition, Recognizer, SAMPLE_RATE_HZ, SpeechError, Transcriber, TranscriberSettings,
};

/// The registry name.
pub const NAME: &str = "wyoming";

/// The protocol version we speak (the events used here have not changed since 1.0).
const VERSION: &str = "1.5.2";
/// Samples per `audio-chunk`: 100 ms.
const CHUNK: usize = 1_600;
/// Longest header line or data block accepted from a server.
const MAX_JSON: usize = 1024 * 1024;

/// `[pipeline.settings.wyoming]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WyomingSettings {
    /// The server: `tcp://host:port`. Required.
    pub uri: Option<String>,
    /// The language to transcribe (`en`), if the server should not guess.
    pub language: Option<String>,
    /// How long one utterance may take, connection to transcript. Default 30 s.
    pub timeout_secs: u64,
    /// How utterances are cut.
    pub utterances: TranscriberSettings,
}

impl Default for WyomingSettings {
    fn default() -> Self {
        WyomingSettings {
            uri: None,
            language: None,
            timeout_secs: 30,
            utterances: TranscriberSettings::default(),
        }
    }
}

/// A Wyoming server's address, from `tcp://host:port`.
fn address(uri: &str) -> Result<String, String> {
    let rest = uri
        .strip_prefix("tcp://")
        .ok_or_else(|| format!("uri `{uri}` must be tcp://host:port"))?;
    let valid = rest
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if valid {
        Ok(rest.to_owned())
    } else {
        Err(format!("uri `{uri}` must be tcp://host:port"))
    }
}

/// A client of one Wyoming ASR server.
#[derive(Debug, Clone)]
pub struct WyomingClient {
    address: String,
    language: Option<String>,
    timeout: Duration,
}

impl WyomingClient {
    /// A client of the server at `uri` (`tcp://host:port`).
    pub fn new(uri: &str, language: Option<String>, timeout: Duration) -> Result<Self, String> {
        Ok(WyomingClient {
            address: address(uri)?,
            language,
            timeout,
        })
    }

    /// Transcribes one utterance of 16 kHz mono audio in [-1, 1]. Blocking.
    pub fn transcribe(&self, samples: &[f32]) -> Result<String, SpeechError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            SpeechError::Utterance(format!("wyoming {}: {what}: {e}", self.address))
        };
        let addr = self
            .address
            .to_socket_addrs()
            .map_err(|e| failed("cannot resolve", &e))?
            .next()
            .ok_or_else(|| failed("cannot resolve", &"no address"))?;
        let stream = TcpStream::connect_timeout(&addr, self.timeout)
            .map_err(|e| failed("cannot connect", &e))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| failed("socket", &e))?;
        let mut writer = std::io::BufWriter::new(&stream);
        let format = json!({"rate": SAMPLE_RATE_HZ, "width": 2, "channels": 1});
        let mut transcribe = json!({});
        if let Some(language) = &self.language {
            transcribe["language"] = json!(language);
        }
        let mut send = |kind: &str, data: &Value, payload: &[u8]| {
            write_event(&mut writer, kind, data, payload).map_err(|e| failed("cannot send", &e))
        };
        send("transcribe", &transcribe, &[])?;
        send("audio-start", &format, &[])?;
        let mut pcm = Vec::with_capacity(CHUNK * 2);
        for chunk in samples.chunks(CHUNK) {
            pcm.clear();
            pcm.extend(
                chunk
                    .iter()
                    .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32_767.0) as i16).to_le_bytes()),
            );
            send("audio-chunk", &format, &pcm)?;
        }
        send("audio-stop", &json!({}), &[])?;
        writer.flush().map_err(|e| failed("cannot send", &e))?;
        drop(writer);
        let mut reader = BufReader::new(&stream);
        loop {
            let (kind, data) = read_event(&mut reader).map_err(|e| failed("bad answer", &e))?;
            match kind.as_str() {
                "transcript" => {
                    return Ok(data["text"].as_str().unwrap_or_default().to_owned());
                }
                "error" => {
                    let text = data["text"].as_str().unwrap_or("(no text)");
                    return Err(failed("server error", &text));
                }
                // Streaming servers may send transcript-start/-chunk first; the final
                // `transcript` holds the whole text.
                _ => continue,
            }
        }
    }
}

/// Writes one event: header line, JSON data, payload.
fn write_event(
    out: &mut impl Write,
    kind: &str,
    data: &Value,
    payload: &[u8],
) -> std::io::Result<()> {
    let data = serde_json::to_vec(data)?;
    let mut header = json!({"type": kind, "version": VERSION, "data_length": data.len()});
    if !payload.is_empty() {
        header["payload_length"] = json!(payload.len());
    }
    let mut line = serde_json::to_vec(&header)?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.write_all(&data)?;
    out.write_all(payload)
}

/// Reads one event: its type and data (inline in the header, or after it); the payload is
/// skipped (an ASR server sends none we need).
fn read_event(input: &mut impl BufRead) -> Result<(String, Value), String> {
    let mut line = Vec::new();
    input
        .take(MAX_JSON as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| e.to_string())?;
    if line.is_empty() {
        return Err("the server closed the connection".into());
    }
    let header: Value =
        serde_json::from_slice(&line).map_err(|e| format!("header is not JSON: {e}"))?;
    let kind = header["type"]
        .as_str()
        .ok_or("header has no type")?
        .to_owned();
    let length = |key: &str| header[key].as_u64().unwrap_or(0);
    let mut data = header.get("data").cloned().unwrap_or_else(|| json!({}));
    let data_length = length("data_length");
    if data_length > MAX_JSON as u64 {
        return Err(format!("data of {data_length} bytes"));
    }
    if data_length > 0 {
        let mut bytes = vec![0; data_length as usize];
        input.read_exact(&mut bytes).map_err(|e| e.to_string())?;
        let extra: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("data is not JSON: {e}"))?;
        if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), extra) {
            data.extend(extra);
        }
    }
    let payload = length("payload_length");
    std::io::copy(&mut input.take(payload), &mut std::io::sink()).map_err(|e| e.to_string())?;
    Ok((kind, data))
}

impl Recognizer for WyomingClient {
    fn recognize(&mut self, samples: &[f32], _pass: Pass) -> Result<Recognition, SpeechError> {
        Ok(Recognition {
            text: self.transcribe(samples)?,
            ..Recognition::default()
        })
    }
}

/// Builds a `wyoming` transcriber from its settings. Connects to nothing until speech comes.
pub fn build(value: &Value) -> Result<Transcriber, BuildError> {
    let settings: WyomingSettings = parse(NAME, value)?;
    let uri = settings
        .uri
        .as_deref()
        .ok_or_else(|| invalid(NAME, "uri is required (tcp://host:port of the server)"))?;
    if !(1..=600).contains(&settings.timeout_secs) {
        return Err(invalid(NAME, "timeout_secs must be 1..=600"));
    }
    let client = WyomingClient::new(
        uri,
        settings.language,
        Duration::from_secs(settings.timeout_secs),
    )
    .map_err(|e| invalid(NAME, e))?;
    Transcriber::new(NAME, settings.utterances, Box::new(client))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_with_data_and_payload() {
        let mut wire = Vec::new();
        write_event(
            &mut wire,
            "audio-chunk",
            &json!({"rate": 16000}),
            &[1, 2, 3],
        )
        .unwrap();
        write_event(&mut wire, "transcript", &json!({"text": "hello"}), &[]).unwrap();
        let mut input = std::io::Cursor::new(wire);
        let (kind, data) = read_event(&mut input).unwrap();
        assert_eq!(
            (kind.as_str(), data["rate"].as_u64()),
            ("audio-chunk", Some(16000))
        );
        let (kind, data) = read_event(&mut input).unwrap();
        assert_eq!(
            (kind.as_str(), data["text"].as_str()),
            ("transcript", Some("hello"))
        );
        assert!(read_event(&mut input).is_err(), "end of stream is an error");
    }

    #[test]
    fn inline_data_is_read_too() {
        let wire = b"{\"type\":\"transcript\",\"data\":{\"text\":\"hi there\"}}\n".to_vec();
        let (kind, data) = read_event(&mut std::io::Cursor::new(wire)).unwrap();
        assert_eq!(
            (kind.as_str(), data["text"].as_str()),
            ("transcript", Some("hi there"))
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        for bad in [
            json!({}),
            json!({"uri": "http://x:1"}),
            json!({"uri": "tcp://x"}),
            json!({"uri": "tcp://x:1", "timeout_secs": 0}),
            json!({"uri": "tcp://x:1", "urI": 3}),
        ] {
            assert!(build(&bad).is_err(), "{bad}");
        }
        assert!(build(&json!({"uri": "tcp://127.0.0.1:10300"})).is_ok());
    }
}
