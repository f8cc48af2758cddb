//! Several Wyoming servers as one engine: each utterance goes to the server with the fewest
//! requests in flight (ties in turn); a server that cannot be reached is set aside for a
//! backoff and the utterance is retried once on another, within the same deadline.
//!
//! [`Balancer`] holds the servers' load and health and decides, given the time: no I/O, no
//! clock of its own. [`ServerPool`] wraps it in a `Mutex` (held to decide, never across a
//! request) and does the requests with [`WyomingClient`]s.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{WyomingClient, WyomingError};
use crate::{Pass, Recognition, Recognizer, SAMPLE_RATE_HZ, SpeechError};

/// How long a server that failed is left alone first; each failed probe doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest backoff: a server back up is tried again within this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Servers an utterance is sent to at most: the first choice, then one other.
const ATTEMPTS: usize = 2;

/// Whether a server can take requests.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Health {
    /// Answering.
    Up,
    /// Its last request could not reach it: no request until `until`, then one (a probe),
    /// which pushes `until` on by `backoff` while it runs.
    Down { until: Instant, backoff: Duration },
}

/// One server's state in the [`Balancer`].
#[derive(Debug, Clone, Copy)]
struct Server {
    /// Requests sent to it and not finished.
    outstanding: usize,
    health: Health,
}

/// How a request to a server ended, for its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It answered (a transcript, or an answer of its own: it is there).
    Answered,
    /// It could not be reached, timed out, or hung up mid-request.
    Unreachable,
}

/// A change of a server's health, to log once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// It was up and failed: left alone for `backoff`.
    Down { backoff: Duration },
    /// It was down and answered.
    Up,
}

/// Load and health of the servers: which one takes the next request.
#[derive(Debug)]
pub(crate) struct Balancer {
    servers: Vec<Server>,
    /// Where the search for the least loaded server starts, so that ties go in turn.
    turn: usize,
}

impl Balancer {
    /// `count` servers, all up and idle.
    pub(crate) fn new(count: usize) -> Self {
        Balancer {
            servers: vec![
                Server {
                    outstanding: 0,
                    health: Health::Up,
                };
                count
            ],
            turn: 0,
        }
    }

    /// The server for a request at `now`, other than those in `tried`: the one with the
    /// fewest requests in flight among those up or due for a probe, ties in turn. Counts the
    /// request as outstanding until [`Balancer::finish`]. `None` when there is none.
    pub(crate) fn pick(&mut self, now: Instant, tried: &[usize]) -> Option<usize> {
        let count = self.servers.len();
        let chosen = (0..count)
            .map(|offset| (self.turn + offset) % count)
            .filter(|i| !tried.contains(i))
            .filter(|&i| match self.servers[i].health {
                Health::Up => true,
                Health::Down { until, .. } => until <= now,
            })
            .min_by_key(|&i| self.servers[i].outstanding)?;
        self.turn = (chosen + 1) % count;
        let server = &mut self.servers[chosen];
        server.outstanding += 1;
        if let Health::Down { until, backoff } = &mut server.health {
            // This request is the probe: no other until it ends (or another backoff passes).
            *until = now + *backoff;
        }
        Some(chosen)
    }

    /// A request to `server` picked by [`Balancer::pick`] ended at `now`: its health after
    /// `outcome`, and the change to log if it changed.
    pub(crate) fn finish(
        &mut self,
        server: usize,
        outcome: Outcome,
        now: Instant,
    ) -> Option<Transition> {
        let server = self.servers.get_mut(server)?;
        server.outstanding = server.outstanding.saturating_sub(1);
        match (outcome, server.health) {
            (Outcome::Answered, Health::Up) => None,
            (Outcome::Answered, Health::Down { .. }) => {
                server.health = Health::Up;
                Some(Transition::Up)
            }
            (Outcome::Unreachable, Health::Up) => {
                server.health = Health::Down {
                    until: now + FIRST_BACKOFF,
                    backoff: FIRST_BACKOFF,
                };
                Some(Transition::Down {
                    backoff: FIRST_BACKOFF,
                })
            }
            (Outcome::Unreachable, Health::Down { backoff, .. }) => {
                let backoff = (backoff * 2).min(MAX_BACKOFF);
                server.health = Health::Down {
                    until: now + backoff,
                    backoff,
                };
                None
            }
        }
    }

    /// Requests in flight per server.
    #[cfg(test)]
    fn outstanding(&self) -> Vec<usize> {
        self.servers.iter().map(|s| s.outstanding).collect()
    }
}

/// One request that got no transcript: the server's `uri` and why.
#[derive(Debug)]
pub struct Attempt {
    /// The server, as configured.
    pub uri: String,
    /// What went wrong.
    pub error: WyomingError,
}

/// The attempts of [`WyomingError::Failed`], for its message: `tcp://a: cannot connect: …;
/// then tcp://b: …`.
pub(super) fn describe(attempts: &[Attempt]) -> String {
    let mut text = String::new();
    for (i, attempt) in attempts.iter().enumerate() {
        let then = if i == 0 { "" } else { "; then " };
        text.push_str(&format!("{then}{}: {}", attempt.uri, attempt.error));
    }
    if let [only] = attempts
        && only.error.unreachable()
        && !matches!(only.error, WyomingError::Deadline { .. })
    {
        text.push_str(" (no other server to try)");
    }
    text
}

/// The servers of one `wyoming` factory, shared by every call of its route: each utterance
/// goes to one of them, or to a second when the first cannot be reached.
#[derive(Debug)]
pub struct ServerPool {
    /// The servers' uris (for errors and logs) and clients, by index in the balancer.
    servers: Vec<(String, WyomingClient)>,
    balancer: Mutex<Balancer>,
}

impl ServerPool {
    /// A pool of `clients`, each with its uri as configured. All are taken for up until a
    /// request says otherwise.
    pub fn new(clients: Vec<(String, WyomingClient)>) -> Self {
        ServerPool {
            balancer: Mutex::new(Balancer::new(clients.len())),
            servers: clients,
        }
    }

    /// Transcribes one utterance of 16 kHz mono audio in [-1, 1] on one of the servers:
    /// blocking, at most for the utterance's deadline ([`super::Timeouts::deadline_for`]),
    /// whichever servers it takes. A server that cannot be reached is marked down and the
    /// utterance goes to another one with what is left of the deadline.
    pub fn transcribe(&self, samples: &[f32]) -> Result<String, WyomingError> {
        let audio = Duration::from_secs_f64(samples.len() as f64 / f64::from(SAMPLE_RATE_HZ));
        let Some((_, first)) = self.servers.first() else {
            return Err(WyomingError::AllDown { servers: 0 });
        };
        let allowed = first.timeouts.deadline_for(audio);
        let deadline = Instant::now() + allowed;
        let mut tried = Vec::with_capacity(ATTEMPTS);
        let mut failed = Vec::with_capacity(ATTEMPTS);
        while tried.len() < ATTEMPTS && Instant::now() < deadline {
            let Some(index) = self.balancer().pick(Instant::now(), &tried) else {
                break;
            };
            tried.push(index);
            let (uri, client) = &self.servers[index];
            let result = client
                .request(samples, deadline)
                .map_err(|e| e.timed_out(allowed));
            let outcome = match &result {
                Err(e) if e.unreachable() => Outcome::Unreachable,
                _ => Outcome::Answered,
            };
            let transition = self.balancer().finish(index, outcome, Instant::now());
            log(uri, transition, result.as_ref().err());
            match result {
                Ok(text) => return Ok(text),
                Err(error) => {
                    failed.push(Attempt {
                        uri: uri.clone(),
                        error,
                    });
                    if outcome == Outcome::Answered {
                        break;
                    }
                }
            }
        }
        if failed.is_empty() {
            Err(WyomingError::AllDown {
                servers: self.servers.len(),
            })
        } else {
            Err(WyomingError::Failed { attempts: failed })
        }
    }

    /// The balancer, for a decision (never held across a request). A panic elsewhere while
    /// it was held left counts at worst one off: it is used as is.
    fn balancer(&self) -> std::sync::MutexGuard<'_, Balancer> {
        self.balancer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Logs a change of `uri`'s health, once per change.
fn log(uri: &str, transition: Option<Transition>, error: Option<&WyomingError>) {
    match transition {
        Some(Transition::Down { backoff }) => tracing::warn!(
            uri,
            error = %error.map(ToString::to_string).unwrap_or_default(),
            backoff_ms = backoff.as_millis() as u64,
            "wyoming server down: utterances go to the others until it answers again"
        ),
        Some(Transition::Up) => tracing::info!(uri, "wyoming server up again"),
        None => {}
    }
}

/// A call's recognizer: a handle on its route's [`ServerPool`].
#[derive(Debug, Clone)]
pub struct PoolRecognizer(pub Arc<ServerPool>);

impl Recognizer for PoolRecognizer {
    fn recognize(&mut self, samples: &[f32], _pass: Pass) -> Result<Recognition, SpeechError> {
        let text = self
            .0
            .transcribe(samples)
            .map_err(|e| SpeechError::Utterance(format!("wyoming: {e}")))?;
        Ok(Recognition {
            text,
            ..Recognition::default()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic in a test is a failed assertion

    use std::io::{BufReader, ErrorKind};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::thread::JoinHandle;

    use serde_json::json;

    use super::super::{MAX_ANSWER_BYTES, Timeouts, read_event, write_event};
    use super::*;

    /// A fake Wyoming ASR server on 127.0.0.1, speaking the protocol: it reads each request
    /// up to its `audio-stop` and answers a `transcript` of its own name, until stopped.
    struct FakeServer {
        addr: SocketAddr,
        served: Arc<AtomicUsize>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl FakeServer {
        /// A server on a free port.
        fn start(name: &'static str) -> Self {
            Self::start_at("127.0.0.1:0".parse().unwrap(), name)
        }

        /// A server on `addr` (a stopped one's: it comes back).
        fn start_at(addr: SocketAddr, name: &'static str) -> Self {
            let listener = TcpListener::bind(addr).unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let served = Arc::new(AtomicUsize::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (served, stop) = (Arc::clone(&served), Arc::clone(&stop));
                std::thread::spawn(move || {
                    // Bounded: a test that forgets to stop its server loses it after 60 s.
                    let end = Instant::now() + Duration::from_secs(60);
                    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
                        match listener.accept() {
                            Ok((stream, _)) => answer(stream, name, &served),
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                                std::thread::sleep(Duration::from_millis(2));
                            }
                            Err(_) => return,
                        }
                    }
                })
            };
            FakeServer {
                addr,
                served,
                stop,
                thread: Some(thread),
            }
        }

        fn uri(&self) -> String {
            format!("tcp://{}", self.addr)
        }

        fn served(&self) -> usize {
            self.served.load(Ordering::SeqCst)
        }

        /// Closes its port: connections to it are refused from now on.
        fn stop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            if let Some(thread) = self.thread.take() {
                thread.join().unwrap();
            }
        }
    }

    impl Drop for FakeServer {
        fn drop(&mut self) {
            self.stop();
        }
    }

    /// Reads one request up to its `audio-stop`, counts it in `served` and answers `text`.
    fn answer(stream: TcpStream, text: &str, served: &AtomicUsize) {
        let serve = || -> Result<(), WyomingError> {
            stream
                .set_nonblocking(false)
                .and_then(|()| stream.set_read_timeout(Some(Duration::from_secs(5))))
                .map_err(WyomingError::Receive)?;
            let mut input = BufReader::new(&stream);
            let mut budget = MAX_ANSWER_BYTES;
            while read_event(&mut input, &mut budget)?.0 != "audio-stop" {}
            // Counted before the answer goes: a client that has it sees the count.
            served.fetch_add(1, Ordering::SeqCst);
            write_event(&mut &stream, "transcript", &json!({ "text": text }), &[])
                .map_err(WyomingError::Send)
        };
        let _ = serve();
    }

    /// A pool of `servers` whose utterances have 2 s each.
    fn pool(servers: &[&FakeServer]) -> ServerPool {
        let timeouts = Timeouts {
            connect: Duration::from_secs(1),
            base: Duration::from_secs(2),
            audio_factor: 0.0,
        };
        ServerPool::new(
            servers
                .iter()
                .map(|s| {
                    (
                        s.uri(),
                        WyomingClient::new(&s.uri(), None, timeouts).unwrap(),
                    )
                })
                .collect(),
        )
    }

    /// A tenth of a second of audio.
    const UTTERANCE: [f32; 1_600] = [0.1; 1_600];

    #[test]
    fn utterances_are_spread_over_the_servers() {
        let (a, b) = (FakeServer::start("a"), FakeServer::start("b"));
        let pool = Arc::new(pool(&[&a, &b]));
        let texts: Vec<String> = (0..10)
            .map(|_| pool.transcribe(&UTTERANCE).unwrap())
            .collect();
        assert_eq!(texts.iter().filter(|t| *t == "a").count(), 5, "{texts:?}");
        assert_eq!((a.served(), b.served()), (5, 5));
        // Calls at once, each on its own thread as the transcribers are.
        let calls: Vec<_> = (0..4)
            .map(|_| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    (0..5)
                        .filter(|_| pool.transcribe(&UTTERANCE).is_ok())
                        .count()
                })
            })
            .collect();
        let done: usize = calls.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(done, 20);
        assert_eq!(a.served() + b.served(), 30);
        assert!(
            a.served() >= 10 && b.served() >= 10,
            "{} / {}",
            a.served(),
            b.served()
        );
        assert_eq!(pool.balancer().outstanding(), [0, 0]);
    }

    #[test]
    fn a_server_gone_costs_no_utterance() {
        let (mut a, b) = (FakeServer::start("a"), FakeServer::start("b"));
        let pool = pool(&[&a, &b]);
        assert_eq!(pool.transcribe(&UTTERANCE).unwrap(), "a");
        a.stop();
        let mut took = Vec::new();
        for _ in 0..4 {
            let started = Instant::now();
            assert_eq!(pool.transcribe(&UTTERANCE).unwrap(), "b");
            took.push(started.elapsed());
        }
        assert_eq!((a.served(), b.served()), (1, 4));
        // The first went to a, was refused and went on to b; a was down for the others.
        eprintln!("failover: {:?}; then {:?}", took[0], &took[1..]);
        assert!(took[0] < Duration::from_secs(1), "{took:?}");
    }

    #[test]
    fn a_server_that_hangs_up_mid_request_costs_no_utterance() {
        // It takes the connection, reads the first bytes of the request and hangs up.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("tcp://{}", listener.local_addr().unwrap());
        let hangs_up = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut start = [0; 16];
            std::io::Read::read_exact(&mut stream, &mut start).unwrap();
        });
        let b = FakeServer::start("b");
        let timeouts = Timeouts::default();
        let pool = ServerPool::new(vec![
            (
                uri.clone(),
                WyomingClient::new(&uri, None, timeouts).unwrap(),
            ),
            (
                b.uri(),
                WyomingClient::new(&b.uri(), None, timeouts).unwrap(),
            ),
        ]);
        // A second of audio: more than the sockets' buffers hold once the server is gone.
        assert_eq!(pool.transcribe(&[0.1; 16_000]).unwrap(), "b");
        hangs_up.join().unwrap();
        assert_eq!(b.served(), 1);
        assert_eq!(
            pool.transcribe(&UTTERANCE).unwrap(),
            "b",
            "the first is down"
        );
    }

    #[test]
    fn with_every_server_down_the_utterance_fails_clearly() {
        let (mut a, mut b) = (FakeServer::start("a"), FakeServer::start("b"));
        let pool = pool(&[&a, &b]);
        a.stop();
        b.stop();
        let err = pool.transcribe(&UTTERANCE).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(&err, WyomingError::Failed { attempts } if attempts.len() == 2),
            "{text}"
        );
        assert!(
            text.starts_with(&format!("{}: cannot connect", a.uri()))
                && text.contains(&format!("; then {}: cannot connect", b.uri())),
            "{text}"
        );
        let err = pool.transcribe(&UTTERANCE).unwrap_err();
        assert!(matches!(err, WyomingError::AllDown { servers: 2 }), "{err}");
        assert_eq!(
            err.to_string(),
            "no server is up (2 down, each tried again after its backoff)"
        );
        let recognized = PoolRecognizer(Arc::new(pool)).recognize(&UTTERANCE, Pass::Final);
        assert!(
            matches!(&recognized, Err(SpeechError::Utterance(e)) if e.starts_with("wyoming: no server is up")),
            "{recognized:?}"
        );
    }

    #[test]
    fn a_server_back_takes_utterances_after_its_backoff() {
        let (mut a, b) = (FakeServer::start("a"), FakeServer::start("b"));
        let pool = pool(&[&a, &b]);
        a.stop();
        assert_eq!(pool.transcribe(&UTTERANCE).unwrap(), "b");
        let down = Instant::now();
        let a = FakeServer::start_at(a.addr, "a");
        // Within the backoff, b takes everything...
        while down.elapsed() < FIRST_BACKOFF.mul_f64(0.8) {
            assert_eq!(pool.transcribe(&UTTERANCE).unwrap(), "b");
        }
        assert_eq!(a.served(), 0);
        // ...after it, a real utterance finds a up, and it takes its share again.
        std::thread::sleep(
            FIRST_BACKOFF.saturating_sub(down.elapsed()) + Duration::from_millis(50),
        );
        let texts: Vec<String> = (0..4)
            .map(|_| pool.transcribe(&UTTERANCE).unwrap())
            .collect();
        assert_eq!(a.served(), 2, "{texts:?}");
        assert_eq!(texts.iter().filter(|t| *t == "b").count(), 2, "{texts:?}");
    }

    #[test]
    fn idle_servers_take_requests_in_turn() {
        let mut balancer = Balancer::new(3);
        let now = Instant::now();
        let picks: Vec<_> = (0..6)
            .map(|_| {
                let i = balancer.pick(now, &[]).unwrap();
                balancer.finish(i, Outcome::Answered, now);
                i
            })
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn the_least_loaded_server_comes_first() {
        let mut balancer = Balancer::new(2);
        let now = Instant::now();
        assert_eq!(balancer.pick(now, &[]), Some(0));
        assert_eq!(balancer.pick(now, &[]), Some(1));
        assert_eq!(balancer.pick(now, &[]), Some(0));
        balancer.finish(1, Outcome::Answered, now);
        // 0 has two in flight, 1 none: 1 takes the next two.
        assert_eq!(balancer.pick(now, &[]), Some(1));
        assert_eq!(balancer.pick(now, &[]), Some(1));
        assert_eq!(balancer.outstanding(), [2, 2]);
        assert_eq!(
            balancer.pick(now, &[0]),
            Some(1),
            "tried servers are skipped"
        );
        assert_eq!(balancer.pick(now, &[0, 1]), None);
    }

    #[test]
    fn a_failed_server_is_left_alone_for_a_doubling_backoff() {
        let mut balancer = Balancer::new(2);
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(balancer.pick(at(0), &[]), Some(0));
        assert_eq!(
            balancer.finish(0, Outcome::Unreachable, at(0)),
            Some(Transition::Down {
                backoff: FIRST_BACKOFF
            })
        );
        for ms in [0, 500, 999] {
            assert_eq!(balancer.pick(at(ms), &[]), Some(1), "at {ms} ms");
            balancer.finish(1, Outcome::Answered, at(ms));
        }
        // The backoff is over: one probe, and none other while it runs.
        assert_eq!(balancer.pick(at(1000), &[]), Some(0));
        assert_eq!(balancer.pick(at(1001), &[]), Some(1));
        assert_eq!(balancer.finish(0, Outcome::Unreachable, at(1001)), None);
        assert_eq!(balancer.finish(1, Outcome::Answered, at(1001)), None);
        // Failed again: 2 s now, then 4 s...
        assert_eq!(balancer.pick(at(3000), &[]), Some(1));
        assert_eq!(balancer.pick(at(3001), &[1]), Some(0));
        balancer.finish(1, Outcome::Answered, at(3001));
        balancer.finish(0, Outcome::Unreachable, at(3001));
        assert_eq!(balancer.pick(at(7000), &[1]), None);
        assert_eq!(balancer.pick(at(7001), &[1]), Some(0));
        // ...and once it answers, it is up again.
        assert_eq!(
            balancer.finish(0, Outcome::Answered, at(7001)),
            Some(Transition::Up)
        );
        assert_eq!(balancer.pick(at(7001), &[1]), Some(0));
        assert_eq!(balancer.finish(0, Outcome::Answered, at(7001)), None);
    }

    #[test]
    fn the_backoff_stops_growing_at_its_cap() {
        let mut balancer = Balancer::new(1);
        let mut now = Instant::now();
        balancer.pick(now, &[]);
        balancer.finish(0, Outcome::Unreachable, now);
        for _ in 0..10 {
            assert_eq!(balancer.pick(now, &[]), None);
            now += MAX_BACKOFF;
            assert_eq!(balancer.pick(now, &[]), Some(0));
            balancer.finish(0, Outcome::Unreachable, now);
        }
        assert_eq!(balancer.pick(now + MAX_BACKOFF, &[]), Some(0));
    }
}
