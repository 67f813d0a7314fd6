//! The model on a thread of its own, so a pipeline can prepare and write
//! while it embeds: ingest hands it one batch of texts, reads and splits the
//! next documents and writes the previous batch's while the batch runs.
//!
//! Why: everything ingest does besides embedding — reading, splitting,
//! tokenising, store writes — used to run between batches while the model
//! waited. Measured (BENCHMARKS.md, "The model on its own thread"): into
//! PostgreSQL, whose writes wait on the server, 5–6 % faster; into SQLite
//! level within noise (the model keeps both cores ~92 % busy, so what runs
//! beside it mostly slows it by as much as it saves).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use crate::error::{Error, Result};
use crate::model::{Embedder, Embedding, Role};

/// What the model thread sends back.
enum Message {
    /// So many texts of the current batch are done (for progress).
    Embedded(usize),
    /// A batch's vectors, in the order its texts came.
    Done(Result<Vec<Embedding>>),
}

/// A model thread inside a [`std::thread::scope`]. Batches are embedded in
/// the order they were submitted, one [`receive`](Self::receive) each.
/// Dropping it lets the thread finish the batch it is on and stop.
pub(super) struct BackgroundEncoder<'scope> {
    batches: Sender<Vec<String>>,
    results: Receiver<Message>,
    _thread: ScopedJoinHandle<'scope, ()>,
}

impl<'scope> BackgroundEncoder<'scope> {
    /// Starts the thread; its spans nest under `parent`.
    pub fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        model: Arc<Embedder>,
        role: Role,
        parent: tracing::Span,
    ) -> Self {
        let (batches, inbox) = channel::<Vec<String>>();
        let (outbox, results) = channel();
        let thread = scope.spawn(move || {
            let _parent = parent.enter();
            for texts in inbox {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                let vectors = {
                    let _span = tracing::info_span!("embed", chunks = refs.len()).entered();
                    model.embed_with_progress(&refs, role, &mut |n| {
                        let _ = outbox.send(Message::Embedded(n));
                    })
                };
                if outbox.send(Message::Done(vectors)).is_err() {
                    break; // nobody is waiting any more
                }
            }
        });
        BackgroundEncoder {
            batches,
            results,
            _thread: thread,
        }
    }

    /// Queues a batch behind the ones submitted before.
    pub fn submit(&self, texts: Vec<String>) -> Result<()> {
        self.batches.send(texts).map_err(|_| stopped())
    }

    /// Waits for the oldest submitted batch, calling `progress(n)` as its
    /// texts are done.
    pub fn receive(&self, progress: &mut dyn FnMut(usize)) -> Result<Vec<Embedding>> {
        loop {
            match self.results.recv().map_err(|_| stopped())? {
                Message::Embedded(n) => progress(n),
                Message::Done(vectors) => return vectors,
            }
        }
    }
}

/// The model thread ended without an answer: it panicked (the scope raises
/// that panic again when it ends, so this error is never what a caller sees).
fn stopped() -> Error {
    Error::Candle(candle_core::Error::Msg("the model thread stopped".into()))
}
