//! Tokens spread over a fleet of replicas: each new token is sent to every
//! replica (all at once, or one after another in random order), to one
//! replica only, or an already cached token is sent to one replica. Who
//! introspected what is counted by the fake AS per token afterwards.
//!
//! Each token is tagged with the window its first request was sent in, so a
//! run that kills Redis part-way can report before, during and after apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tyk_phantom_token::pb::Object;

use crate::load::{self, Client, Expect, Phase, Rng};

/// How one token is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// To every replica at once, in random order: the fleet's single-flight.
    Burst,
    /// To every replica in random order, each after the previous answered:
    /// shared hits.
    Sequential,
    /// To one replica: a miss, never shared.
    Single,
    /// An already cached token (`old`), to one replica: an in-process hit.
    Hit,
}

pub const MODES: [Mode; 4] = [Mode::Burst, Mode::Sequential, Mode::Single, Mode::Hit];

impl Mode {
    pub fn index(self) -> usize {
        match self {
            Mode::Burst => 0,
            Mode::Sequential => 1,
            Mode::Single => 2,
            Mode::Hit => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Burst => "burst",
            Mode::Sequential => "sequential",
            Mode::Single => "single",
            Mode::Hit => "hit",
        }
    }
}

/// Windows a run can be divided into (see [`Spread::window`]).
pub const WINDOWS: usize = 5;

/// What to send.
pub struct Spread {
    /// New tokens are `load::token(kind, i)`, i = 0, 1, …
    pub kind: &'static str,
    /// Token i is sent as `modes[i % modes.len()]`.
    pub modes: Vec<Mode>,
    /// Stop after this many token indices…
    pub count: Option<u64>,
    /// …or at this time.
    pub deadline: Option<Instant>,
    /// Tokens in flight.
    pub concurrency: usize,
    /// Cached tokens for [`Mode::Hit`]: `load::token(kind, 0..n)`.
    pub old: (&'static str, u64),
    /// The current window, set by whoever runs the clock.
    pub window: Arc<AtomicU8>,
    /// Requests and errors so far, for a timeline.
    pub requests: Arc<AtomicU64>,
    pub errors: Arc<AtomicU64>,
}

/// What was sent: latencies and errors by window and mode, and each new
/// token's (index, mode, window).
pub struct Outcome {
    pub cells: Vec<Vec<Phase>>,
    pub tokens: Vec<(u64, Mode, usize)>,
    pub elapsed: Duration,
}

impl Outcome {
    fn empty() -> Self {
        Outcome {
            cells: (0..WINDOWS)
                .map(|_| MODES.iter().map(|_| Phase::empty()).collect())
                .collect(),
            tokens: Vec::new(),
            elapsed: Duration::ZERO,
        }
    }

    fn merge(&mut self, other: Outcome) {
        for (mine, theirs) in self.cells.iter_mut().zip(other.cells) {
            for (m, t) in mine.iter_mut().zip(theirs) {
                m.merge(t);
            }
        }
        self.tokens.extend(other.tokens);
    }

    /// Every request of every window and mode.
    pub fn total(&self) -> Phase {
        let mut all = Phase::empty();
        for window in &self.cells {
            for cell in window {
                let mut copy = Phase::empty();
                copy.requests = cell.requests;
                copy.errors = cell.errors;
                copy.first_error.clone_from(&cell.first_error);
                let _ = copy.hist.add(&cell.hist);
                all.merge(copy);
            }
        }
        all.elapsed = self.elapsed;
        all
    }
}

/// Sends tokens to `replicas` (one client list each) until `spread.count`
/// or `spread.deadline`.
pub async fn run(replicas: &[Vec<Client>], spread: Spread) -> Outcome {
    let spread = Arc::new(spread);
    let template = Arc::new(load::template(0));
    let next = Arc::new(AtomicU64::new(0));
    let clients: Arc<Vec<Client>> = Arc::new(replicas.iter().map(|c| c[0].clone()).collect());
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..spread.concurrency.max(1) {
        let (spread, template, next, clients) = (
            spread.clone(),
            template.clone(),
            next.clone(),
            clients.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut rng = Rng::new(0x5eed + worker as u64);
            let mut out = Outcome::empty();
            loop {
                if spread.deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if spread.count.is_some_and(|n| i >= n) {
                    break;
                }
                let mode = spread.modes[(i % spread.modes.len() as u64) as usize];
                let window = usize::from(spread.window.load(Ordering::SeqCst)).min(WINDOWS - 1);
                let sent = one_token(&spread, &clients, &template, &mut rng, i, mode).await;
                for (latency, result) in sent {
                    spread.requests.fetch_add(1, Ordering::Relaxed);
                    if result.is_err() {
                        spread.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    out.cells[window][mode.index()].note(latency, result);
                }
                if mode != Mode::Hit {
                    out.tokens.push((i, mode, window));
                }
            }
            out
        }));
    }
    let mut total = Outcome::empty();
    for worker in workers {
        match worker.await {
            Ok(out) => total.merge(out),
            Err(e) => {
                let cell = &mut total.cells[0][0];
                cell.errors += 1;
                cell.first_error
                    .get_or_insert(format!("worker failed: {e}"));
            }
        }
    }
    total.elapsed = start.elapsed();
    total
}

type Sent = Vec<(Duration, Result<(), String>)>;

async fn one_token(
    spread: &Spread,
    clients: &Arc<Vec<Client>>,
    template: &Arc<Object>,
    rng: &mut Rng,
    i: u64,
    mode: Mode,
) -> Sent {
    let n = clients.len() as u64;
    match mode {
        Mode::Hit => {
            let token = load::token(spread.old.0, rng.below(spread.old.1));
            let mut client = clients[rng.below(n) as usize].clone();
            vec![timed(&mut client, template, &token).await]
        }
        Mode::Single => {
            let token = load::token(spread.kind, i);
            let mut client = clients[rng.below(n) as usize].clone();
            vec![timed(&mut client, template, &token).await]
        }
        Mode::Sequential => {
            let token = load::token(spread.kind, i);
            let mut sent = Vec::with_capacity(clients.len());
            for r in permutation(rng, clients.len()) {
                let mut client = clients[r].clone();
                sent.push(timed(&mut client, template, &token).await);
            }
            sent
        }
        Mode::Burst => {
            let token = Arc::new(load::token(spread.kind, i));
            let mut set = JoinSet::new();
            for r in permutation(rng, clients.len()) {
                let (mut client, template, token) =
                    (clients[r].clone(), template.clone(), token.clone());
                set.spawn(async move { timed(&mut client, &template, &token).await });
            }
            let mut sent = Vec::with_capacity(clients.len());
            while let Some(joined) = set.join_next().await {
                sent.push(joined.unwrap_or_else(|e| (Duration::ZERO, Err(format!("task: {e}")))));
            }
            sent
        }
    }
}

async fn timed(
    client: &mut Client,
    template: &Object,
    token: &str,
) -> (Duration, Result<(), String>) {
    let sent = Instant::now();
    let result = load::call(client, template, token, Expect::Allow).await;
    (sent.elapsed(), result)
}

/// 0..n in random order (Fisher–Yates).
fn permutation(rng: &mut Rng, n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    for k in (1..n).rev() {
        let j = rng.below(k as u64 + 1) as usize;
        order.swap(k, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permutation_holds_every_replica_once() {
        let mut rng = Rng::new(7);
        let mut firsts = [0u32; 3];
        for _ in 0..300 {
            let mut order = permutation(&mut rng, 3);
            firsts[order[0]] += 1;
            order.sort_unstable();
            assert_eq!(order, vec![0, 1, 2]);
        }
        // Every replica comes first sometimes: the order is not fixed.
        assert!(firsts.iter().all(|&f| f > 50), "{firsts:?}");
    }
}
