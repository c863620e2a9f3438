//! `phantom-bench run`: the plugin and the echo baseline as child processes,
//! an in-process fake AS, and each workload on each transport, measured from
//! the client (latency, throughput, errors) and from the OS (CPU time, RSS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::dpop::{self, DpopKey};
use crate::fake_as::FakeAs;
use crate::load::{self, Client, Expect, Tokens};
use crate::procs::{self, Target};
use crate::run_args::{RunArgs, Workload};
use crate::stats::{self, Leg, Ratio, Row, RowFacts, Sum};

/// A DPoP-bound token, its key, and the request its proofs name.
struct DpopCase {
    key: DpopKey,
    method: String,
    htu: String,
    token: String,
    template: Arc<tyk_phantom_token::pb::Object>,
}

struct Bench {
    args: RunArgs,
    fake: FakeAs,
    echo: Option<Target>,
    ticks: f64,
    rows: Vec<Row>,
    ratios: Vec<Ratio>,
    extra: serde_json::Map<String, serde_json::Value>,
}

/// Runs the benchmark; the returned code is non-zero when a workload had errors.
pub async fn run(args: RunArgs) -> Result<bool, String> {
    if !args.plugin.is_file() {
        return Err(format!(
            "no plugin binary at {} (build it, or pass --plugin)",
            args.plugin.display()
        ));
    }
    let fake = FakeAs::start(SocketAddr::from(([127, 0, 0, 1], 0)), Duration::ZERO, 3600)
        .await
        .map_err(|e| format!("fake AS: {e}"))?;
    let workloads = args.workloads.clone();
    let wants = |w| workloads.contains(&w);
    let echo = if wants(Workload::Echo) || wants(Workload::Body1Mib) {
        let exe = match &args.echo {
            Some(path) => path.clone(),
            None => std::env::current_exe().map_err(|e| e.to_string())?,
        };
        Some(procs::start_echo(&exe).await?)
    } else {
        None
    };
    let mut bench = Bench {
        fake,
        echo,
        ticks: procs::clock_ticks(),
        rows: Vec::new(),
        ratios: Vec::new(),
        extra: serde_json::Map::new(),
        args,
    };
    if wants(Workload::Echo) || wants(Workload::Hit1) {
        bench
            .pair(
                wants(Workload::Echo),
                wants(Workload::Hit1),
                0,
                "hit-1",
                "echo",
            )
            .await?;
    }
    if wants(Workload::Hit10k) {
        bench.hit_10k().await?;
    }
    if wants(Workload::Miss) {
        bench.miss().await?;
    }
    if wants(Workload::Body1Mib) {
        let body = bench.args.body_bytes;
        bench
            .pair(true, true, body, "body-1mib", "echo-body-1mib")
            .await?;
    }
    if wants(Workload::Tokens500k) {
        bench.tokens_500k().await?;
    }
    if wants(Workload::DpopHit) {
        bench.dpop_hit().await?;
    }
    bench.report()
}

impl Bench {
    fn measured(&self) -> Duration {
        Duration::from_secs_f64(self.args.seconds.max(0.01))
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.args.warmup.max(0.0))
    }

    async fn plugin(&self) -> Result<Target, String> {
        let a = &self.args;
        procs::start_plugin(&a.plugin, self.fake.addr, &a.cache_max_bytes, &a.plugin_env).await
    }

    fn facts(
        &self,
        workload: &str,
        target: &'static str,
        c: usize,
        pid: u32,
        setup: u64,
    ) -> RowFacts {
        RowFacts {
            workload: workload.into(),
            target,
            connections: c,
            streams: self.args.streams,
            memory: procs::memory(pid),
            as_calls_setup: setup,
        }
    }

    /// One measured closed-loop leg against `pid`.
    async fn leg(
        &self,
        pid: u32,
        clients: &[Client],
        duration: Duration,
        template: &Arc<tyk_phantom_token::pb::Object>,
        tokens: &Arc<Tokens>,
        expect: Expect,
    ) -> Leg {
        let (cpu0, calls0) = (procs::cpu_ticks(pid), self.fake.calls());
        let phase = load::closed_loop(
            clients,
            self.args.streams,
            duration,
            template.clone(),
            tokens.clone(),
            expect,
        )
        .await;
        let cpu = procs::cpu_ticks(pid)
            .zip(cpu0)
            .map_or(f64::NAN, |(b, a)| (b - a) as f64 / self.ticks);
        Leg {
            phase,
            cpu_seconds: cpu,
            as_calls: self.fake.calls() - calls0,
        }
    }

    /// A plugin workload with one cached token, alternating with the same
    /// requests to the echo server (A B A B…), for ratios measured back to back.
    async fn pair(
        &mut self,
        with_echo: bool,
        with_plugin: bool,
        body: usize,
        name: &str,
        echo_name: &str,
    ) -> Result<(), String> {
        let plugin = if with_plugin {
            Some(self.plugin().await?)
        } else {
            None
        };
        let template = Arc::new(load::template(body));
        let tokens = Arc::new(Tokens::One(load::token("one", 0)));
        let calls0 = self.fake.calls();
        let mut setup_errors = (0, None);
        if let Some(p) = &plugin {
            setup_errors = load::prefill(&load::connect(p.addr, 1).await?, 1, "one", 1).await;
        }
        let rounds = self.args.rounds.max(1);
        let leg_time = self.measured() / u32::try_from(rounds).unwrap_or(1);
        for &c in &self.args.connections.clone() {
            let echo = match (&self.echo, with_echo) {
                (Some(e), true) => Some((e.pid(), load::connect(e.addr, c).await?)),
                _ => None,
            };
            let hit = match &plugin {
                Some(p) => Some((p.pid(), load::connect(p.addr, c).await?)),
                None => None,
            };
            let warm = self.warmup();
            let mut echo_warm = (0, None);
            if let Some((pid, clients)) = &echo {
                let leg = self
                    .leg(*pid, clients, warm, &template, &tokens, Expect::Echo)
                    .await;
                echo_warm = (leg.phase.errors, leg.phase.first_error);
            }
            if let Some((pid, clients)) = &hit {
                let leg = self
                    .leg(*pid, clients, warm, &template, &tokens, Expect::Allow)
                    .await;
                setup_errors.0 += leg.phase.errors;
                setup_errors.1 = setup_errors.1.take().or(leg.phase.first_error);
            }
            let setup = self.fake.calls() - calls0;
            let (mut echo_sum, mut hit_sum) = (Sum::default(), Sum::default());
            let (mut thr, mut cpu) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                // A B, then B A: a drift of the machine's speed during a
                // round favours neither side.
                let (mut e, mut h) = (None, None);
                for side in [round % 2, 1 - round % 2] {
                    match (side, &echo, &hit) {
                        (0, Some((pid, cl)), _) => {
                            e = Some(
                                self.leg(*pid, cl, leg_time, &template, &tokens, Expect::Echo)
                                    .await,
                            );
                        }
                        (1, _, Some((pid, cl))) => {
                            h = Some(
                                self.leg(*pid, cl, leg_time, &template, &tokens, Expect::Allow)
                                    .await,
                            );
                        }
                        _ => {}
                    }
                }
                if let (Some(e), Some(h)) = (&e, &h) {
                    thr.push(h.rps() / e.rps());
                    cpu.push(h.cpu_us_per_request() / e.cpu_us_per_request());
                }
                e.iter().for_each(|e| echo_sum.add(e));
                h.iter().for_each(|h| hit_sum.add(h));
            }
            if let Some((pid, _)) = &echo {
                echo_sum.setup_errors(echo_warm.0, echo_warm.1);
                self.rows
                    .push(echo_sum.row(self.facts(echo_name, "echo", c, *pid, 0)));
            }
            if let Some((pid, _)) = &hit {
                hit_sum.setup_errors(std::mem::take(&mut setup_errors.0), setup_errors.1.take());
                self.rows
                    .push(hit_sum.row(self.facts(name, "plugin", c, *pid, setup)));
            }
            if !thr.is_empty() {
                self.ratios.push(Ratio {
                    pair: format!("{name}/{echo_name}"),
                    connections: c,
                    streams: self.args.streams,
                    throughput_median: stats::median(&thr),
                    cpu_median: stats::median(&cpu),
                    throughput_rounds: thr,
                    cpu_rounds: cpu,
                });
            }
        }
        Ok(())
    }

    /// A workload on a fresh plugin, once per transport, after `setup`.
    async fn single(
        &mut self,
        name: &str,
        plugin: &Target,
        tokens: Arc<Tokens>,
        calls0: u64,
        mut setup_errors: (u64, Option<String>),
    ) -> Result<(), String> {
        let template = Arc::new(load::template(0));
        let mut calls0 = calls0;
        for &c in &self.args.connections.clone() {
            let clients = load::connect(plugin.addr, c).await?;
            let warm = self
                .leg(
                    plugin.pid(),
                    &clients,
                    self.warmup(),
                    &template,
                    &tokens,
                    Expect::Allow,
                )
                .await;
            setup_errors.0 += warm.phase.errors;
            setup_errors.1 = setup_errors.1.take().or(warm.phase.first_error);
            let setup = self.fake.calls() - calls0;
            let leg = self
                .leg(
                    plugin.pid(),
                    &clients,
                    self.measured(),
                    &template,
                    &tokens,
                    Expect::Allow,
                )
                .await;
            calls0 = self.fake.calls();
            let mut sum = Sum::default();
            sum.add(&leg);
            sum.setup_errors(setup_errors.0, setup_errors.1.take());
            setup_errors.0 = 0;
            self.rows
                .push(sum.row(self.facts(name, "plugin", c, plugin.pid(), setup)));
        }
        Ok(())
    }

    async fn hit_10k(&mut self) -> Result<(), String> {
        let plugin = self.plugin().await?;
        let calls0 = self.fake.calls();
        let clients = load::connect(plugin.addr, 4).await?;
        let errors = load::prefill(
            &clients,
            self.args.prefill_concurrency,
            "rr",
            self.args.tokens,
        )
        .await;
        let tokens = Arc::new(Tokens::round_robin("rr", self.args.tokens));
        self.single("hit-10k", &plugin, tokens, calls0, errors)
            .await
    }

    async fn miss(&mut self) -> Result<(), String> {
        let plugin = self.plugin().await?;
        self.fake
            .set_latency(Duration::from_millis(self.args.miss_latency_ms));
        let result = self
            .single(
                "miss",
                &plugin,
                Arc::new(Tokens::fresh("miss", 0)),
                self.fake.calls(),
                (0, None),
            )
            .await;
        self.fake.set_latency(Duration::ZERO);
        result
    }

    async fn tokens_500k(&mut self) -> Result<(), String> {
        let plugin = self.plugin().await?;
        let n = self.args.big_tokens;
        let before = procs::memory(plugin.pid()).unwrap_or_default();
        let calls0 = self.fake.calls();
        let cpu0 = procs::cpu_ticks(plugin.pid()).unwrap_or(0);
        let started = Instant::now();
        let clients = load::connect(plugin.addr, 4).await?;
        let errors = load::prefill(&clients, self.args.prefill_concurrency, "big", n).await;
        let took = started.elapsed().as_secs_f64();
        let cpu = (procs::cpu_ticks(plugin.pid()).unwrap_or(0) - cpu0) as f64 / self.ticks;
        let after = procs::memory(plugin.pid()).unwrap_or_default();
        self.extra.insert("tokens_500k_prefill".into(), json!({
            "tokens": n,
            "seconds": took,
            "tokens_per_second": n as f64 / took.max(1e-9),
            "plugin_cpu_us_per_token": cpu * 1e6 / (n.max(1) as f64),
            "as_calls": self.fake.calls() - calls0,
            "errors": errors.0,
            "rss_before_mib": stats::mib(before.0),
            "rss_after_mib": stats::mib(after.0),
            "rss_bytes_per_token": (after.0.saturating_sub(before.0)) as f64 / (n.max(1) as f64),
        }));
        let tokens = Arc::new(Tokens::Random { kind: "big", n });
        self.single("tokens-500k", &plugin, tokens, calls0, errors)
            .await
    }

    /// hit-1 with DPoP: the cached-token path plus one proof checked per
    /// request, alternating (A B, B A) with Bearer hit-1 on the same plugin.
    /// Each DPoP leg sends `--dpop-requests` proofs made just before it.
    async fn dpop_hit(&mut self) -> Result<(), String> {
        let plugin = self.plugin().await?;
        let template = Arc::new(load::template(0));
        let request = template
            .request
            .as_ref()
            .ok_or("template without request")?;
        let case = DpopCase {
            key: DpopKey::generate()?,
            method: request.method.clone(),
            htu: dpop::htu(request),
            token: load::token("dpop", 0),
            template: template.clone(),
        };
        self.fake.bind_dpop(&case.token, case.key.jkt());
        let bearer = Arc::new(Tokens::One(load::token("one", 0)));
        let calls0 = self.fake.calls();
        let first = load::connect(plugin.addr, 1).await?;
        let mut setup = load::prefill(&first, 1, "one", 1).await;
        let once = self.dpop_leg(plugin.pid(), &first, &case, 1).await;
        setup.0 += once.phase.errors;
        setup.1 = setup.1.or(once.phase.first_error);
        let n = self.args.dpop_requests.max(1);
        let rounds = self.args.rounds.max(1);
        let leg_time = self.measured() / u32::try_from(rounds).unwrap_or(1);
        for &c in &self.args.connections.clone() {
            let clients = load::connect(plugin.addr, c).await?;
            let pid = plugin.pid();
            let warm = self
                .leg(
                    pid,
                    &clients,
                    self.warmup(),
                    &template,
                    &bearer,
                    Expect::Allow,
                )
                .await;
            let dwarm = self.dpop_leg(pid, &clients, &case, n / 4).await;
            for p in [warm.phase, dwarm.phase] {
                setup.0 += p.errors;
                setup.1 = setup.1.take().or(p.first_error);
            }
            let setup_calls = self.fake.calls() - calls0;
            let (mut hit_sum, mut dpop_sum) = (Sum::default(), Sum::default());
            let (mut thr, mut cpu) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                let (mut h, mut d) = (None, None);
                for side in [round % 2, 1 - round % 2] {
                    if side == 0 {
                        h = Some(
                            self.leg(pid, &clients, leg_time, &template, &bearer, Expect::Allow)
                                .await,
                        );
                    } else {
                        d = Some(self.dpop_leg(pid, &clients, &case, n).await);
                    }
                }
                if let (Some(h), Some(d)) = (&h, &d) {
                    thr.push(d.rps() / h.rps());
                    cpu.push(d.cpu_us_per_request() / h.cpu_us_per_request());
                    hit_sum.add(h);
                    dpop_sum.add(d);
                }
            }
            dpop_sum.setup_errors(std::mem::take(&mut setup.0), setup.1.take());
            self.rows
                .push(hit_sum.row(self.facts("hit-1 bearer", "plugin", c, pid, setup_calls)));
            self.rows
                .push(dpop_sum.row(self.facts("dpop-hit", "plugin", c, pid, setup_calls)));
            self.ratios.push(Ratio {
                pair: "dpop-hit/hit-1".into(),
                connections: c,
                streams: self.args.streams,
                throughput_median: stats::median(&thr),
                cpu_median: stats::median(&cpu),
                throughput_rounds: thr,
                cpu_rounds: cpu,
            });
        }
        Ok(())
    }

    /// `n` DPoP requests, each with a proof made before the leg starts.
    async fn dpop_leg(&self, pid: u32, clients: &[Client], case: &DpopCase, n: usize) -> Leg {
        let proofs = case.key.proofs(n, &case.method, &case.htu, &case.token);
        let (cpu0, calls0) = (procs::cpu_ticks(pid), self.fake.calls());
        let phase = load::dpop_once(
            clients,
            self.args.streams,
            &case.template,
            &case.token,
            Arc::new(proofs),
        )
        .await;
        let cpu = procs::cpu_ticks(pid)
            .zip(cpu0)
            .map_or(f64::NAN, |(b, a)| (b - a) as f64 / self.ticks);
        Leg {
            phase,
            cpu_seconds: cpu,
            as_calls: self.fake.calls() - calls0,
        }
    }

    fn report(self) -> Result<bool, String> {
        crate::report::finish(&self.args, self.ticks, &self.rows, &self.ratios, self.extra)
    }
}
