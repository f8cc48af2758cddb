//! The speech-to-text abstraction every engine implements.

/// Which kind of result a [`Recognizer::recognize`] call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The utterance so far, while it is still going on: best effort, may be skipped when the
    /// engine is busy. Engines may decode more cheaply here.
    Partial,
    /// The whole utterance, once it has ended: the result that is kept.
    Final,
    /// A whole utterance of a call that was over capacity, transcribed after it hung up: kept
    /// like a final, but a shared engine runs it behind every live call's work.
    AfterCall,
}

/// One recognized word with its timing inside the utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct RecognizedWord {
    /// The word.
    pub text: String,
    /// Start, in seconds from the start of the utterance.
    pub start_secs: f64,
    /// End, in seconds from the start of the utterance.
    pub end_secs: f64,
}

/// What an engine heard in one utterance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Recognition {
    /// The text; empty when the engine heard no words (noise, a cough).
    pub text: String,
    /// 0..1, when the engine gives one.
    pub confidence: Option<f64>,
    /// Word timings, when the engine gives them.
    pub words: Vec<RecognizedWord>,
}

/// A speech-to-text engine failed.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// The engine cannot be set up (model missing, server address wrong): the message says
    /// what to do.
    #[error("{0}")]
    Setup(String),
    /// This utterance failed (a server went away, a decode error); the next may succeed.
    #[error("{0}")]
    Utterance(String),
    /// The engine is too busy for this request: a partial that waited too long, or a queue
    /// that is full. Nothing is wrong with the utterance.
    #[error("the speech engine is busy")]
    Busy,
}

/// A speech-to-text engine: one utterance of 16 kHz mono audio in, its text out.
///
/// Calls block (an engine decodes in-process or waits on a server) and run on the
/// [`Transcriber`](crate::Transcriber)'s blocking thread, one at a time per call. A
/// recognizer is made per call by its engine's factory, so it may keep per-call state (a
/// connection); what is costly to load (a model) is shared between calls behind an `Arc`.
pub trait Recognizer: Send + 'static {
    /// Transcribes `samples` (16 kHz, mono, in [-1, 1]): the utterance from its start.
    fn recognize(&mut self, samples: &[f32], pass: Pass) -> Result<Recognition, SpeechError>;

    /// Starts a partial result of `samples` without waiting for it, if this engine can: the
    /// transcriber goes on with the call's audio (and cuts the utterance's end on time) while
    /// the engine works, and collects the result later. `None` (the default): it cannot, and
    /// partials are asked for with [`Recognizer::recognize`].
    fn start_partial(&mut self, samples: &[f32]) -> Option<Pending> {
        let _ = samples;
        None
    }

    /// Whether [`Pass::Partial`] results are worth asking for. An engine that only answers a
    /// whole utterance (a Wyoming server) says `false` and is only asked for finals.
    fn partials(&self) -> bool {
        false
    }
}

/// A result on its way ([`Recognizer::start_partial`]). Dropping it gives it up: an engine
/// that has not started on it yet never will.
#[derive(Debug)]
pub struct Pending {
    answer: std::sync::mpsc::Receiver<Result<Recognition, SpeechError>>,
    given_up: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Pending {
    /// A result that `answer` will carry; `given_up` is set when it is dropped.
    pub fn new(
        answer: std::sync::mpsc::Receiver<Result<Recognition, SpeechError>>,
        given_up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        Pending { answer, given_up }
    }

    /// A result that is already there.
    pub fn ready(result: Result<Recognition, SpeechError>) -> Self {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let _ = reply.send(result);
        Pending::new(answer, std::sync::Arc::default())
    }

    /// Waits for the result.
    pub fn wait(self) -> Result<Recognition, SpeechError> {
        self.answer
            .recv()
            .unwrap_or_else(|_| Err(SpeechError::Utterance("the speech engine stopped".into())))
    }

    /// The result, if it has come (an engine that went away answers an error).
    pub fn try_result(&self) -> Option<Result<Recognition, SpeechError>> {
        match self.answer.try_recv() {
            Ok(result) => Some(result),
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Some(Err(SpeechError::Utterance(
                "the speech engine stopped".into(),
            ))),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.given_up
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

/// An engine's shared state (a loaded model, a decoder pool, a server's address), built once
/// per route: it makes each call's [`Recognizer`], cheaply and without I/O.
///
/// Any `Fn() -> Box<dyn Recognizer>` closure is an engine.
pub trait Engine: Send + Sync + 'static {
    /// A recognizer for one call (or one file).
    fn recognizer(&self) -> Box<dyn Recognizer>;
}

impl<F> Engine for F
where
    F: Fn() -> Box<dyn Recognizer> + Send + Sync + 'static,
{
    fn recognizer(&self) -> Box<dyn Recognizer> {
        self()
    }
}
