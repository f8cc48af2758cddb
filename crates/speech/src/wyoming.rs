//! `wyoming`: speech-to-text on any [Wyoming](https://github.com/OHF-Voice/wyoming) ASR server
//! (`wyoming-faster-whisper`, `wyoming-whisper-cpp`, Home Assistant's add-ons…).
//!
//! Each utterance the [`Transcriber`](crate::Transcriber) cuts goes to a server on a TCP
//! connection of its own:
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
//!
//! Capacity grows with more servers (on other machines): `uris` lists them, and one
//! [`ServerPool`] per route spreads every call's utterances over them, each to the server with
//! the fewest in flight (ties in turn). A server that cannot be reached, times out or hangs up
//! is left alone for a backoff (1 s, doubling up to 30 s, then probed by a real utterance) and
//! the utterance goes to another server with what is left of its deadline; only when no
//! server is left does the utterance fail (counted in `errors`). Each server going down or
//! coming back is logged once.
//!
//! ```toml
//! [pipeline.settings.wyoming]
//! uris = ["tcp://10.0.0.7:10300", "tcp://10.0.0.8:10300"]
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mediagate_pipeline::BuildError;
use mediagate_pipeline::registry::{invalid, parse};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Recognizer, SAMPLE_RATE_HZ, TranscriberFactory, TranscriberSettings};

mod pool;

pub use pool::{Attempt, FIRST_BACKOFF, MAX_BACKOFF, PoolRecognizer, ServerPool};

/// The registry name.
pub const NAME: &str = "wyoming";

/// The protocol version we speak (the events used here have not changed since 1.0).
const VERSION: &str = "1.5.2";
/// Samples per `audio-chunk`: 100 ms.
const CHUNK: usize = 1_600;
/// Longest header line accepted from a server (a `transcript` header is a few hundred bytes).
pub const MAX_HEADER_BYTES: u64 = 64 * 1024;
/// Most bytes accepted in one answer, all its events together (headers, data, payloads): a
/// transcript of 30 s of speech is a few KiB, even with streamed chunks before it.
pub const MAX_ANSWER_BYTES: u64 = 1024 * 1024;

/// `[pipeline.settings.wyoming]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WyomingSettings {
    /// The server: `tcp://host:port`. One server; `uris` for several. One of the two is
    /// required.
    pub uri: Option<String>,
    /// The servers, `tcp://host:port` each: utterances are spread over them, and one that
    /// goes away is skipped. Not empty, no repeats.
    pub uris: Option<Vec<String>>,
    /// The language to transcribe (`en`), if the server should not guess.
    pub language: Option<String>,
    /// Longest wait for the TCP connection. Default 5 s.
    pub connect_timeout_secs: u64,
    /// One utterance's deadline, connection to transcript, is this plus
    /// `timeout_audio_factor` × the utterance's length. Default 10 s.
    pub timeout_secs: u64,
    /// Seconds the server is given per second of audio, on top of `timeout_secs`. Default 2.
    pub timeout_audio_factor: f64,
    /// How utterances are cut.
    pub utterances: TranscriberSettings,
}

impl Default for WyomingSettings {
    fn default() -> Self {
        WyomingSettings {
            uri: None,
            uris: None,
            language: None,
            connect_timeout_secs: 5,
            timeout_secs: 10,
            timeout_audio_factor: 2.0,
            utterances: TranscriberSettings::default(),
        }
    }
}

/// How long a [`WyomingClient`] waits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeouts {
    /// Longest wait for the TCP connection (within the deadline).
    pub connect: Duration,
    /// The deadline's fixed part.
    pub base: Duration,
    /// Seconds added to the deadline per second of audio.
    pub audio_factor: f64,
}

impl Timeouts {
    /// The whole request's deadline, from connecting to the transcript, for `audio` of speech.
    pub fn deadline_for(&self, audio: Duration) -> Duration {
        self.base + audio.mul_f64(self.audio_factor.clamp(0.0, 1_000.0))
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        let settings = WyomingSettings::default();
        Timeouts {
            connect: Duration::from_secs(settings.connect_timeout_secs),
            base: Duration::from_secs(settings.timeout_secs),
            audio_factor: settings.timeout_audio_factor,
        }
    }
}

/// Why one utterance's request to a Wyoming server failed. The next utterance tries again.
#[derive(Debug, thiserror::Error)]
pub enum WyomingError {
    /// The server's host name did not resolve.
    #[error("cannot resolve the address: {0}")]
    Resolve(io::Error),
    /// No TCP connection (refused, unreachable, or not within the connect timeout).
    #[error("cannot connect: {0}")]
    Connect(io::Error),
    /// The deadline passed before the transcript came (the server is slow, stuck, or sends
    /// its answer a byte at a time).
    #[error("no transcript within the deadline of {secs:.1} s")]
    Deadline {
        /// The deadline, from connecting.
        secs: f64,
    },
    /// Sending the audio failed.
    #[error("cannot send: {0}")]
    Send(io::Error),
    /// Reading the answer failed.
    #[error("cannot read the answer: {0}")]
    Receive(io::Error),
    /// The server closed the connection without a transcript.
    #[error("the server closed the connection before its transcript")]
    Closed,
    /// A header line did not end within [`MAX_HEADER_BYTES`].
    #[error("a header line longer than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLong,
    /// The answer went, or declared it would go, past [`MAX_ANSWER_BYTES`].
    #[error("an answer larger than {MAX_ANSWER_BYTES} bytes ({what} of {bytes} bytes)")]
    AnswerTooLarge {
        /// What was too large: `header`, `data` or `payload`.
        what: &'static str,
        /// Its size, as declared or as read.
        bytes: u64,
    },
    /// The answer is not Wyoming.
    #[error("malformed answer: {0}")]
    Malformed(String),
    /// The server answered with an `error` event.
    #[error("server error: {0}")]
    Server(String),
    /// Every server is down, each waiting out its backoff: the utterance went nowhere.
    #[error("no server is up ({servers} down, each tried again after its backoff)")]
    AllDown {
        /// How many servers there are.
        servers: usize,
    },
    /// No server gave the utterance its transcript: each one tried, in order (a second only
    /// when the first could not be reached).
    #[error("{}", pool::describe(.attempts))]
    Failed {
        /// The servers tried and their errors.
        attempts: Vec<Attempt>,
    },
}

impl WyomingError {
    /// A read or write that timed out is the deadline passing.
    fn timed_out(self, deadline: Duration) -> Self {
        match &self {
            WyomingError::Send(e) | WyomingError::Receive(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                ) =>
            {
                WyomingError::Deadline {
                    secs: deadline.as_secs_f64(),
                }
            }
            _ => self,
        }
    }

    /// Whether the server could not be reached, timed out or hung up: it is marked down and
    /// the utterance tried on another. Otherwise it answered, if wrongly.
    fn unreachable(&self) -> bool {
        matches!(
            self,
            WyomingError::Resolve(_)
                | WyomingError::Connect(_)
                | WyomingError::Deadline { .. }
                | WyomingError::Send(_)
                | WyomingError::Receive(_)
                | WyomingError::Closed
        )
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
    timeouts: Timeouts,
}

impl WyomingClient {
    /// A client of the server at `uri` (`tcp://host:port`).
    pub fn new(uri: &str, language: Option<String>, timeouts: Timeouts) -> Result<Self, String> {
        Ok(WyomingClient {
            address: address(uri)?,
            language,
            timeouts,
        })
    }

    /// Transcribes one utterance of 16 kHz mono audio in [-1, 1]. Blocking, at most for the
    /// utterance's deadline ([`Timeouts::deadline_for`]); reads at most
    /// [`MAX_ANSWER_BYTES`] of answer.
    pub fn transcribe(&self, samples: &[f32]) -> Result<String, WyomingError> {
        let audio = Duration::from_secs_f64(samples.len() as f64 / f64::from(SAMPLE_RATE_HZ));
        let allowed = self.timeouts.deadline_for(audio);
        let deadline = Instant::now() + allowed;
        self.request(samples, deadline)
            .map_err(|e| e.timed_out(allowed))
    }

    fn request(&self, samples: &[f32], deadline: Instant) -> Result<String, WyomingError> {
        let addr = self
            .address
            .to_socket_addrs()
            .map_err(WyomingError::Resolve)?
            .next()
            .ok_or_else(|| WyomingError::Resolve(io::Error::other("no address")))?;
        let connect = self
            .timeouts
            .connect
            .min(deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
        let stream = TcpStream::connect_timeout(&addr, connect).map_err(WyomingError::Connect)?;
        stream.set_nodelay(true).map_err(WyomingError::Connect)?;
        let bounded = DeadlineStream {
            stream: &stream,
            deadline,
        };
        let mut writer = io::BufWriter::new(bounded);
        send_audio(&mut writer, self.language.as_deref(), samples).map_err(WyomingError::Send)?;
        writer.flush().map_err(WyomingError::Send)?;
        drop(writer);
        read_transcript(&mut BufReader::new(bounded))
    }
}

/// The request: `transcribe`, `audio-start`, the audio in chunks, `audio-stop`.
fn send_audio(out: &mut impl Write, language: Option<&str>, samples: &[f32]) -> io::Result<()> {
    let format = json!({"rate": SAMPLE_RATE_HZ, "width": 2, "channels": 1});
    let mut transcribe = json!({});
    if let Some(language) = language {
        transcribe["language"] = json!(language);
    }
    write_event(out, "transcribe", &transcribe, &[])?;
    write_event(out, "audio-start", &format, &[])?;
    let mut pcm = Vec::with_capacity(CHUNK * 2);
    for chunk in samples.chunks(CHUNK) {
        pcm.clear();
        pcm.extend(
            chunk
                .iter()
                .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32_767.0) as i16).to_le_bytes()),
        );
        write_event(out, "audio-chunk", &format, &pcm)?;
    }
    write_event(out, "audio-stop", &json!({}), &[])
}

/// The answer's events up to its `transcript` (or `error`), within [`MAX_ANSWER_BYTES`].
fn read_transcript(input: &mut impl BufRead) -> Result<String, WyomingError> {
    let mut budget = MAX_ANSWER_BYTES;
    loop {
        let (kind, data) = read_event(input, &mut budget)?;
        match kind.as_str() {
            "transcript" => return Ok(data["text"].as_str().unwrap_or_default().to_owned()),
            "error" => {
                let text = data["text"].as_str().unwrap_or("(no text)");
                return Err(WyomingError::Server(text.to_owned()));
            }
            // Streaming servers may send transcript-start/-chunk first; the final
            // `transcript` holds the whole text.
            _ => continue,
        }
    }
}

/// A TCP stream whose every read and write ends by one deadline: a server cannot keep a
/// request going past it, however it trickles its bytes.
#[derive(Clone, Copy)]
struct DeadlineStream<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl DeadlineStream<'_> {
    /// The time left, or `TimedOut` when there is none.
    fn left(&self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
        } else {
            Ok(left)
        }
    }
}

impl Read for DeadlineStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

impl Write for DeadlineStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        let mut stream = self.stream;
        stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes one event: header line, JSON data, payload.
fn write_event(out: &mut impl Write, kind: &str, data: &Value, payload: &[u8]) -> io::Result<()> {
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
/// skipped (an ASR server sends none we need). Everything read, and every length declared,
/// comes out of `budget`: an event that would overdraw it is refused before it is read.
fn read_event(input: &mut impl BufRead, budget: &mut u64) -> Result<(String, Value), WyomingError> {
    let limit = MAX_HEADER_BYTES.min(*budget);
    let mut line = Vec::new();
    input
        .take(limit)
        .read_until(b'\n', &mut line)
        .map_err(WyomingError::Receive)?;
    *budget -= line.len() as u64;
    if line.last() != Some(&b'\n') {
        return Err(match line.len() as u64 {
            0 => WyomingError::Closed,
            n if n == MAX_HEADER_BYTES => WyomingError::HeaderTooLong,
            n if n == limit => WyomingError::AnswerTooLarge {
                what: "header",
                bytes: n,
            },
            _ => WyomingError::Malformed("the connection closed inside a header line".into()),
        });
    }
    let header: Value = serde_json::from_slice(&line)
        .map_err(|e| WyomingError::Malformed(format!("header is not JSON: {e}")))?;
    let kind = header["type"]
        .as_str()
        .ok_or_else(|| WyomingError::Malformed("header has no type".into()))?
        .to_owned();
    let mut length = |what: &'static str| {
        let bytes = header[format!("{what}_length")].as_u64().unwrap_or(0);
        if bytes > *budget {
            return Err(WyomingError::AnswerTooLarge { what, bytes });
        }
        *budget -= bytes;
        Ok(bytes)
    };
    let data_length = length("data")?;
    let payload_length = length("payload")?;
    let mut data = header.get("data").cloned().unwrap_or_else(|| json!({}));
    if data_length > 0 {
        let mut bytes = Vec::new();
        input
            .take(data_length)
            .read_to_end(&mut bytes)
            .map_err(WyomingError::Receive)?;
        if bytes.len() as u64 != data_length {
            return Err(WyomingError::Closed);
        }
        let extra: Value = serde_json::from_slice(&bytes)
            .map_err(|e| WyomingError::Malformed(format!("data is not JSON: {e}")))?;
        if let (Some(data), Value::Object(extra)) = (data.as_object_mut(), extra) {
            data.extend(extra);
        }
    }
    let skipped = io::copy(&mut input.take(payload_length), &mut io::sink())
        .map_err(WyomingError::Receive)?;
    if skipped != payload_length {
        return Err(WyomingError::Closed);
    }
    Ok((kind, data))
}

/// Builds the `wyoming` factory from its settings. Connects to nothing until speech comes.
pub fn build(value: &Value) -> Result<TranscriberFactory, BuildError> {
    let settings: WyomingSettings = parse(NAME, value)?;
    let listed = settings.uris.is_some();
    let uris = match (settings.uri, settings.uris) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                NAME,
                "set uri (one server) or uris (a list of servers), not both",
            ));
        }
        (Some(uri), None) => vec![uri],
        (None, Some(uris)) if uris.is_empty() => {
            return Err(invalid(NAME, "uris must list at least one server"));
        }
        (None, Some(uris)) => uris,
        (None, None) => {
            return Err(invalid(
                NAME,
                "uri or uris is required (tcp://host:port of each server)",
            ));
        }
    };
    if let Some((i, uri)) = uris
        .iter()
        .enumerate()
        .find(|(i, uri)| uris[..*i].contains(uri))
    {
        return Err(invalid(NAME, format!("uris[{i}] repeats `{uri}`")));
    }
    if !(1..=60).contains(&settings.connect_timeout_secs) {
        return Err(invalid(NAME, "connect_timeout_secs must be 1..=60"));
    }
    if !(1..=600).contains(&settings.timeout_secs) {
        return Err(invalid(NAME, "timeout_secs must be 1..=600"));
    }
    if !(0.0..=60.0).contains(&settings.timeout_audio_factor) {
        return Err(invalid(NAME, "timeout_audio_factor must be 0..=60"));
    }
    let timeouts = Timeouts {
        connect: Duration::from_secs(settings.connect_timeout_secs),
        base: Duration::from_secs(settings.timeout_secs),
        audio_factor: settings.timeout_audio_factor,
    };
    let clients = uris
        .into_iter()
        .enumerate()
        .map(|(i, uri)| {
            let client = WyomingClient::new(&uri, settings.language.clone(), timeouts)
                .map_err(|e| invalid(NAME, if listed { format!("uris[{i}]: {e}") } else { e }))?;
            Ok((uri, client))
        })
        .collect::<Result<Vec<_>, BuildError>>()?;
    let pool = Arc::new(ServerPool::new(clients));
    TranscriberFactory::new(NAME, settings.utterances, move || {
        Box::new(PoolRecognizer(Arc::clone(&pool))) as Box<dyn Recognizer>
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use std::net::TcpListener;

    use super::*;

    fn read(input: &mut impl BufRead) -> Result<(String, Value), WyomingError> {
        let mut budget = MAX_ANSWER_BYTES;
        read_event(input, &mut budget)
    }

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
        let mut input = io::Cursor::new(wire);
        let (kind, data) = read(&mut input).unwrap();
        assert_eq!(
            (kind.as_str(), data["rate"].as_u64()),
            ("audio-chunk", Some(16000))
        );
        let (kind, data) = read(&mut input).unwrap();
        assert_eq!(
            (kind.as_str(), data["text"].as_str()),
            ("transcript", Some("hello"))
        );
        assert!(
            matches!(read(&mut input), Err(WyomingError::Closed)),
            "end of stream is an error"
        );
    }

    #[test]
    fn inline_data_is_read_too() {
        let wire = b"{\"type\":\"transcript\",\"data\":{\"text\":\"hi there\"}}\n".to_vec();
        let (kind, data) = read(&mut io::Cursor::new(wire)).unwrap();
        assert_eq!(
            (kind.as_str(), data["text"].as_str()),
            ("transcript", Some("hi there"))
        );
    }

    #[test]
    fn declared_lengths_come_out_of_the_answer_budget() {
        let wire = b"{\"type\":\"x\",\"data_length\":10}\n{\"a\":12345}".to_vec();
        let mut budget = 35; // 30 for the header line, 5 left
        let err = read_event(&mut io::Cursor::new(wire), &mut budget).unwrap_err();
        assert!(
            matches!(
                err,
                WyomingError::AnswerTooLarge {
                    what: "data",
                    bytes: 10
                }
            ),
            "{err}"
        );
        let wire = b"{\"type\":\"x\"}\n".to_vec();
        let err = read_event(&mut io::Cursor::new(wire), &mut 5).unwrap_err();
        assert!(
            matches!(
                err,
                WyomingError::AnswerTooLarge {
                    what: "header",
                    bytes: 5
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        for bad in [
            json!({}),
            json!({"uri": "http://x:1"}),
            json!({"uri": "tcp://x"}),
            json!({"uri": "tcp://x:1", "timeout_secs": 0}),
            json!({"uri": "tcp://x:1", "connect_timeout_secs": 0}),
            json!({"uri": "tcp://x:1", "timeout_audio_factor": -1.0}),
            json!({"uri": "tcp://x:1", "urI": 3}),
        ] {
            assert!(build(&bad).is_err(), "{bad}");
        }
        for (bad, says) in [
            (json!({}), "uri or uris is required"),
            (json!({"uris": []}), "uris must list at least one server"),
            (
                json!({"uri": "tcp://x:1", "uris": ["tcp://y:1"]}),
                "uri (one server) or uris",
            ),
            (
                json!({"uris": ["tcp://x:1", "tcp://y"]}),
                "uris[1]: uri `tcp://y`",
            ),
            (
                json!({"uris": ["tcp://x:1", "tcp://y:1", "tcp://x:1"]}),
                "uris[2] repeats `tcp://x:1`",
            ),
        ] {
            let err = build(&bad).err().unwrap().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        assert!(build(&json!({"uri": "tcp://127.0.0.1:10300"})).is_ok());
        assert!(build(&json!({"uris": ["tcp://127.0.0.1:10300", "tcp://[::1]:10300"]})).is_ok());
    }

    #[test]
    fn the_deadline_grows_with_the_audio() {
        let timeouts = Timeouts::default();
        assert_eq!(
            timeouts.deadline_for(Duration::from_secs(20)),
            Duration::from_secs(50)
        );
    }

    /// A fake Wyoming server on 127.0.0.1 for one request: it reads whatever the client sends
    /// (until the client closes) while `answer` writes to it.
    fn fake_server(answer: impl FnOnce(&mut TcpStream) + Send + 'static) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("tcp://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut request = stream.try_clone().unwrap();
            let drain = std::thread::spawn(move || io::copy(&mut request, &mut io::sink()));
            answer(&mut stream);
            let _ = drain.join();
        });
        uri
    }

    /// A client with a 300 ms deadline, whatever the audio.
    fn client(uri: &str) -> WyomingClient {
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            base: Duration::from_millis(300),
            audio_factor: 0.0,
        };
        WyomingClient::new(uri, Some("en".into()), timeouts).unwrap()
    }

    /// A second of audio to transcribe, and how long the request took.
    fn transcribe(uri: &str) -> (Result<String, WyomingError>, Duration) {
        let started = Instant::now();
        let result = client(uri).transcribe(&[0.1; 16_000]);
        (result, started.elapsed())
    }

    /// Writes `bytes` until the client goes away; how much was written.
    fn flood(stream: &mut TcpStream, bytes: &[u8]) -> usize {
        let mut written = 0;
        while stream.write_all(bytes).is_ok() {
            written += bytes.len();
        }
        written
    }

    #[test]
    fn a_fake_server_transcript_comes_back() {
        let uri = fake_server(|stream| {
            write_event(stream, "transcript-start", &json!({}), &[]).unwrap();
            write_event(stream, "transcript", &json!({"text": "hello"}), &[9; 100]).unwrap();
        });
        assert_eq!(transcribe(&uri).0.unwrap(), "hello");
        let uri = fake_server(|stream| {
            write_event(stream, "error", &json!({"text": "no model"}), &[]).unwrap();
        });
        let err = transcribe(&uri).0.unwrap_err();
        assert!(
            matches!(&err, WyomingError::Server(text) if text == "no model"),
            "{err}"
        );
    }

    #[test]
    fn a_server_that_never_answers_fails_at_the_deadline() {
        let uri = fake_server(|_| {});
        let (result, took) = transcribe(&uri);
        let err = result.unwrap_err();
        assert!(matches!(err, WyomingError::Deadline { .. }), "{err}");
        assert!(err.to_string().contains("0.3 s"), "{err}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn a_server_that_trickles_its_answer_fails_at_the_deadline() {
        let uri = fake_server(|stream| {
            for _ in 0..100 {
                if stream.write_all(b" ").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let (result, took) = transcribe(&uri);
        let err = result.unwrap_err();
        assert!(matches!(err, WyomingError::Deadline { .. }), "{err}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn an_endless_header_line_is_cut_at_its_limit() {
        let (written, wrote) = std::sync::mpsc::channel();
        let uri = fake_server(move |stream| {
            let _ = written.send(flood(stream, &[b'a'; 4096]));
        });
        let (result, took) = transcribe(&uri);
        let err = result.unwrap_err();
        assert!(matches!(err, WyomingError::HeaderTooLong), "{err}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        // The client stopped reading at the limit and hung up: the server could only fill
        // the sockets' buffers beyond it.
        let written = wrote.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(written < 64 * 1024 * 1024, "{written} bytes went out");
    }

    #[test]
    fn a_huge_declared_payload_or_data_is_refused_unread() {
        for (header, what) in [
            (
                r#"{"type":"transcript","payload_length":1000000000000}"#,
                "payload",
            ),
            (
                r#"{"type":"transcript","data_length":1000000000000}"#,
                "data",
            ),
        ] {
            let line = format!("{header}\n");
            let uri = fake_server(move |stream| {
                stream.write_all(line.as_bytes()).unwrap();
                flood(stream, &[0; 4096]);
            });
            let (result, took) = transcribe(&uri);
            let err = result.unwrap_err();
            assert!(
                matches!(err, WyomingError::AnswerTooLarge { what: w, bytes: 1_000_000_000_000 } if w == what),
                "{err}"
            );
            assert!(took < Duration::from_secs(2), "{took:?}");
        }
    }

    #[test]
    fn endless_small_events_stop_at_the_answer_limit() {
        let uri = fake_server(|stream| {
            let mut event = Vec::new();
            write_event(&mut event, "transcript-chunk", &json!({"text": "la"}), &[]).unwrap();
            flood(stream, &event);
        });
        let (result, took) = transcribe(&uri);
        let err = result.unwrap_err();
        assert!(matches!(err, WyomingError::AnswerTooLarge { .. }), "{err}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn a_closed_port_is_a_connect_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = client(&format!("tcp://127.0.0.1:{port}"))
            .transcribe(&[0.0; 160])
            .unwrap_err();
        assert!(matches!(err, WyomingError::Connect(_)), "{err}");
    }
}
