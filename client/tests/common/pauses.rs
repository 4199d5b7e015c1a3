//! Requests that stop halfway for the test: each hands over the sender that
//! lets it go on, so that the test acts between a request's load and its
//! save (a logout, another tab's request) without guessing how long either
//! takes.

use tokio::sync::{mpsc, oneshot};

/// What a handler holds (in its app's state) to pause.
#[derive(Clone)]
pub struct Pauses(mpsc::UnboundedSender<oneshot::Sender<()>>);

/// Paused requests, as the test sees them.
pub type Paused = mpsc::UnboundedReceiver<oneshot::Sender<()>>;

impl Pauses {
    pub fn new() -> (Self, Paused) {
        let (pauses, paused) = mpsc::unbounded_channel();
        (Self(pauses), paused)
    }

    /// Tells the test that the request has loaded its session, and waits
    /// until the test lets it go on.
    pub async fn pause(&self) {
        let (resume, resumed) = oneshot::channel();
        self.0
            .send(resume)
            .expect("the test waits for paused requests");
        resumed.await.expect("the test lets the request go on");
    }
}
