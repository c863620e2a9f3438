//! `phantom-bench fleet`: several plugin processes sharing one Redis (a
//! `redis-server` child on a loopback port, no persistence), the in-process
//! fake AS counting introspections per token, and:
//!
//! 1. spread: N tokens, each sent to every replica (half all at once, half
//!    one after another, in random order), `--concurrency` tokens in flight:
//!    AS calls per token for the fleet;
//! 2. the cost of each path, measured apart: an in-process hit, a shared hit
//!    (a token in Redis but not yet in this replica's memory), a miss;
//! 3. the in-process hit path with `REDIS_URL` set and not set, alternating
//!    back to back (hit-1 and hit-10k), and a miss without Redis;
//! 4. what a shared hit adds in CPU: the keyed digest and the AEAD open;
//! 5. an outage: the spread keeps going while Redis is killed, then started
//!    again on the same port: errors, AS calls per token, miss latency, and
//!    how long until every replica uses Redis again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::fake_as::FakeAs;
use crate::fleet_args::FleetArgs;
use crate::load::{self, Client, Expect, Phase, Tokens};
use crate::procs::{self, Target};
use crate::redis_proc::RedisProcess;
use crate::spread::{self, Mode, Spread};
use crate::stats::{self, Leg, Ratio, Row, RowFacts, Sum};
use crate::{fleet_outage, scrape};

/// The HMAC key of the fleet's digests: the same on every replica.
const KEY_SECRET: &str = "phantom-bench-fleet-key-secret-0123456789";

pub struct Replica {
    pub target: Target,
    pub admin: SocketAddr,
    pub clients: Vec<Client>,
}

impl Replica {
    pub fn pid(&self) -> u32 {
        self.target.pid()
    }

    pub async fn metrics(&self) -> String {
        scrape::metrics(self.admin).await.unwrap_or_default()
    }
}

pub struct FleetBench {
    pub args: FleetArgs,
    pub fake: FakeAs,
    pub ticks: f64,
    pub replicas: Vec<Replica>,
    pub rows: Vec<Row>,
    pub ratios: Vec<Ratio>,
    pub extra: Map<String, Value>,
}

/// Runs every step; the returned code is `false` when any request failed.
pub async fn fleet(args: FleetArgs) -> Result<bool, String> {
    if !args.plugin.is_file() {
        return Err(format!(
            "no plugin binary at {} (build it, or pass --plugin)",
            args.plugin.display()
        ));
    }
    let mut redis = RedisProcess::start(args.redis_server.clone())?;
    let latency = Duration::from_millis(args.as_latency_ms);
    let fake = FakeAs::start(SocketAddr::from(([127, 0, 0, 1], 0)), latency, 3600)
        .await
        .map_err(|e| format!("fake AS: {e}"))?;
    fake.count_per_token();
    let mut bench = FleetBench {
        args,
        fake,
        ticks: procs::clock_ticks(),
        replicas: Vec::new(),
        rows: Vec::new(),
        ratios: Vec::new(),
        extra: Map::new(),
    };
    for _ in 0..bench.args.replicas.max(2) {
        let replica = bench.start_replica(Some(&redis.url())).await?;
        bench.replicas.push(replica);
    }
    bench.spread_phase(redis.pid()).await?;
    bench.inproc_hit().await?;
    bench.shared_hit().await?;
    bench.miss().await?;
    bench.with_and_without_redis(&redis.url()).await?;
    bench.seal_cost()?;
    fleet_outage::run(&mut bench, &mut redis).await?;
    crate::fleet_report::finish(&bench)
}

impl FleetBench {
    pub fn measured(&self) -> Duration {
        Duration::from_secs_f64(self.args.seconds.max(0.01))
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.args.warmup.max(0.0))
    }

    async fn start_replica(&self, redis_url: Option<&str>) -> Result<Replica, String> {
        let admin = SocketAddr::from(([127, 0, 0, 1], procs::free_port()?));
        let mut env = vec![("ADMIN_ADDR".to_owned(), admin.to_string())];
        if let Some(url) = redis_url {
            env.push(("REDIS_URL".into(), url.into()));
            env.push(("REDIS_KEY_SECRET".into(), KEY_SECRET.into()));
        }
        env.extend(self.args.plugin_env.iter().cloned());
        let a = &self.args;
        let target =
            procs::start_plugin(&a.plugin, self.fake.addr, &a.cache_max_bytes, &env).await?;
        let clients = load::connect(target.addr, 1).await?;
        Ok(Replica {
            target,
            admin,
            clients,
        })
    }

    /// Plugin CPU seconds of `pids` so far.
    pub fn cpu(&self, pids: &[u32]) -> f64 {
        pids.iter()
            .filter_map(|&p| procs::cpu_ticks(p))
            .sum::<u64>() as f64
            / self.ticks
    }

    fn facts(&self, name: &str, pid: u32, setup: u64) -> RowFacts {
        RowFacts {
            workload: name.into(),
            target: "plugin",
            connections: 1,
            streams: self.args.streams,
            memory: procs::memory(pid),
            as_calls_setup: setup,
        }
    }

    /// One timed closed-loop leg against `pid`.
    async fn leg(&self, pid: u32, clients: &[Client], time: Duration, tokens: &Arc<Tokens>) -> Leg {
        let (cpu0, calls0) = (self.cpu(&[pid]), self.fake.calls());
        let template = Arc::new(load::template(0));
        let phase = load::closed_loop(
            clients,
            self.args.streams,
            time,
            template,
            tokens.clone(),
            Expect::Allow,
        )
        .await;
        Leg {
            phase,
            cpu_seconds: self.cpu(&[pid]) - cpu0,
            as_calls: self.fake.calls() - calls0,
        }
    }

    /// Warm-up, then one measured leg, as a row.
    pub async fn timed_row(&mut self, name: &str, replica: &Replica, tokens: Arc<Tokens>) {
        let calls0 = self.fake.calls();
        let warm = self
            .leg(replica.pid(), &replica.clients, self.warmup(), &tokens)
            .await;
        let setup = self.fake.calls() - calls0;
        let leg = self
            .leg(replica.pid(), &replica.clients, self.measured(), &tokens)
            .await;
        let mut sum = Sum::default();
        sum.add(&leg);
        sum.setup_errors(warm.phase.errors, warm.phase.first_error);
        let row = sum.row(self.facts(name, replica.pid(), setup));
        self.rows.push(row);
    }

    /// Sends `kind` tokens 0..n once each to `replica`, with the fake AS
    /// answering at once and no more in flight than the plugin's default
    /// introspection limit (64): setting up, not measuring.
    async fn prefill(
        &self,
        replica: &Replica,
        kind: &'static str,
        n: u64,
    ) -> (u64, Option<String>) {
        self.fake.set_latency(Duration::ZERO);
        let out = load::prefill(&replica.clients, 64, kind, n).await;
        self.fake
            .set_latency(Duration::from_millis(self.args.as_latency_ms));
        out
    }

    /// Every token to every replica; AS calls per token.
    /// `redis`: the server's process, whose CPU time is reported apart.
    async fn spread_phase(&mut self, redis: Option<u32>) -> Result<(), String> {
        let pids: Vec<u32> = self.replicas.iter().map(Replica::pid).collect();
        let lists: Vec<Vec<Client>> = self.replicas.iter().map(|r| r.clients.clone()).collect();
        let redis: Vec<u32> = redis.into_iter().collect();
        let (cpu0, calls0) = (self.cpu(&pids), self.fake.calls());
        let redis0 = self.cpu(&redis);
        let outcome = spread::run(
            &lists,
            Spread {
                kind: "fleet",
                modes: vec![Mode::Burst, Mode::Sequential],
                count: Some(self.args.tokens),
                deadline: None,
                concurrency: self.args.concurrency,
                old: ("fleet", 0),
                window: Arc::new(AtomicU8::new(0)),
                requests: Arc::new(AtomicU64::new(0)),
                errors: Arc::new(AtomicU64::new(0)),
            },
        )
        .await;
        let cpu = self.cpu(&pids) - cpu0;
        let redis_cpu = self.cpu(&redis) - redis0;
        let calls = self.fake.calls() - calls0;
        let total = outcome.total();
        let mut modes = Map::new();
        for mode in [Mode::Burst, Mode::Sequential] {
            let (tokens, as_calls, over) = self.as_calls(&outcome.tokens, "fleet", mode, None);
            let cell = &outcome.cells[0][mode.index()];
            modes.insert(
                mode.name().into(),
                json!({
                    "tokens": tokens, "requests": cell.requests, "errors": cell.errors,
                    "as_calls": as_calls,
                    "as_calls_per_token": as_calls as f64 / tokens.max(1) as f64,
                    "tokens_with_more_than_one_call": over,
                    "p50_us": cell.hist.value_at_quantile(0.5),
                    "p99_us": cell.hist.value_at_quantile(0.99),
                }),
            );
        }
        let mut per_replica = Vec::new();
        for r in &self.replicas {
            per_replica.push(shared_counts(&r.metrics().await));
        }
        let secs = outcome.elapsed.as_secs_f64();
        self.extra.insert(
            "spread".into(),
            json!({
                "replicas": self.replicas.len(),
                "tokens": self.args.tokens,
                "requests": total.requests,
                "errors": total.errors,
                "first_error": total.first_error,
                "seconds": secs,
                "requests_per_second": total.requests as f64 / secs.max(1e-9),
                "as_calls": calls,
                "as_calls_per_token": calls as f64 / self.args.tokens.max(1) as f64,
                "plugin_cpu_us_per_request": cpu * 1e6 / total.requests.max(1) as f64,
                "redis_cpu_us_per_request": redis_cpu * 1e6 / total.requests.max(1) as f64,
                "p50_us": total.hist.value_at_quantile(0.5),
                "p99_us": total.hist.value_at_quantile(0.99),
                "modes": modes,
                "replica_metrics": per_replica,
            }),
        );
        Ok(())
    }

    /// Tokens of `mode` (in `window`, if given): how many, their AS calls in
    /// all, and how many cost more than one.
    pub fn as_calls(
        &self,
        tokens: &[(u64, Mode, usize)],
        kind: &str,
        mode: Mode,
        window: Option<usize>,
    ) -> (u64, u64, u64) {
        let (mut n, mut calls, mut over) = (0, 0, 0);
        for &(i, m, w) in tokens {
            if m != mode || window.is_some_and(|x| x != w) {
                continue;
            }
            let c = u64::from(self.fake.calls_for(&load::token(kind, i)));
            n += 1;
            calls += c;
            over += u64::from(c > 1);
        }
        (n, calls, over)
    }

    /// (a): the spread's tokens, at random, on a replica that holds them all.
    async fn inproc_hit(&mut self) -> Result<(), String> {
        let tokens = Arc::new(Tokens::Random {
            kind: "fleet",
            n: self.args.tokens,
        });
        let replica = self.replicas.remove(1);
        self.timed_row("inproc-hit", &replica, tokens).await;
        self.replicas.insert(1, replica);
        Ok(())
    }

    /// (b): tokens introspected through replica 0, then sent once each to
    /// replica 1, which has never seen them.
    async fn shared_hit(&mut self) -> Result<(), String> {
        let n = self.args.shared_hits;
        let calls0 = self.fake.calls();
        let (errors, first) = self.prefill(&self.replicas[0], "shared", n).await;
        // Writes to Redis may finish just after the answer.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let setup = self.fake.calls() - calls0;
        let dst = &self.replicas[1];
        let before = shared_counts(&dst.metrics().await);
        let (cpu0, calls1) = (self.cpu(&[dst.pid()]), self.fake.calls());
        let phase = load::each_once(&dst.clients, self.args.streams, "shared", 0, n).await;
        let leg = Leg {
            phase,
            cpu_seconds: self.cpu(&[dst.pid()]) - cpu0,
            as_calls: self.fake.calls() - calls1,
        };
        let after = shared_counts(&dst.metrics().await);
        let mut sum = Sum::default();
        sum.add(&leg);
        sum.setup_errors(errors, first);
        let row = sum.row(self.facts("shared-hit", dst.pid(), setup));
        self.rows.push(row);
        self.extra.insert(
            "shared_hit".into(),
            json!({
                "tokens": n,
                "shared_lookups_hit": after["lookup_hit"].as_f64().unwrap_or(0.0)
                    - before["lookup_hit"].as_f64().unwrap_or(0.0),
                "as_calls": leg.as_calls,
            }),
        );
        Ok(())
    }

    /// (c): a never-seen token on every request.
    async fn miss(&mut self) -> Result<(), String> {
        let at = 2 % self.replicas.len();
        let replica = self.replicas.remove(at);
        self.timed_row("miss", &replica, Arc::new(Tokens::fresh("miss", 0)))
            .await;
        self.replicas.insert(at, replica);
        Ok(())
    }

    /// (d): the same hits on a plugin with `REDIS_URL` and one without,
    /// alternating; and misses without Redis for reference.
    async fn with_and_without_redis(&mut self, url: &str) -> Result<(), String> {
        let plain = self.start_replica(None).await?;
        let shared = self.start_replica(Some(url)).await?;
        self.timed_row(
            "miss-no-redis",
            &plain,
            Arc::new(Tokens::fresh("miss-plain", 0)),
        )
        .await;
        let mut setup = (0, None);
        for r in [&plain, &shared] {
            for (kind, n) in [("one", 1), ("rr", self.args.hit_tokens)] {
                let (e, f) = self.prefill(r, kind, n).await;
                setup.0 += e;
                setup.1 = setup.1.or(f);
            }
        }
        let cases = [
            ("hit-1", Arc::new(Tokens::One(load::token("one", 0)))),
            (
                "hit-10k",
                Arc::new(Tokens::round_robin("rr", self.args.hit_tokens)),
            ),
        ];
        let rounds = self.args.rounds.max(1);
        let leg_time = self.measured() / u32::try_from(rounds).unwrap_or(1);
        for (name, tokens) in cases {
            let mut sums = [Sum::default(), Sum::default()];
            for (k, r) in [&plain, &shared].into_iter().enumerate() {
                let warm = self.leg(r.pid(), &r.clients, self.warmup(), &tokens).await;
                sums[k].setup_errors(warm.phase.errors, warm.phase.first_error);
            }
            sums[0].setup_errors(setup.0, setup.1.take());
            setup.0 = 0;
            let (mut thr, mut cpu) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                let mut legs: [Option<Leg>; 2] = [None, None];
                for side in [round % 2, 1 - round % 2] {
                    let r = if side == 0 { &plain } else { &shared };
                    legs[side] = Some(self.leg(r.pid(), &r.clients, leg_time, &tokens).await);
                }
                if let [Some(a), Some(b)] = &legs {
                    thr.push(b.rps() / a.rps());
                    cpu.push(b.cpu_us_per_request() / a.cpu_us_per_request());
                    sums[0].add(a);
                    sums[1].add(b);
                }
            }
            let [a, b] = sums;
            let row_a = a.row(self.facts(&format!("{name} no-redis"), plain.pid(), 0));
            let row_b = b.row(self.facts(&format!("{name} redis"), shared.pid(), 0));
            self.rows.push(row_a);
            self.rows.push(row_b);
            self.ratios.push(Ratio {
                pair: format!("{name} redis/no-redis"),
                connections: 1,
                streams: self.args.streams,
                throughput_median: stats::median(&thr),
                cpu_median: stats::median(&cpu),
                throughput_rounds: thr,
                cpu_rounds: cpu,
            });
        }
        Ok(())
    }

    /// What a shared hit computes that an in-process hit does not: the
    /// keyed digest naming the entry (computed on every request with Redis
    /// on), and opening the sealed answer (HKDF, XChaCha20-Poly1305), timed
    /// here in this process on an answer the size of the fake AS's.
    fn seal_cost(&mut self) -> Result<(), String> {
        use std::hint::black_box;
        use tyk_phantom_token::shared::seal::FleetKeys;
        let n = self.args.seal_iterations.max(1);
        let keys = FleetKeys::new(KEY_SECRET.as_bytes());
        let token = load::token("seal", 0);
        let mut payload = vec![b'A'];
        payload.extend_from_slice(self.fake.jwt_for(&token).as_bytes());
        let name = format!(
            "phantom-token:fleet:{{{}}}:v",
            keys.digest(token.as_bytes()).to_hex()
        );
        let sealed = keys
            .seal(
                token.as_bytes(),
                name.as_bytes(),
                &payload,
                Duration::from_secs(3_999_999_000),
                Duration::from_secs(4_000_000_000),
            )
            .map_err(|e| e.to_string())?;
        let time = |f: &dyn Fn()| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(n)
        };
        let digest = time(&|| {
            black_box(keys.digest(black_box(token.as_bytes())));
        });
        let mut opened_ok = true;
        let open = time(&|| {
            let opened = keys.open(black_box(token.as_bytes()), name.as_bytes(), &sealed);
            black_box(&opened);
        });
        opened_ok &= keys
            .open(token.as_bytes(), name.as_bytes(), &sealed)
            .is_ok();
        if !opened_ok {
            return Err("a sealed answer did not open".into());
        }
        self.extra.insert(
            "seal".into(),
            json!({
                "iterations": n,
                "payload_bytes": payload.len(),
                "sealed_bytes": sealed.len(),
                "digest_us": digest,
                "open_us": open,
            }),
        );
        Ok(())
    }
}

/// The shared-cache counters of one replica's metrics.
pub fn shared_counts(text: &str) -> Value {
    let v = |name: &str, label: &str| scrape::value(text, name, label);
    json!({
        "lookup_hit": v("phantom_shared_cache_lookups_total", "result=\"hit\""),
        "lookup_miss": v("phantom_shared_cache_lookups_total", "result=\"miss\""),
        "lookup_unavailable": v("phantom_shared_cache_lookups_total", "result=\"unavailable\""),
        "locks_won": v("phantom_shared_cache_locks_total", "result=\"won\""),
        "locks_held_elsewhere": v("phantom_shared_cache_locks_total", "result=\"held_elsewhere\""),
        "waits_hit": v("phantom_shared_cache_waits_total", "result=\"hit\""),
        "waits_timed_out": v("phantom_shared_cache_waits_total", "result=\"timed_out\""),
        "writes_stored": v("phantom_shared_cache_writes_total", "result=\"stored\""),
        "breaker_state": v("phantom_shared_cache_breaker_state", ""),
    })
}

/// Latency and errors of a phase, for the JSON report.
pub fn phase_json(p: &Phase) -> Value {
    json!({
        "requests": p.requests,
        "errors": p.errors,
        "first_error": p.first_error,
        "p50_us": p.hist.value_at_quantile(0.5),
        "p99_us": p.hist.value_at_quantile(0.99),
        "max_us": p.hist.max(),
    })
}
