//! The decoder: every call into the C library, each `unsafe` block with why it is sound.

use std::ffi::{CStr, CString, c_char, c_int, c_long};
use std::os::unix::ffi::OsStrExt;
use std::ptr::{self, NonNull};
use std::sync::{Mutex, Once};

use crate::sys;
use crate::{Config, Error};

/// The name of the search [`Decoder::align`] adds for the time of one alignment.
const ALIGN_SEARCH: &CStr = c"mediagate_align";

/// Turns sphinxbase's logging off, once, before the first decoder loads.
static QUIET: Once = Once::new();
/// Held while a decoder loads: `ps_init` writes a process-wide setting (the debug level), so
/// two loads must not overlap. Decoding needs no lock.
static LOADING: Mutex<()> = Mutex::new(());

/// The type of a decoder argument, from the library's own table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgKind {
    Integer,
    Float,
    Boolean,
    Text,
}

/// The type of the decoder argument `name` (`-beam`), or `None` if the decoder has none of
/// that name.
pub(crate) fn argument_kind(name: &str) -> Option<ArgKind> {
    // SAFETY: `ps_args` returns a pointer to a static table (`ps_args_def` in
    // pocketsphinx.c), valid for the life of the process and never written.
    let mut def = unsafe { sys::ps_args() };
    while !def.is_null() {
        // SAFETY: `def` points into that table: we start at its first entry and only move on
        // while the entry is not the terminator (null name).
        let entry = unsafe { &*def };
        if entry.name.is_null() {
            break;
        }
        // SAFETY: the names in the table are static NUL-terminated C strings.
        let entry_name = unsafe { CStr::from_ptr(entry.name) };
        if entry_name.to_bytes() == name.as_bytes() {
            return Some(if entry.kind & sys::ARG_INTEGER != 0 {
                ArgKind::Integer
            } else if entry.kind & sys::ARG_FLOATING != 0 {
                ArgKind::Float
            } else if entry.kind & sys::ARG_BOOLEAN != 0 {
                ArgKind::Boolean
            } else {
                ArgKind::Text
            });
        }
        // SAFETY: this entry was not the terminator, so the next one is still in the table.
        def = unsafe { def.add(1) };
    }
    None
}

/// One recognized word of a [`Hypothesis`].
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    /// The word as the dictionary spells it (lower case for the Debian one), without the
    /// `(2)` of an alternative pronunciation.
    pub text: String,
    /// Start, in seconds from the start of the utterance.
    pub start_secs: f64,
    /// End, in seconds from the start of the utterance.
    pub end_secs: f64,
    /// The word's posterior probability, 0..1 (`None` with `-bestpath no`).
    pub confidence: Option<f64>,
}

/// What the decoder heard in one utterance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Hypothesis {
    /// The words, separated by single spaces; empty when it heard none.
    pub text: String,
    /// The path score (log domain, in the decoder's log base; higher is better). Comparable
    /// only between hypotheses of the same audio.
    pub score: i32,
    /// The posterior probability of the whole hypothesis, 0..1 (`None` with
    /// `-bestpath no`). Pocketsphinx's posteriors are optimistic: a wrong sentence often
    /// scores near 1.
    pub confidence: Option<f64>,
    /// The words with their times; silences and noises (`<sil>`, `[NOISE]`) left out.
    pub words: Vec<Word>,
}

/// A loaded PocketSphinx decoder: one model set, one utterance at a time.
///
/// Loading ([`Decoder::new`]) reads the whole model set: about 0.4 s and 90 MB of memory with
/// the Debian US English models. Keep decoders and reuse them; they do not share model data (this
/// version of the library has no way to), so each costs its own memory.
pub struct Decoder {
    raw: NonNull<sys::PsDecoder>,
    /// Feature frames per second (`-frate`, 100 by default): word times are in frames.
    frames_per_sec: f64,
    /// `-bestpath` is on: posterior probabilities are computed.
    posteriors: bool,
}

// SAFETY: a `Decoder` is the only handle to its `ps_decoder_t` (we never call `ps_retain`
// and never hand the pointer out), and everything it points to (models, search state, its
// config) is owned by it alone. The library keeps no thread-local or thread-affine state in
// it, so it may be used and freed on a thread other than the one that made it. The
// process-wide state the library does touch is set before any decoder exists (logging, in
// `QUIET`) or written only under `LOADING`.
//
// It is deliberately not `Sync`: every `ps_*` call, even a getter like `ps_get_hyp` (which
// runs the best-path search and caches it), mutates the decoder without locking, so two
// threads must never use one decoder at once. The methods take `&mut self`, and the raw
// pointer keeps the type `!Sync`.
unsafe impl Send for Decoder {}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("frames_per_sec", &self.frames_per_sec)
            .field("posteriors", &self.posteriors)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// Loads the model set of `config` (checked first with [`Config::check`]). Slow: see
    /// [`Decoder`].
    pub fn new(config: &Config) -> Result<Self, Error> {
        config.check()?;
        let mut strings: Vec<CString> = Vec::new();
        let mut push = |name: &str, value: &[u8]| -> Result<(), Error> {
            for s in [name.as_bytes(), value] {
                strings.push(CString::new(s).map_err(|_| Error::Argument {
                    name: name.to_owned(),
                    reason: "contains a NUL byte".into(),
                })?);
            }
            Ok(())
        };
        push("-hmm", config.hmm.as_os_str().as_bytes())?;
        push("-lm", config.lm.as_os_str().as_bytes())?;
        push("-dict", config.dict.as_os_str().as_bytes())?;
        let arguments = config.arguments()?;
        for (name, value) in crate::config::DEFAULTS {
            if !arguments.iter().any(|(given, _)| given == name) {
                push(name, value.as_bytes())?;
            }
        }
        for (name, value) in arguments {
            push(&name, value.as_bytes())?;
        }
        // `cmd_ln_parse_r` takes `char *argv[]` but only reads it.
        let mut argv: Vec<*mut c_char> = strings.iter().map(|s| s.as_ptr().cast_mut()).collect();
        let argc = i32::try_from(argv.len()).map_err(|_| Error::Argument {
            name: "args".into(),
            reason: "too many".into(),
        })?;

        QUIET.call_once(|| {
            // SAFETY: a null stream is the documented way to turn logging off; it only sets
            // two globals, and `Once` makes this happen before any decoder loads or logs.
            unsafe { sys::err_set_logfp(ptr::null_mut()) }
        });
        let _loading = LOADING.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: `ps_args()` is the static definition table; `argv` holds `argc` valid
        // NUL-terminated strings that outlive the call (`strings`), which copies them.
        let cmdln = unsafe {
            sys::cmd_ln_parse_r(ptr::null_mut(), sys::ps_args(), argc, argv.as_mut_ptr(), 1)
        };
        if cmdln.is_null() {
            // `Config::arguments` checked names and types; this is a value the library
            // refused after all.
            return Err(Error::Argument {
                name: "args".into(),
                reason: "refused by pocketsphinx".into(),
            });
        }
        // SAFETY: `cmdln` is a valid configuration; `ps_init` takes its own reference to it
        // (`cmd_ln_retain`) and releases it itself when it fails.
        let raw = unsafe { sys::ps_init(cmdln) };
        // SAFETY: we own one reference to `cmdln` (from `cmd_ln_parse_r`) and give it up;
        // the decoder, if any, keeps its own.
        unsafe { sys::cmd_ln_free_r(cmdln) };
        let raw = NonNull::new(raw).ok_or_else(|| Error::Load {
            hmm: config.hmm.clone(),
            lm: config.lm.clone(),
            dict: config.dict.clone(),
        })?;
        let mut decoder = Decoder {
            raw,
            frames_per_sec: 100.0,
            posteriors: false,
        };
        let frate = decoder.int_argument(c"-frate");
        if frate > 0 {
            decoder.frames_per_sec = frate as f64;
        }
        decoder.posteriors = decoder.int_argument(c"-bestpath") != 0;
        Ok(decoder)
    }

    /// An integer or boolean argument of the loaded decoder's configuration.
    fn int_argument(&mut self, name: &CStr) -> c_long {
        // SAFETY: `self.raw` is a live decoder; `ps_get_config` returns its own configuration
        // (borrowed, not to be freed), and `name` is one of the arguments every configuration
        // from `ps_args()` defines, so `cmd_ln_int_r` finds it.
        unsafe { sys::cmd_ln_int_r(sys::ps_get_config(self.raw.as_ptr()), name.as_ptr()) }
    }

    /// Decodes one whole utterance of 16 kHz mono samples. Blocking, CPU-bound: a quarter to
    /// a half of the audio's duration on one core with the Debian models.
    ///
    /// Each utterance is decoded on its own: the result does not depend on what the decoder
    /// decoded before. After an error the decoder's state is unknown: drop it and load
    /// another.
    pub fn decode(&mut self, samples: &[i16]) -> Result<Hypothesis, Error> {
        if samples.is_empty() {
            return Ok(Hypothesis::default());
        }
        self.run(samples)
    }

    /// Aligns a known text to one whole utterance (forced alignment): the hypothesis holds
    /// `words`, in order, each with where it was spoken (silences between them are allowed
    /// and left out). Every word must be in the dictionary (lower case for the Debian one):
    /// [`Error::Align`] names the first that is not. Blocking, about as costly as
    /// [`Decoder::decode`].
    ///
    /// The decoder's own search (its language model) is restored afterwards, so the decoder
    /// can go on decoding.
    pub fn align<S: AsRef<str>>(
        &mut self,
        samples: &[i16],
        words: &[S],
    ) -> Result<Hypothesis, Error> {
        let grammar = self.alignment_grammar(words)?;
        if samples.is_empty() {
            return Err(Error::Align("no audio".into()));
        }
        let ps = self.raw.as_ptr();
        // SAFETY: `ps` is live and used by this thread alone (`&mut self`); the name is
        // owned by the decoder and copied at once, before any call that could change it.
        let previous = unsafe { sys::ps_get_search(ps) };
        // SAFETY: as above: null or a NUL-terminated string of the decoder's, copied here.
        let previous =
            (!previous.is_null()).then(|| unsafe { CStr::from_ptr(previous) }.to_owned());
        // SAFETY: `ps` is live; both strings are valid NUL-terminated C strings the call
        // only reads (the grammar is parsed and copied into the new search).
        if unsafe { sys::ps_set_jsgf_string(ps, ALIGN_SEARCH.as_ptr(), grammar.as_ptr()) } < 0 {
            return Err(Error::Align("the text's grammar was refused".into()));
        }
        // SAFETY: as above; the search of that name was just added.
        let result = if unsafe { sys::ps_set_search(ps, ALIGN_SEARCH.as_ptr()) } < 0 {
            Err(Error::Align("cannot switch to the text's grammar".into()))
        } else {
            self.run(samples)
        };
        if let Some(previous) = previous {
            // SAFETY: `ps` is live; `previous` names a search the decoder still holds (we
            // only added one).
            unsafe { sys::ps_set_search(ps, previous.as_ptr()) };
        }
        // SAFETY: `ps` is live; the alignment search is no longer the current one (or the
        // decoder had none before), and nothing of ours points into it.
        unsafe { sys::ps_unset_search(ps, ALIGN_SEARCH.as_ptr()) };
        result
    }

    /// A JSGF grammar that accepts `words` in order, and nothing else.
    fn alignment_grammar<S: AsRef<str>>(&mut self, words: &[S]) -> Result<CString, Error> {
        if words.is_empty() {
            return Err(Error::Align("no words".into()));
        }
        let mut grammar = String::from("#JSGF V1.0;\ngrammar mediagate;\npublic <text> =");
        for word in words {
            let word = word.as_ref();
            // JSGF tokens: no spaces, quotes or grammar syntax; dictionary words are letters,
            // digits, apostrophes and a few marks.
            if word.is_empty()
                || !word
                    .chars()
                    .all(|c| c.is_alphanumeric() || matches!(c, '\'' | '-' | '_' | '.'))
            {
                return Err(Error::Align(format!("`{word}` is not a dictionary word")));
            }
            let c_word = CString::new(word).map_err(|_| Error::Align("a NUL byte".into()))?;
            // SAFETY: `self.raw` is live and used by this thread alone; `c_word` is a valid C
            // string the call only reads. The answer is null or a string the library
            // allocated for us, which we free at once with its own allocator.
            let known = unsafe {
                let phones = sys::ps_lookup_word(self.raw.as_ptr(), c_word.as_ptr());
                let known = !phones.is_null();
                if known {
                    sys::ckd_free(phones.cast());
                }
                known
            };
            if !known {
                return Err(Error::Align(format!("`{word}` is not in the dictionary")));
            }
            grammar.push(' ');
            grammar.push_str(word);
        }
        grammar.push_str(";\n");
        CString::new(grammar).map_err(|_| Error::Align("a NUL byte".into()))
    }

    /// Decodes one utterance with the current search.
    fn run(&mut self, samples: &[i16]) -> Result<Hypothesis, Error> {
        let ps = self.raw.as_ptr();
        // SAFETY: `ps` is a live decoder, used by this thread alone (`&mut self`). A new
        // stream resets the front end's noise estimate, so an utterance decodes the same
        // whatever the decoder heard before (decoders are pooled across calls).
        unsafe { sys::ps_start_stream(ps) };
        // SAFETY: as above.
        if unsafe { sys::ps_start_utt(ps) } < 0 {
            return Err(Error::Decode("cannot start an utterance"));
        }
        // SAFETY: `samples` is valid for `samples.len()` reads of i16 (C `int16`, `short`) and
        // is only read; `full_utt = 1` says it is the whole utterance (whole-utterance
        // normalization), `no_search = 0` decodes it now.
        let processed = unsafe { sys::ps_process_raw(ps, samples.as_ptr(), samples.len(), 0, 1) };
        // SAFETY: as above; an utterance was started, so it is ended whatever happened.
        let ended = unsafe { sys::ps_end_utt(ps) };
        if processed < 0 {
            return Err(Error::Decode("cannot process the audio"));
        }
        if ended < 0 {
            return Err(Error::Decode("cannot end the utterance"));
        }
        let mut score: i32 = 0;
        // SAFETY: `ps` is live; the returned string is owned by the decoder and valid until
        // its next call, and copied before that.
        let text = unsafe { owned(sys::ps_get_hyp(ps, &mut score)) }.unwrap_or_default();
        let confidence = if self.posteriors {
            // SAFETY: `ps` is live; `ps_get_logmath` returns its own log tables (borrowed),
            // and converting a log probability reads them only.
            Some(unsafe { sys::logmath_exp(sys::ps_get_logmath(ps), sys::ps_get_prob(ps)) })
        } else {
            None
        };
        Ok(Hypothesis {
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
            score,
            confidence: confidence.map(|p| p.clamp(0.0, 1.0)),
            words: self.words(),
        })
    }

    /// The words of the last utterance's best hypothesis, with their times.
    fn words(&mut self) -> Vec<Word> {
        let ps = self.raw.as_ptr();
        let mut words = Vec::new();
        // SAFETY: `ps` is live and its utterance has ended; the iterator is ours until
        // `ps_seg_next` returns null (which frees it) or we free it.
        let mut seg = unsafe { sys::ps_seg_iter(ps) };
        while !seg.is_null() {
            let (mut first, mut last) = (0 as c_int, 0 as c_int);
            let (mut ascr, mut lscr, mut lback) = (0, 0, 0);
            // SAFETY: `seg` is a live iterator of `ps`; the word is owned by the decoder's
            // dictionary and copied at once; the out-pointers are to locals.
            let (word, log_prob) = unsafe {
                sys::ps_seg_frames(seg, &mut first, &mut last);
                let log_prob = sys::ps_seg_prob(seg, &mut ascr, &mut lscr, &mut lback);
                (owned(sys::ps_seg_word(seg)), log_prob)
            };
            if let Some(text) = word.as_deref().and_then(spoken) {
                let confidence = if self.posteriors {
                    // SAFETY: as in `decode`: the decoder's own log tables, read only.
                    Some(unsafe { sys::logmath_exp(sys::ps_get_logmath(ps), log_prob) })
                } else {
                    None
                };
                words.push(Word {
                    text: text.to_owned(),
                    start_secs: f64::from(first) / self.frames_per_sec,
                    // Frames are inclusive: the word ends after its last one.
                    end_secs: f64::from(last + 1) / self.frames_per_sec,
                    confidence: confidence.map(|p| p.clamp(0.0, 1.0)),
                });
            }
            // SAFETY: `seg` is live; `ps_seg_next` frees it and returns the next, or null
            // at the end.
            seg = unsafe { sys::ps_seg_next(seg) };
        }
        words
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: we hold the only reference (from `ps_init`), and after this nothing uses
        // the pointer; `ps_free` also releases the decoder's configuration.
        unsafe { sys::ps_free(self.raw.as_ptr()) };
    }
}

/// A copy of a C string the library owns, or `None` for null.
///
/// # Safety
/// `s` is null or a valid NUL-terminated string for the duration of the call.
unsafe fn owned(s: *const c_char) -> Option<String> {
    if s.is_null() {
        return None;
    }
    // SAFETY: the caller promises a valid NUL-terminated string.
    Some(unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned())
}

/// A segment's word as spoken, without an alternative pronunciation's `(2)`, or `None` for
/// a silence, a noise or a sentence mark (`<sil>`, `<s>`, `[NOISE]`, `++UH++`).
fn spoken(word: &str) -> Option<&str> {
    if word.starts_with(['<', '[', '+']) {
        return None;
    }
    let base = match word.rfind('(') {
        Some(at) if word.ends_with(')') && at > 0 => &word[..at],
        _ => word,
    };
    (!base.is_empty()).then_some(base)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use super::*;

    /// "go forward ten meters", natural speech (tests/data/README.md).
    fn go_forward() -> Vec<i16> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/goforward.raw");
        std::fs::read(path)
            .unwrap()
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    fn decoder() -> Decoder {
        Decoder::new(&Config::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn decoder_is_send() {
        fn send<T: Send>() {}
        send::<Decoder>();
    }

    #[test]
    fn fillers_and_alternatives_are_cleaned() {
        assert_eq!(spoken("<sil>"), None);
        assert_eq!(spoken("[NOISE]"), None);
        assert_eq!(spoken("++UH++"), None);
        assert_eq!(spoken("read(2)"), Some("read"));
        assert_eq!(spoken("hello"), Some("hello"));
    }

    #[test]
    fn arguments_are_known_from_the_library() {
        assert_eq!(argument_kind("-beam"), Some(ArgKind::Float));
        assert_eq!(argument_kind("-maxwpf"), Some(ArgKind::Integer));
        assert_eq!(argument_kind("-bestpath"), Some(ArgKind::Boolean));
        assert_eq!(argument_kind("-hmm"), Some(ArgKind::Text));
        assert_eq!(argument_kind("-nonsense"), None);
    }

    #[test]
    fn a_spoken_sentence_is_decoded_with_word_times() {
        let samples = go_forward();
        let mut decoder = decoder();
        let hypothesis = decoder.decode(&samples).unwrap();
        assert_eq!(hypothesis.text, "go forward ten meters", "{hypothesis:?}");
        let words: Vec<&str> = hypothesis.words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(words, ["go", "forward", "ten", "meters"]);
        let duration = samples.len() as f64 / 16_000.0;
        for pair in hypothesis.words.windows(2) {
            assert!(pair[0].end_secs <= pair[1].start_secs + 1e-9, "{pair:?}");
        }
        for word in &hypothesis.words {
            assert!(
                0.0 <= word.start_secs
                    && word.start_secs < word.end_secs
                    && word.end_secs <= duration,
                "{word:?}"
            );
            assert!(
                word.confidence.is_some_and(|c| (0.0..=1.0).contains(&c)),
                "{word:?}"
            );
        }
        assert!(
            hypothesis
                .confidence
                .is_some_and(|c| (0.0..=1.0).contains(&c))
        );
        // The decoder is reusable: the same audio again gives the same words.
        assert_eq!(decoder.decode(&samples).unwrap(), hypothesis);
    }

    #[test]
    fn a_known_text_is_aligned_and_the_decoder_still_decodes() {
        let samples = go_forward();
        let mut decoder = decoder();
        let free = decoder.decode(&samples).unwrap();
        let aligned = decoder
            .align(&samples, &["go", "forward", "ten", "meters"])
            .unwrap();
        let words: Vec<&str> = aligned.words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(words, ["go", "forward", "ten", "meters"], "{aligned:?}");
        // Forced and free decoding agree on where the words are, to a few frames.
        for (a, f) in aligned.words.iter().zip(&free.words) {
            assert!((a.start_secs - f.start_secs).abs() < 0.1, "{a:?} {f:?}");
        }
        for pair in aligned.words.windows(2) {
            assert!(pair[0].end_secs <= pair[1].start_secs + 1e-9, "{pair:?}");
        }
        // A text it was not told is aligned all the same, word for word.
        let forced = decoder
            .align(&samples, &["go", "back", "ten", "meters"])
            .unwrap();
        assert_eq!(forced.words.len(), 4, "{forced:?}");
        // And its own language model is back.
        assert_eq!(decoder.decode(&samples).unwrap(), free);
    }

    #[test]
    fn words_outside_the_dictionary_are_refused_by_name() {
        let mut decoder = decoder();
        let samples = go_forward();
        for bad in [&["go", "qzxvwk"][..], &["go forward"], &["<s>"], &[]] {
            assert!(
                matches!(decoder.align(&samples, bad), Err(Error::Align(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            decoder.decode(&samples).unwrap().text,
            "go forward ten meters"
        );
    }

    #[test]
    fn quiet_and_nothing_give_no_words() {
        let mut decoder = decoder();
        assert_eq!(decoder.decode(&[]).unwrap(), Hypothesis::default());
        // A second of faint noise (about -60 dBFS), as between a caller's words.
        let mut state = 1u32;
        let noise: Vec<i16> = (0..16_000)
            .map(|_| {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((state >> 16) as i16) / 1_000
            })
            .collect();
        let quiet = decoder.decode(&noise).unwrap();
        assert!(quiet.words.is_empty(), "{quiet:?}");
        // A few samples, less than one analysis frame.
        decoder.decode(&[100, -100, 50]).unwrap();
    }

    #[test]
    fn decoders_run_on_other_threads() {
        let samples = go_forward();
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let samples = samples.clone();
                std::thread::spawn(move || decoder().decode(&samples).unwrap().text)
            })
            .collect();
        let texts: Vec<String> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(texts, ["go forward ten meters"; 2]);
    }

    #[test]
    fn extra_arguments_reach_the_decoder() {
        let config = Config {
            args: vec![("-bestpath".into(), "no".into())],
            ..Config::default()
        };
        let mut decoder = Decoder::new(&config).unwrap();
        let hypothesis = decoder.decode(&go_forward()).unwrap();
        assert_eq!(hypothesis.confidence, None, "{hypothesis:?}");
    }
}
