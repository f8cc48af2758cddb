//! The heart of mediagate: what happens to a call's audio between the socket and the consumers.
//!
//! - [`queue`]: a consumer's bounded inbox, with an explicit [`OverflowPolicy`] (drop the oldest
//!   and count, detach, or make the socket wait for a lossless recorder), so a slow consumer
//!   never stalls the socket or the others unless it asked to be lossless.
//! - [`outbound`]: audio into the call: a bounded queue paced as exactly-20 ms frames on one
//!   steady clock, with barge-in that flushes and sends StopAudio at once.
//!
//! - [`Processor`]: the extension point. A processor receives a call's frames and events in its
//!   own task and may play audio into the call ([`Context::play`], [`Context::send_now`]), cut it
//!   ([`Context::stop_audio`]) and emit events. [`Pipeline`] fans a call out to its processors.
//!
//! This crate knows no wire format and no socket: the server drives it.

pub mod event;
pub mod files;
pub mod outbound;
pub mod pipeline;
pub mod processor;
pub mod queue;
pub mod registry;

pub use event::{CallInfo, Dtmf, Event, Transcript};
pub use files::{create_unique, sanitize_file_stem};
pub use outbound::{BargeIn, OutboundQueue, Outgoing, PacerReport, QueueFull};
pub use pipeline::{
    ConsumerCounters, ConsumerProbe, ConsumerReport, EVENT_QUEUE, Ending, Pipeline,
};
pub use processor::{Context, Execution, Input, PlayError, Processor, ProcessorError};
pub use queue::{Inbox, InboxStats, Outbox, OverflowPolicy, Pushed, byte_bounded_inbox, inbox};
pub use registry::{BuildError, Factory, Plan, Prototype, Registry, Settings};
