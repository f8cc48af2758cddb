//! A call's folder and its session.json: who the call is, its transports, and what each of
//! their processors did. The files themselves (WAV, transcripts, DTMF) are written by the
//! recording processors of `mediagate-processors` (`wav`, `transcript`, `dtmf`) into this folder.

mod folder;
mod report;

use mediagate_protocol::ResultStatus;

pub(crate) use folder::{CallFolder, RESERVE_FILE};
pub(crate) use report::{
    CallReport, CallStatus, EndReason, EndReport, FormatReport, Identity, TransportKind,
    TransportReport,
};

/// Counts a transcription result into a transport report.
pub(crate) fn count_transcript(report: &mut TransportReport, status: ResultStatus) {
    match status {
        ResultStatus::Final => report.transcripts_final += 1,
        ResultStatus::Intermediate => report.transcripts_intermediate += 1,
    }
}
