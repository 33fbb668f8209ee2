//! One client's watch stream, whichever front end carries it: several watchers multiplexed by
//! `watch_id`, created, cancelled and asked for progress by the client's requests, each
//! delivering its events in order. The JSON gateway and the gRPC service decode requests into
//! [`WatchCommand`]s and encode the [`WatchOut`]s this sends.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::sync::{mpsc, watch as signal, OwnedSemaphorePermit};

use hermes_storage::mvcc::key_value::Event;
use hermes_storage::watch::{WatchItem, WatchOptions, WatchSet, WatcherKey};
use hermes_storage::StoreError;

use super::decode::MAX_REQUEST_BYTES;
use super::error::EtcdError;
use super::rbac::Caller;
use super::{hidden, Api};

/// etcd's default interval between progress notifications for watchers that asked for them.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(600);

/// Watchers one stream may hold at once. A watcher costs a write nothing unless the write
/// touches its range, but each holds memory and a place in the hub's index; a gateway or a
/// controller needs a handful.
pub const MAX_WATCHERS_PER_STREAM: usize = 1024;

/// Watchers the node holds at once, over every stream of both front ends and Election's and
/// Lock's waits, unless `--etcd-max-watchers` says otherwise.
pub const MAX_WATCHERS: usize = 10_000;

/// A response carrying more event bytes than this is split: between revisions always, and
/// inside one revision when the watcher asked for fragments (etcd's limit: its request size).
const MAX_RESPONSE_BYTES: usize = MAX_REQUEST_BYTES;

/// A watch request, decoded.
#[derive(Debug, Clone)]
pub enum WatchCommand {
    Create {
        opts: WatchOptions,
        progress_notify: bool,
        fragment: bool,
        /// 0: the server chooses.
        watch_id: i64,
    },
    Cancel {
        watch_id: i64,
    },
    Progress,
}

/// A watch response, to be encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchOut {
    pub revision: i64,
    pub watch_id: i64,
    pub created: bool,
    pub canceled: bool,
    pub compact_revision: i64,
    pub cancel_reason: String,
    pub fragment: bool,
    pub events: Vec<Event>,
}

struct Active {
    id: i64,
    /// This watcher's place in the node's budget ([`MAX_WATCHERS`]), given back when it ends.
    _slot: OwnedSemaphorePermit,
    progress_notify: bool,
    fragment: bool,
    /// Whether anything was sent since the last progress tick.
    sent_since_tick: bool,
}

enum Step {
    Request(Option<Result<WatchCommand, EtcdError>>),
    Item(WatcherKey, Result<WatchItem, StoreError>),
    ProgressTick,
    Stop,
}

/// How many responses may wait for a slow client before the watchers stop reading.
const BACKLOG: usize = 64;

/// Starts a session on its own task, which ends with the client (when the returned receiver
/// is dropped) or with the node; answers its responses.
pub fn start(
    api: &Api,
    who: Caller,
    requests: impl Stream<Item = Result<WatchCommand, EtcdError>> + Send + Unpin + 'static,
) -> mpsc::Receiver<Result<WatchOut, EtcdError>> {
    let (tx, rx) = mpsc::channel(BACKLOG);
    tokio::spawn(run(
        api.clone(),
        who,
        requests,
        tx,
        api.progress_interval,
        api.shutdown.clone(),
    ));
    rx
}

/// Runs the stream until the client goes away or the node shuts down. A request that cannot be
/// decoded ends it with that error. Like etcd, the end of the client's requests does not end
/// the stream: watchers keep running until the client leaves.
async fn run(
    api: Api,
    who: Caller,
    requests: impl Stream<Item = Result<WatchCommand, EtcdError>> + Unpin,
    tx: mpsc::Sender<Result<WatchOut, EtcdError>>,
    progress_interval: Duration,
    mut shutdown: signal::Receiver<bool>,
) {
    let mut requests = requests.fuse();
    let mut session = Session {
        set: WatchSet::new(api.node.store().clone()),
        api,
        who,
        watchers: BTreeMap::new(),
        ids: HashMap::new(),
        next_id: 0,
    };
    let mut input_open = true;
    let mut ticker = tokio::time::interval(progress_interval);
    ticker.tick().await;
    loop {
        let step = {
            tokio::select! {
                req = requests.next(), if input_open => Step::Request(req),
                (key, item) = session.set.next() => Step::Item(key, item),
                _ = ticker.tick() => Step::ProgressTick,
                _ = tx.closed() => Step::Stop,
                _ = shutdown.changed() => Step::Stop,
            }
        };
        let out = match step {
            Step::Stop => return,
            Step::Request(None) => {
                input_open = false;
                Vec::new()
            }
            Step::Request(Some(Err(e))) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
            Step::Request(Some(Ok(cmd))) => session.handle(cmd),
            Step::Item(key, item) => session.item(key, item),
            Step::ProgressTick => session.progress_tick(),
        };
        for o in out {
            if tx.send(Ok(o)).await.is_err() {
                return;
            }
        }
    }
}

struct Session {
    api: Api,
    /// Whom the stream acts for: each watcher needs read on its range.
    who: Caller,
    /// The stream's watchers, read together: the hub wakes the set only for a watcher with
    /// events, so idle watchers cost nothing per write.
    set: WatchSet,
    watchers: BTreeMap<WatcherKey, Active>,
    /// The watcher of each watch id, so that choosing and checking an id costs no scan.
    ids: HashMap<i64, WatcherKey>,
    next_id: i64,
}

impl Session {
    fn current(&self) -> i64 {
        self.api.node.store().revision()
    }

    fn handle(&mut self, cmd: WatchCommand) -> Vec<WatchOut> {
        match cmd {
            WatchCommand::Create {
                opts,
                progress_notify,
                fragment,
                watch_id,
            } => self.create(opts, progress_notify, fragment, watch_id),
            WatchCommand::Cancel { watch_id } => {
                let Some(key) = self.key_of(watch_id) else {
                    return Vec::new();
                };
                self.remove(key);
                vec![WatchOut {
                    revision: self.current(),
                    watch_id,
                    canceled: true,
                    ..WatchOut::default()
                }]
            }
            WatchCommand::Progress => {
                // All earlier events of every watcher on this stream have been sent up to here.
                let revision = self
                    .watchers
                    .keys()
                    .map(|&key| self.set.progress_revision(key))
                    .min()
                    .unwrap_or_else(|| self.set.dispatched_revision());
                vec![WatchOut {
                    revision,
                    watch_id: -1,
                    ..WatchOut::default()
                }]
            }
        }
    }

    fn create(
        &mut self,
        opts: WatchOptions,
        progress_notify: bool,
        fragment: bool,
        requested: i64,
    ) -> Vec<WatchOut> {
        let id = if requested != 0 {
            requested
        } else {
            while self.key_of(self.next_id).is_some() {
                self.next_id += 1;
            }
            self.next_id
        };
        let revision = self.current();
        // The stream lives long: each watcher is allowed by the caller's rights as they are
        // now, not as they were when the stream opened. Decided before the id, as etcd does,
        // so a forbidden request learns nothing about the ids in use.
        let who = self.api.current_rights(&self.who);
        if !who.can_read(&opts.range.key, &opts.range.range_end) {
            // etcd's answer carries the id the client asked for (0: none), not -1.
            return vec![WatchOut {
                revision,
                watch_id: requested,
                created: true,
                canceled: true,
                cancel_reason:
                    "rpc error: code = PermissionDenied desc = etcdserver: permission denied".into(),
                ..WatchOut::default()
            }];
        }
        if self.key_of(id).is_some() {
            return refused(revision, "etcdserver: duplicate watch ID".into());
        }
        let created = WatchOut {
            revision,
            watch_id: id,
            created: true,
            ..WatchOut::default()
        };
        if opts.start_revision < 0 {
            // etcd treats a negative start as compacted history (no watcher is kept).
            if requested == 0 {
                self.next_id += 1;
            }
            let compact_revision = self.api.node.store().compact_revision();
            return vec![created, compacted(id, compact_revision)];
        }
        if self.watchers.len() >= MAX_WATCHERS_PER_STREAM {
            return refused(
                revision,
                format!(
                    "etcdserver: too many watchers on one stream (at most \
                     {MAX_WATCHERS_PER_STREAM}); open another stream"
                ),
            );
        }
        let slot = match self.api.watcher_slot() {
            Ok(slot) => slot,
            Err(e) => return refused(revision, e.message),
        };
        if requested == 0 {
            self.next_id += 1;
        }
        let from_now = opts.start_revision == 0;
        let key = self.set.add(opts);
        let mut created = created;
        if from_now {
            // The watcher starts after the revision the hub has dispatched, which a write
            // being applied may have left just below the store's: the header must not claim
            // a revision whose events are still to come on this watcher.
            created.revision = self.set.delivered_revision(key);
        }
        self.ids.insert(id, key);
        self.watchers.insert(
            key,
            Active {
                id,
                _slot: slot,
                progress_notify,
                fragment,
                sent_since_tick: false,
            },
        );
        vec![created]
    }

    fn key_of(&self, watch_id: i64) -> Option<WatcherKey> {
        self.ids.get(&watch_id).copied()
    }

    fn remove(&mut self, key: WatcherKey) {
        if let Some(active) = self.watchers.remove(&key) {
            self.ids.remove(&active.id);
        }
        self.set.remove(key);
    }

    fn item(&mut self, key: WatcherKey, item: Result<WatchItem, StoreError>) -> Vec<WatchOut> {
        let Some(active) = self.watchers.get_mut(&key) else {
            return Vec::new();
        };
        let id = active.id;
        match item {
            Ok(WatchItem::Events(events)) => {
                let events = hidden::visible(events);
                if events.is_empty() {
                    return Vec::new();
                }
                active.sent_since_tick = true;
                // The revision up to which this watcher has now delivered everything.
                let revision = self.set.delivered_revision(key);
                split(id, revision, events, active.fragment)
            }
            Ok(WatchItem::Compacted { compact_revision }) => {
                self.remove(key);
                vec![compacted(id, compact_revision)]
            }
            Err(e) => {
                tracing::error!(error = %e, watch_id = id, "watch failed reading history");
                self.remove(key);
                vec![WatchOut {
                    revision: self.current(),
                    watch_id: id,
                    canceled: true,
                    cancel_reason: "etcdserver: internal storage error".into(),
                    ..WatchOut::default()
                }]
            }
        }
    }

    fn progress_tick(&mut self) -> Vec<WatchOut> {
        let mut out = Vec::new();
        for (&key, w) in self.watchers.iter_mut() {
            if w.progress_notify && !w.sent_since_tick && self.set.is_synced(key) {
                out.push(WatchOut {
                    revision: self.set.progress_revision(key),
                    watch_id: w.id,
                    ..WatchOut::default()
                });
            }
            w.sent_since_tick = false;
        }
        out
    }
}

/// A watcher that is not created: etcd's answer to one its watch store refuses (created and
/// cancelled at once, with the reason, and watch id -1 so that no id is taken).
fn refused(revision: i64, reason: String) -> Vec<WatchOut> {
    vec![WatchOut {
        revision,
        watch_id: -1,
        created: true,
        canceled: true,
        cancel_reason: reason,
        ..WatchOut::default()
    }]
}

/// etcd's answer to a watcher whose history is gone: no reason, no header revision.
fn compacted(id: i64, compact_revision: i64) -> WatchOut {
    WatchOut {
        watch_id: id,
        canceled: true,
        compact_revision,
        ..WatchOut::default()
    }
}

fn event_bytes(e: &Event) -> usize {
    let kv = |kv: &hermes_storage::KeyValue| kv.key.len() + kv.value.len() + 40;
    kv(&e.kv) + e.prev_kv.as_ref().map_or(0, kv) + 8
}

/// Splits one delivery into responses of at most [`MAX_RESPONSE_BYTES`] of events: between
/// revisions (each response then certifies everything up to its last revision), and, when the
/// watcher asked for fragments, inside a revision too, every piece but the last marked
/// `fragment`. Without fragments a revision larger than the limit goes out whole, as etcd
/// sends it.
fn split(id: i64, revision: i64, events: Vec<Event>, fragment: bool) -> Vec<WatchOut> {
    let total: usize = events.iter().map(event_bytes).sum();
    if total <= MAX_RESPONSE_BYTES {
        return vec![WatchOut {
            revision,
            watch_id: id,
            events,
            ..WatchOut::default()
        }];
    }
    let mut out = Vec::new();
    let mut chunk: Vec<Event> = Vec::new();
    let mut size = 0;
    let mut iter = events.into_iter().peekable();
    while let Some(e) = iter.next() {
        size += event_bytes(&e);
        let rev = e.kv.mod_revision;
        chunk.push(e);
        let next_rev = iter.peek().map(|n| n.kv.mod_revision);
        let revision_ends = next_rev != Some(rev);
        let full = size >= MAX_RESPONSE_BYTES;
        if next_rev.is_none() {
            break;
        }
        if full && revision_ends {
            out.push(WatchOut {
                revision: rev,
                watch_id: id,
                events: std::mem::take(&mut chunk),
                ..WatchOut::default()
            });
            size = 0;
        } else if full && fragment {
            out.push(WatchOut {
                revision,
                watch_id: id,
                fragment: true,
                events: std::mem::take(&mut chunk),
                ..WatchOut::default()
            });
            size = 0;
        }
    }
    out.push(WatchOut {
        revision,
        watch_id: id,
        events: chunk,
        ..WatchOut::default()
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hermes_storage::{EventType, KeyValue};

    fn event(rev: i64, bytes: usize) -> Event {
        Event {
            kind: EventType::Put,
            kv: KeyValue {
                key: format!("k{rev}").into_bytes(),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
                value: vec![b'v'; bytes],
                lease: 0,
            },
            prev_kv: None,
        }
    }

    #[test]
    fn small_deliveries_go_out_whole() {
        let out = split(7, 3, vec![event(2, 10), event(3, 10)], false);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].revision, out[0].events.len()), (3, 2));
    }

    #[test]
    fn large_deliveries_split_between_revisions_only_without_fragments() {
        let big = MAX_RESPONSE_BYTES / 2 + 1;
        let events = vec![event(2, big), event(3, big), event(4, big)];
        let out = split(1, 4, events, false);
        let revs: Vec<Vec<i64>> = out
            .iter()
            .map(|o| o.events.iter().map(|e| e.kv.mod_revision).collect())
            .collect();
        assert_eq!(revs, vec![vec![2, 3], vec![4]]);
        assert_eq!(
            out[0].revision, 3,
            "a piece certifies up to its last revision"
        );
        assert!(out.iter().all(|o| !o.fragment));

        // One revision over the limit: whole without fragments, in pieces with them.
        let one_rev: Vec<Event> = (0..3)
            .map(|i| {
                let mut e = event(5, big);
                e.kv.key = format!("k{i}").into_bytes();
                e
            })
            .collect();
        assert_eq!(split(1, 5, one_rev.clone(), false).len(), 1);
        let pieces = split(1, 5, one_rev, true);
        assert_eq!(pieces.len(), 2);
        assert!(pieces[0].fragment && !pieces[1].fragment);
        assert_eq!(pieces.iter().map(|p| p.events.len()).sum::<usize>(), 3);
    }
}
