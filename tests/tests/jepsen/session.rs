//! One session of the load and everything it saw: the items it sent, the ones
//! acknowledged and at which version, every item some reply held, and a line per call.
//! Each reply is checked against what came before (the version went up, no item an
//! earlier reply held went missing), and a violation explains the items it lacks.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use examples::cart::{CartClient, CartRequest, CartResponse, CartView};
use scone::ClientId;
use scone_cluster::{ClusterChannel, RoutingToken};
use scone_rpc::SconeClient;

/// A thin cart client on the cluster.
pub(crate) type ThinCart = CartClient<SconeClient<CartRequest, CartResponse, ClusterChannel>>;

/// One session of the load and everything it saw.
pub(crate) struct Session {
    pub(crate) index: usize,
    pub(crate) id: ClientId,
    pub(crate) cart: ThinCart,
    pub(crate) next: usize,
    /// Every item it sent, acknowledged or not.
    pub(crate) sent: HashSet<String>,
    /// Acknowledged items and the version each was acknowledged at, in order.
    pub(crate) acked: Vec<(String, u64)>,
    /// The highest acknowledged version.
    pub(crate) max_version: u64,
    /// Every item some reply held, and which reply first held it: a later reply must
    /// hold it too.
    pub(crate) seen: BTreeMap<String, String>,
    /// Failed calls: item and what went wrong.
    pub(crate) failed: Vec<(String, String)>,
    /// What contradicts the guarantees, as it was seen.
    pub(crate) violations: Vec<String>,
    pub(crate) calls: usize,
    /// Every call, one line each: when it was sent, and how it ended.
    pub(crate) history: Vec<String>,
    /// Items reported missing from a reply already.
    pub(crate) reported: HashSet<String>,
    /// How to name nodes and times in what it reports.
    pub(crate) names: Names,
}

/// Node names by client address, and the test's start: to describe tokens and times.
#[derive(Clone)]
pub(crate) struct Names {
    pub(crate) nodes: Arc<BTreeMap<SocketAddr, String>>,
    pub(crate) t0: Instant,
}

impl Names {
    pub(crate) fn node(&self, addr: SocketAddr) -> String {
        self.nodes
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| addr.to_string())
    }

    /// A token, short: version, then the primary and the secondaries that hold it.
    pub(crate) fn token(&self, token: &RoutingToken) -> String {
        let secondaries: Vec<String> = token
            .secondaries
            .iter()
            .map(|node| self.node(*node))
            .collect();
        format!(
            "version {} on {} + [{}]",
            token.version,
            self.node(token.primary),
            secondaries.join(", ")
        )
    }

    /// `at` as the timeline shows it.
    pub(crate) fn at(&self, at: Instant) -> String {
        format!(
            "t={:.2}s",
            at.saturating_duration_since(self.t0).as_secs_f64()
        )
    }
}

impl Session {
    /// A session that sent nothing yet.
    pub(crate) fn new(index: usize, id: ClientId, cart: ThinCart, names: Names) -> Self {
        Self {
            index,
            id,
            cart,
            next: 0,
            sent: HashSet::new(),
            acked: Vec::new(),
            max_version: 0,
            seen: BTreeMap::new(),
            failed: Vec::new(),
            violations: Vec::new(),
            calls: 0,
            history: Vec::new(),
            reported: HashSet::new(),
            names,
        }
    }
}

impl Session {
    /// Records the acknowledged `add` of `item`, and checks the reply against what came
    /// before.
    pub(crate) fn acknowledge(
        &mut self,
        item: &str,
        view: &CartView,
        token: Option<RoutingToken>,
        replicas: usize,
    ) {
        let index = self.index;
        let Some(token) = token else {
            self.violations.push(format!(
                "session {index}: the add of {item} was acknowledged with no routing token"
            ));
            return;
        };
        let version = token.version;
        let by = &view.served_by;
        if version <= self.max_version {
            self.violations.push(format!(
                "session {index}: {item} was acknowledged by {by} at version {version}, not above \
                 version {} acknowledged before: the session went backwards",
                self.max_version
            ));
        }
        let secondaries: HashSet<SocketAddr> = token
            .secondaries
            .iter()
            .copied()
            .filter(|node| *node != token.primary)
            .collect();
        if secondaries.len() < replicas {
            self.violations.push(format!(
                "session {index}: {item} was acknowledged by {by} with {} copies on other nodes, \
                 {replicas} required (token {token:?})",
                secondaries.len()
            ));
        }
        if !view.items.contains_key(item) {
            self.violations.push(format!(
                "session {index}: the reply to the add of {item} (by {by}, version {version}) \
                 lacks {item}"
            ));
        }
        let missing = self.missing_from(view);
        if !missing.is_empty() {
            self.violations.push(format!(
                "session {index}: the reply to the add of {item} (by {by}, version {version}, \
                 token {}) lacks {} item(s) an earlier reply held: the session went backwards; {}",
                self.names.token(&token),
                missing.len(),
                self.explain(&missing)
            ));
        }
        self.saw(
            view,
            &format!(
                "the reply to the add of {item} (by {by}, token {})",
                self.names.token(&token)
            ),
        );
        self.max_version = self.max_version.max(version);
        self.acked.push((item.to_owned(), version));
    }
}

impl Session {
    /// The items an earlier reply held that `view` lacks, but for those reported missing
    /// already (each is reported once, where it went missing first).
    pub(crate) fn missing_from(&mut self, view: &CartView) -> Vec<String> {
        let missing: Vec<String> = self
            .seen
            .keys()
            .filter(|item| !view.items.contains_key(*item) && !self.reported.contains(*item))
            .cloned()
            .collect();
        self.reported.extend(missing.iter().cloned());
        missing
    }

    /// Notes the items of `view`, a reply described by `what`.
    pub(crate) fn saw(&mut self, view: &CartView, what: &str) {
        for item in view.items.keys() {
            self.seen
                .entry(item.clone())
                .or_insert_with(|| what.to_owned());
        }
    }

    /// For each of (up to 5 of) `items`: whether its add was acknowledged, and which reply
    /// first held it.
    pub(crate) fn explain(&self, items: &[String]) -> String {
        let explained: Vec<String> = items
            .iter()
            .take(5)
            .map(|item| {
                let add = match self.acked.iter().find(|(acked, _)| acked == item) {
                    Some((_, version)) => format!("acknowledged at version {version}"),
                    None => match self.failed.iter().find(|(failed, _)| failed == item) {
                        Some((_, error)) => format!("not acknowledged: {error}"),
                        None => "not acknowledged".into(),
                    },
                };
                let first = self.seen.get(item).map_or("no reply", String::as_str);
                // The calls around its own.
                let call = format!(" {item}: ");
                let around = match self.history.iter().position(|line| line.contains(&call)) {
                    Some(at) => {
                        let from = at.saturating_sub(3);
                        let to = (at + 4).min(self.history.len());
                        format!(
                            "; the calls around it:\n      {}",
                            self.history[from..to].join("\n      ")
                        )
                    }
                    None => String::new(),
                };
                format!("{item}: its add {add}; first held by {first}{around}")
            })
            .collect();
        explained.join("; ")
    }
}
