//! `hermes_controller_*`: what an operator alerts on for the controller role. Whether this
//! controller leads (a namespace nobody leads gets no configuration), how far its copy into
//! etcd lags the control store (the two revisions), what reconciles found (drift that keeps
//! coming back means something else writes into etcd), and failures by stage.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Where in its work a controller failed (the `stage` label of `hermes_controller_errors_total`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    /// Opening an etcd session or campaigning in the election.
    Campaign,
    /// The start of a term: the feed's revision, the first reconcile, the meta key.
    Start,
    /// A periodic reconcile.
    Reconcile,
    /// Reading the control store's change feed.
    Feed,
    /// Writing a batch of changes (or the meta key) to etcd.
    Apply,
    /// Recording the heartbeat or the gateway instances in the control store.
    Report,
}

impl Stage {
    const ALL: [Stage; 6] = [
        Stage::Campaign,
        Stage::Start,
        Stage::Reconcile,
        Stage::Feed,
        Stage::Apply,
        Stage::Report,
    ];

    fn label(self) -> &'static str {
        match self {
            Stage::Campaign => "campaign",
            Stage::Start => "start",
            Stage::Reconcile => "reconcile",
            Stage::Feed => "feed",
            Stage::Apply => "apply",
            Stage::Report => "report",
        }
    }
}

/// The controller's metrics, labelled with the namespace it copies (`namespace`), so that an
/// alert can tell the namespaces apart. Made with [`ControllerMetrics::register`] they are
/// exported with the node's; [`ControllerMetrics::unregistered`] counts the same for nobody.
#[derive(Clone)]
pub struct ControllerMetrics {
    leader: IntGauge,
    terms: IntCounter,
    control_revision: IntGauge,
    synced_revision: IntGauge,
    changes: IntCounter,
    reconciles: IntCounter,
    repairs: IntCounterVec,
    errors: IntCounterVec,
}

impl std::fmt::Debug for ControllerMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerMetrics")
            .field("leader", &self.leader.get())
            .field("synced_revision", &self.synced_revision.get())
            .finish_non_exhaustive()
    }
}

impl ControllerMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &Registry, namespace: &str) -> Result<Self, prometheus::Error> {
        let m = Self::build(namespace)?;
        registry.register(Box::new(m.leader.clone()))?;
        registry.register(Box::new(m.terms.clone()))?;
        registry.register(Box::new(m.control_revision.clone()))?;
        registry.register(Box::new(m.synced_revision.clone()))?;
        registry.register(Box::new(m.changes.clone()))?;
        registry.register(Box::new(m.reconciles.clone()))?;
        registry.register(Box::new(m.repairs.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        Ok(m)
    }

    /// The metrics, exported nowhere.
    pub fn unregistered() -> Self {
        // Invariant: the names, help texts and labels below are constants that
        // `prometheus` accepts (the unit test `metrics_register` builds them), so building
        // them cannot fail.
        #[allow(clippy::expect_used)]
        Self::build("").expect("the controller's metric definitions are valid")
    }

    fn build(namespace: &str) -> Result<Self, prometheus::Error> {
        let opts =
            |name: &str, help: &str| Opts::new(name, help).const_label("namespace", namespace);
        // Prometheus counts its label values from zero only once they are named: name them
        // all, so that a rate over them works from the first scrape.
        let repairs = IntCounterVec::new(
            opts(
                "hermes_controller_reconcile_repairs_total",
                "Keys a reconcile found wrong in etcd and rewrote (written) or removed (deleted)",
            ),
            &["action"],
        )?;
        for action in ["written", "deleted"] {
            repairs.with_label_values(&[action]);
        }
        let errors = IntCounterVec::new(
            opts(
                "hermes_controller_errors_total",
                "Failures of the controller by stage (each is retried)",
            ),
            &["stage"],
        )?;
        for stage in Stage::ALL {
            errors.with_label_values(&[stage.label()]);
        }
        Ok(ControllerMetrics {
            leader: IntGauge::with_opts(opts(
                "hermes_controller_leader",
                "1 while this controller leads its namespace's controllers, else 0",
            ))?,
            terms: IntCounter::with_opts(opts(
                "hermes_controller_terms_total",
                "Elections this controller has won",
            ))?,
            control_revision: IntGauge::with_opts(opts(
                "hermes_controller_control_revision",
                "While leading: the newest change-feed revision seen in the control store \
                 (0 when not leading)",
            ))?,
            synced_revision: IntGauge::with_opts(opts(
                "hermes_controller_synced_revision",
                "While leading: the change-feed revision copied into etcd; control_revision \
                 minus this is the lag (0 when not leading)",
            ))?,
            changes: IntCounter::with_opts(opts(
                "hermes_controller_changes_applied_total",
                "Change-feed entries the leading controller has applied to etcd (audit-only \
                 entries, which write nothing, included)",
            ))?,
            reconciles: IntCounter::with_opts(opts(
                "hermes_controller_reconciles_total",
                "Full reconciles of etcd against the control store completed",
            ))?,
            repairs,
            errors,
        })
    }

    /// A term begins: the gauge says so until the guard drops (the term ends, or the task
    /// running it panics or is aborted), when the revisions go back to 0 too, so a controller
    /// that no longer leads never shows a lag it is not working off.
    pub(crate) fn term(&self) -> Term {
        self.leader.set(1);
        self.terms.inc();
        Term(self.clone())
    }

    /// The etcd client could not be made (the node retries): counted as a campaign failure.
    pub fn connect_failed(&self) {
        self.failed(Stage::Campaign);
    }

    /// The control store holds changes up to `revision`.
    pub(crate) fn seen(&self, revision: i64) {
        if revision > self.control_revision.get() {
            self.control_revision.set(revision);
        }
    }

    /// Etcd holds the changes up to `revision`.
    pub(crate) fn synced(&self, revision: i64) {
        self.synced_revision.set(revision);
        self.seen(revision);
    }

    pub(crate) fn applied(&self, changes: usize) {
        self.changes.inc_by(changes as u64);
    }

    pub(crate) fn reconciled(&self, written: usize, deleted: usize) {
        self.reconciles.inc();
        self.repairs
            .with_label_values(&["written"])
            .inc_by(written as u64);
        self.repairs
            .with_label_values(&["deleted"])
            .inc_by(deleted as u64);
    }

    pub(crate) fn failed(&self, stage: Stage) {
        self.errors.with_label_values(&[stage.label()]).inc();
    }

    /// Whether this controller leads, as exported.
    #[cfg(test)]
    pub(crate) fn is_leader(&self) -> bool {
        self.leader.get() == 1
    }

    /// Reconciles completed, as exported.
    #[cfg(test)]
    pub(crate) fn reconciles(&self) -> u64 {
        self.reconciles.get()
    }

    /// Keys reconciles removed from etcd, as exported.
    #[cfg(test)]
    pub(crate) fn repaired_deletes(&self) -> u64 {
        self.repairs.with_label_values(&["deleted"]).get()
    }

    /// The revisions seen in the control store and copied into etcd, as exported.
    #[cfg(test)]
    pub(crate) fn revisions(&self) -> (i64, i64) {
        (self.control_revision.get(), self.synced_revision.get())
    }
}

/// A term of leadership, as the metrics show it; see [`ControllerMetrics::term`].
pub(crate) struct Term(ControllerMetrics);

impl Drop for Term {
    fn drop(&mut self) {
        self.0.leader.set(0);
        self.0.control_revision.set(0);
        self.0.synced_revision.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_register() {
        let registry = Registry::new();
        let m = ControllerMetrics::register(&registry, "default").unwrap();
        let term = m.term();
        m.synced(5);
        m.seen(9);
        m.synced(7);
        m.reconciled(2, 1);
        m.failed(Stage::Feed);
        let families = registry.gather();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        for name in [
            "hermes_controller_leader",
            "hermes_controller_terms_total",
            "hermes_controller_control_revision",
            "hermes_controller_synced_revision",
            "hermes_controller_changes_applied_total",
            "hermes_controller_reconciles_total",
            "hermes_controller_reconcile_repairs_total",
            "hermes_controller_errors_total",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert!(m.is_leader());
        assert_eq!(m.revisions(), (9, 7));
        assert_eq!(m.repaired_deletes(), 1);
        // Every stage is exported from the start, at zero until it fails.
        let errors = families
            .iter()
            .find(|f| f.name() == "hermes_controller_errors_total")
            .unwrap();
        assert_eq!(errors.get_metric().len(), 6);
        assert_eq!(errors.get_metric()[0].get_label()[0].value(), "default");
        drop(term);
        assert!(!m.is_leader());
        assert_eq!(m.revisions(), (0, 0));
        // A second registration of the same names is refused, not silently doubled.
        assert!(ControllerMetrics::register(&registry, "default").is_err());
    }
}
