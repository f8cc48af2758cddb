//! The few C functions this crate calls, declared by hand from the headers of Debian's
//! 0.8+5prealpha (`/usr/include/pocketsphinx/pocketsphinx.h`, `sphinxbase/cmd_ln.h`,
//! `ps_search.h`, `sphinxbase/err.h`, `sphinxbase/logmath.h`, `sphinxbase/ckd_alloc.h`). In this version `ps_start_utt` and
//! `ps_seg_iter` take the decoder alone (older releases took an utterance id and a score
//! pointer), and sphinxbase's `int32` and `int16` are C `int` and `short`.

use std::ffi::{c_char, c_int, c_long, c_void};
use std::marker::{PhantomData, PhantomPinned};

/// Declares an opaque C type: never built or moved by Rust, neither `Send` nor `Sync`.
macro_rules! opaque {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[repr(C)]
        pub(crate) struct $name {
            _private: [u8; 0],
            _marker: PhantomData<(*mut u8, PhantomPinned)>,
        }
    )*};
}

opaque! {
    /// `ps_decoder_t`: a decoder, with its acoustic model, dictionary and language model.
    PsDecoder;
    /// `ps_seg_t`: an iterator over the words of the best hypothesis.
    PsSeg;
    /// `cmd_ln_t`: a parsed configuration, reference-counted.
    CmdLn;
    /// `logmath_t`: the decoder's log-base tables.
    LogMath;
}

/// `arg_t`: one argument definition of the table `ps_args()` returns, which ends with an
/// entry whose `name` is null.
#[repr(C)]
pub(crate) struct ArgDef {
    pub(crate) name: *const c_char,
    pub(crate) kind: c_int,
    pub(crate) default: *const c_char,
    pub(crate) doc: *const c_char,
}

/// `arg_t::type` bits (`cmd_ln.h`).
pub(crate) const ARG_INTEGER: c_int = 1 << 1;
pub(crate) const ARG_FLOATING: c_int = 1 << 2;
pub(crate) const ARG_BOOLEAN: c_int = 1 << 4;

#[link(name = "pocketsphinx")]
unsafe extern "C" {
    pub(crate) fn ps_args() -> *const ArgDef;
    pub(crate) fn ps_init(config: *mut CmdLn) -> *mut PsDecoder;
    pub(crate) fn ps_free(ps: *mut PsDecoder) -> c_int;
    pub(crate) fn ps_get_config(ps: *mut PsDecoder) -> *mut CmdLn;
    pub(crate) fn ps_get_logmath(ps: *mut PsDecoder) -> *mut LogMath;
    pub(crate) fn ps_start_stream(ps: *mut PsDecoder) -> c_int;
    pub(crate) fn ps_start_utt(ps: *mut PsDecoder) -> c_int;
    pub(crate) fn ps_process_raw(
        ps: *mut PsDecoder,
        data: *const i16,
        n_samples: usize,
        no_search: c_int,
        full_utt: c_int,
    ) -> c_int;
    pub(crate) fn ps_end_utt(ps: *mut PsDecoder) -> c_int;
    pub(crate) fn ps_get_hyp(ps: *mut PsDecoder, out_best_score: *mut i32) -> *const c_char;
    pub(crate) fn ps_get_prob(ps: *mut PsDecoder) -> i32;
    pub(crate) fn ps_seg_iter(ps: *mut PsDecoder) -> *mut PsSeg;
    pub(crate) fn ps_seg_next(seg: *mut PsSeg) -> *mut PsSeg;
    pub(crate) fn ps_seg_word(seg: *mut PsSeg) -> *const c_char;
    pub(crate) fn ps_seg_frames(seg: *mut PsSeg, out_sf: *mut c_int, out_ef: *mut c_int);
    pub(crate) fn ps_seg_prob(
        seg: *mut PsSeg,
        out_ascr: *mut i32,
        out_lscr: *mut i32,
        out_lback: *mut i32,
    ) -> i32;
    /// The word's phones, allocated (free with `ckd_free`), or null if it is not in the
    /// dictionary.
    pub(crate) fn ps_lookup_word(ps: *mut PsDecoder, word: *const c_char) -> *mut c_char;
    /// Adds (or replaces) the search `name` from a JSGF grammar (`ps_search.h`).
    pub(crate) fn ps_set_jsgf_string(
        ps: *mut PsDecoder,
        name: *const c_char,
        jsgf_string: *const c_char,
    ) -> c_int;
    /// Makes the search `name` the current one.
    pub(crate) fn ps_set_search(ps: *mut PsDecoder, name: *const c_char) -> c_int;
    /// The current search's name, owned by the decoder.
    pub(crate) fn ps_get_search(ps: *mut PsDecoder) -> *const c_char;
    /// Removes the search `name` and frees it.
    pub(crate) fn ps_unset_search(ps: *mut PsDecoder, name: *const c_char) -> c_int;
}

#[link(name = "sphinxbase")]
unsafe extern "C" {
    /// `argv` is `char *argv[]` in C but only read (each value is copied).
    pub(crate) fn cmd_ln_parse_r(
        inout_cmdln: *mut CmdLn,
        defn: *const ArgDef,
        argc: i32,
        argv: *mut *mut c_char,
        strict: i32,
    ) -> *mut CmdLn;
    pub(crate) fn cmd_ln_free_r(cmdln: *mut CmdLn) -> c_int;
    pub(crate) fn cmd_ln_int_r(cmdln: *mut CmdLn, name: *const c_char) -> c_long;
    /// `FILE *stream`; null turns sphinxbase's logging off, process-wide.
    pub(crate) fn err_set_logfp(stream: *mut c_void);
    pub(crate) fn logmath_exp(lmath: *mut LogMath, logb_p: c_int) -> f64;
    /// Frees what sphinxbase allocated (`ps_lookup_word`'s answer).
    pub(crate) fn ckd_free(ptr: *mut c_void);
}
