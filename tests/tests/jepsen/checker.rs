//! The checker, once the load stopped and every fault healed: for every session, read the
//! cart twice, then add one more item. Every acknowledged item must be in the cart (lost =
//! 0); the second read must hold all of the first; the last `add` must be acknowledged at
//! a version above every version acknowledged before; a cart holds only items its session
//! sent. Items added twice (at least once) are allowed and counted. The [`Report`] holds
//! the checks that failed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use examples::cart::CartView;
use tarpc::context;

use crate::cluster::{print_counts, Node};
use crate::load::{error_kind, Running, CALL_LIMIT};
use crate::session::Session;

/// Tries of each read (and of the last `add`) of the checker.
const CHECK_ATTEMPTS: usize = 5;

/// What the checker found, and the whole run's counts.
#[derive(Default)]
pub(crate) struct Report {
    pub(crate) failures: Vec<String>,
}

impl Report {
    pub(crate) fn check(&mut self, name: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            println!("   ok: {name}");
        } else {
            println!("   FAILED: {name}: {detail}");
            self.failures.push(format!("{name}: {detail}"));
        }
    }
}

/// A read of `session`'s cart, tried up to [`CHECK_ATTEMPTS`] times; failures are
/// counted in `errors`.
async fn read(session: &Session, errors: &mut BTreeMap<String, usize>) -> anyhow::Result<CartView> {
    for _ in 0..CHECK_ATTEMPTS {
        let error =
            match tokio::time::timeout(CALL_LIMIT, session.cart.view(context::current())).await {
                Ok(Ok(Ok(view))) => return Ok(view),
                Ok(Ok(Err(error))) => format!("the cart refused: {error}"),
                Ok(Err(error)) => error_kind(error),
                Err(_) => format!("no answer within {CALL_LIMIT:?}"),
            };
        *errors.entry(format!("view: {error}")).or_default() += 1;
        // Pacing between tries.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!(
        "session {}: no read succeeded in {CHECK_ATTEMPTS} tries",
        session.index
    )
}

/// Checks every session of the load (stopped) against what the cluster holds now, prints
/// what it found and the nodes' own counts, and adds the checks to `report`.
pub(crate) async fn check(
    report: &mut Report,
    sessions: &mut [Session],
    load: &Running,
    nodes: &[Node],
    replicas: usize,
) {
    if let Ok(dir) = std::env::var("JEPSEN_LOG_DIR") {
        // The nodes' logs carry wall-clock times; the histories, times since the start.
        let started = sessions.first().map(|s| {
            let since = s.names.t0.elapsed();
            let at = std::time::SystemTime::now() - since;
            let since_epoch = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            format!(
                "t=0 is {:.3} s since the Unix epoch\n",
                since_epoch.as_secs_f64()
            )
        });
        let histories: Vec<String> = sessions
            .iter()
            .map(|s| {
                let session = load
                    .channel
                    .token(s.id, &load.service)
                    .map_or("no token".into(), |token| token.session.to_string());
                format!(
                    "session {} ({session}):\n  {}\n",
                    s.index,
                    s.history.join("\n  ")
                )
            })
            .collect();
        let path = std::path::Path::new(&dir).join("sessions.log");
        let text = started.unwrap_or_default() + &histories.concat();
        if let Err(error) = std::fs::write(&path, text) {
            println!("   could not write {}: {error}", path.display());
        }
    }
    let calls: usize = sessions.iter().map(|s| s.calls).sum();
    let acknowledged: usize = sessions.iter().map(|s| s.acked.len()).sum();
    let mut findings = Findings::default();
    for session in sessions.iter_mut() {
        findings.session(session, load, replicas).await;
    }
    // The sessions' own (the load's, and the checker's add) join what the checker found.
    findings
        .violations
        .extend(sessions.iter().flat_map(|s| s.violations.iter().cloned()));
    let Findings {
        violations,
        lost,
        duplicates,
        failed_in_cart,
        lost_examples,
        strangers,
        unreadable,
        lost_unreadable,
        check_errors,
        served_by,
    } = findings;

    let served: Vec<String> = served_by
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect();
    println!(
        "   {} sessions read, served by {}",
        sessions.len(),
        served.join(", ")
    );
    println!(
        "   {acknowledged} acknowledged items: {} lost, {duplicates} added twice (a call run \
         again after a failover: at least once), {failed_in_cart} of {} failed calls' items in \
         the cart all the same",
        lost + lost_unreadable,
        calls - acknowledged
    );
    for (error, count) in &check_errors {
        println!("     checker: {count} x {error}");
    }
    // The nodes' own counts, as their last incarnation saw them.
    print_counts(nodes).await;
    report.check(
        "every session could be read and written after the faults",
        unreadable.is_empty(),
        format!("{} not: {:?}", unreadable.len(), unreadable),
    );
    report.check(
        "every acknowledged update is in its session (lost = 0)",
        lost == 0 && lost_unreadable == 0,
        format!(
            "{lost} lost from sessions read back, e.g. {lost_examples:?}; {lost_unreadable} in \
             sessions no read got back"
        ),
    );
    report.check(
        "no session went backwards: versions only went up, and every reply and read held \
         every item an earlier one did",
        violations.is_empty(),
        format!(
            "{} violation(s):\n  - {}",
            violations.len(),
            violations[..violations.len().min(20)].join("\n  - ")
        ),
    );
    report.check(
        "every cart holds only items its session sent",
        strangers.is_empty(),
        format!(
            "{} others, e.g. {:?}",
            strangers.len(),
            &strangers[..strangers.len().min(10)]
        ),
    );
}

/// What the checker found, over the sessions.
#[derive(Default)]
struct Findings {
    violations: Vec<String>,
    lost: usize,
    duplicates: usize,
    failed_in_cart: usize,
    lost_examples: Vec<String>,
    strangers: Vec<String>,
    unreadable: Vec<String>,
    lost_unreadable: usize,
    check_errors: BTreeMap<String, usize>,
    served_by: BTreeMap<String, usize>,
}

impl Findings {
    /// Reads `session` back twice, then adds one more item.
    async fn session(&mut self, session: &mut Session, load: &Running, replicas: usize) {
        let index = session.index;
        let first = match read(session, &mut self.check_errors).await {
            Ok(view) => view,
            Err(error) => {
                // No node gave the session back: its updates count as lost (the read's
                // errors above say whether the nodes answered `session-unavailable`).
                self.unreadable.push(format!("{error:#}"));
                self.lost_unreadable += session.acked.len();
                return;
            }
        };
        *self.served_by.entry(first.served_by.clone()).or_default() += 1;
        for (item, version) in &session.acked {
            match first.items.get(item) {
                None => {
                    self.lost += 1;
                    if self.lost_examples.len() < 10 {
                        self.lost_examples.push(format!(
                            "session {index}: {item} (acknowledged at version {version}; the \
                             read was served by {})",
                            first.served_by
                        ));
                    }
                }
                Some(&quantity) if quantity > 1 => self.duplicates += 1,
                Some(_) => {}
            }
        }
        session.history.push(format!(
            "{} the checker's first read: by {}, {} items",
            session.names.at(Instant::now()),
            first.served_by,
            first.items.len()
        ));
        let token_before = load.channel.token(session.id, &load.service);
        let token_text = token_before
            .as_ref()
            .map_or("none".into(), |token| session.names.token(token));
        let missing = session.missing_from(&first);
        if !missing.is_empty() {
            self.violations.push(format!(
                "session {index}: the checker's first read (by {}, token {token_text}) lacks {} \
                 item(s) an earlier reply held; {}",
                first.served_by,
                missing.len(),
                session.explain(&missing)
            ));
        }
        session.saw(
            &first,
            &format!(
                "the checker's first read (by {}, token {token_text})",
                first.served_by
            ),
        );
        self.strangers.extend(
            first
                .items
                .keys()
                .filter(|item| !session.sent.contains(*item))
                .map(|item| format!("session {index}: {item}")),
        );
        self.failed_in_cart += session
            .failed
            .iter()
            .filter(|(item, _)| first.items.contains_key(item))
            .count();
        match load.channel.token(session.id, &load.service) {
            Some(token) if token.version >= session.max_version => {}
            token => self.violations.push(format!(
                "session {index}: after the read, the token names version {:?}, below the \
                 acknowledged {}",
                token.map(|t| t.version),
                session.max_version
            )),
        }

        // A second read never goes backwards from the first.
        let second = match read(session, &mut self.check_errors).await {
            Ok(view) => view,
            Err(error) => {
                self.unreadable.push(format!("{error:#}"));
                return;
            }
        };
        session.history.push(format!(
            "{} the checker's second read: by {}, {} items",
            session.names.at(Instant::now()),
            second.served_by,
            second.items.len()
        ));
        let missing = session.missing_from(&second);
        if !missing.is_empty() {
            self.violations.push(format!(
                "session {index}: the checker's second read (by {}, token {token_text}) lacks {} \
                 item(s) an earlier reply held; {}",
                second.served_by,
                missing.len(),
                session.explain(&missing)
            ));
        }
        session.saw(
            &second,
            &format!(
                "the checker's second read (by {}, token {token_text})",
                second.served_by
            ),
        );

        // One more add: its version must be above every version acknowledged before.
        let item = format!("s{index}-check");
        session.sent.insert(item.clone());
        let mut checked = false;
        for _ in 0..CHECK_ATTEMPTS {
            let error = match tokio::time::timeout(
                CALL_LIMIT,
                session.cart.add(context::current(), item.clone(), 1),
            )
            .await
            {
                Ok(Ok(Ok(view))) => {
                    let token = load.channel.token(session.id, &load.service);
                    let held = token
                        .as_ref()
                        .map_or("no token".into(), |token| session.names.token(token));
                    session.history.push(format!(
                        "{} {item}: acknowledged by {}, {held}",
                        session.names.at(Instant::now()),
                        view.served_by
                    ));
                    session.acknowledge(&item, &view, token, replicas);
                    checked = true;
                    break;
                }
                Ok(Ok(Err(error))) => format!("the cart refused: {error}"),
                Ok(Err(error)) => error_kind(error),
                Err(_) => format!("no answer within {CALL_LIMIT:?}"),
            };
            *self
                .check_errors
                .entry(format!("add: {error}"))
                .or_default() += 1;
            // Pacing between tries.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !checked {
            self.unreadable.push(format!(
                "session {index}: the checker's add failed {CHECK_ATTEMPTS} times"
            ));
        }
    }
}
