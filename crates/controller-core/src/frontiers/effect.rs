//! The plain data that goes in and out of [`FrontierState`](super::FrontierState):
//! how to register a collection, what the caller must do afterwards, and a snapshot of
//! one collection's frontiers.

use strata_controller_api::{Antichain, GlobalId, InstanceId, ReadPolicy, StorageTimestamp};

/// Something the caller must do because a frontier moved.
///
/// Every method of [`FrontierState`](super::FrontierState) that can move a frontier
/// returns these, in ascending id order and, for one id, in the order of the variants
/// below. Applying them is the caller's job: the state machine does no I/O.
///
/// The enum is deliberately not `#[non_exhaustive]`: a new effect must break every
/// `match` that would otherwise silently drop it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<T> {
    /// Downgrade the critical since of the collection's shard. Only for entries backed
    /// by a shard. Per id these frontiers only advance.
    DowngradeSince {
        /// The collection.
        id: GlobalId,
        /// Its new since.
        since: Antichain<T>,
    },
    /// Tell the instance that runs the object that it may compact up to `frontier`.
    /// `[]` means the object is dropped and the replicas should stop it. Per id these
    /// frontiers only advance, and `[]` is sent at most once.
    AllowCompaction {
        /// The instance the object runs on.
        instance: InstanceId,
        /// The object.
        id: GlobalId,
        /// How far the replicas may compact.
        frontier: Antichain<T>,
    },
    /// The entry was dropped, its since is `[]` and, for an object on an instance, the
    /// replicas have confirmed the drop. The state has forgotten the id; the caller
    /// finalizes its shard, if it has one. Emitted at most once per id.
    Finalize {
        /// The collection.
        id: GlobalId,
    },
    /// The since or the upper changed: record both for introspection.
    RecordFrontiers {
        /// The collection.
        id: GlobalId,
        /// Its since.
        since: Antichain<T>,
        /// Its upper.
        upper: Antichain<T>,
    },
}

impl<T> Effect<T> {
    /// The id the effect is about.
    pub fn id(&self) -> GlobalId {
        match self {
            Effect::DowngradeSince { id, .. }
            | Effect::AllowCompaction { id, .. }
            | Effect::Finalize { id }
            | Effect::RecordFrontiers { id, .. } => *id,
        }
    }
}

/// How to register a collection (or a shard-less object such as an export).
///
/// # Examples
///
/// ```
/// use strata_controller_api::{Antichain, GlobalId, InstanceId, ReadPolicy, Timestamp};
/// use strata_controller_core::frontiers::{CollectionConfig, FrontierState};
///
/// let t = |ms| Antichain::from_elem(Timestamp::new(ms));
/// let mut state = FrontierState::new();
/// state.register(GlobalId::User(1), CollectionConfig::new(t(0), t(0))).unwrap();
/// let ingestion = CollectionConfig::new(t(0), t(0))
///     .with_dependencies(vec![GlobalId::User(1)])
///     .with_read_policy(ReadPolicy::step_back())
///     .with_hold_policy(ReadPolicy::step_back())
///     .on_instance(InstanceId(7));
/// state.register(GlobalId::User(2), ingestion).unwrap();
/// assert_eq!(state.dependencies(GlobalId::User(2)), Some(&[GlobalId::User(1)][..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionConfig<T> {
    /// The since to start from, usually the shard's since. Registration advances it to
    /// the join of itself and every dependency's since.
    pub since: Antichain<T>,
    /// The upper to start from, usually the shard's upper.
    pub upper: Antichain<T>,
    /// The ids this collection holds reads on, at its own since.
    pub dependencies: Vec<GlobalId>,
    /// The caller's policy: the implied capability follows the upper through it.
    pub read_policy: ReadPolicy<T>,
    /// The controller's own policy, such as `step_back` for ingestions and exports. It
    /// holds a second implied capability that `set_read_policies` cannot move.
    pub hold_policy: Option<ReadPolicy<T>>,
    /// The instance the object runs on; such objects receive `AllowCompaction`, and
    /// their finalization waits for [`FrontierState::confirm_dropped`](super::FrontierState::confirm_dropped).
    pub instance: Option<InstanceId>,
    /// Whether a shard backs the entry; only then is `DowngradeSince` emitted.
    pub has_shard: bool,
}

impl<T: StorageTimestamp> CollectionConfig<T> {
    /// A shard-backed collection with no dependencies, no instance, and the policy
    /// `NoPolicy { initial_since: since }`, so its since stays put until a policy is set.
    pub fn new(since: Antichain<T>, upper: Antichain<T>) -> Self {
        CollectionConfig {
            read_policy: ReadPolicy::NoPolicy {
                initial_since: since.clone(),
            },
            since,
            upper,
            dependencies: Vec::new(),
            hold_policy: None,
            instance: None,
            has_shard: true,
        }
    }

    /// Sets the ids this collection holds reads on.
    pub fn with_dependencies(mut self, dependencies: Vec<GlobalId>) -> Self {
        self.dependencies = dependencies;
        self
    }

    /// Sets the caller's read policy.
    pub fn with_read_policy(mut self, policy: ReadPolicy<T>) -> Self {
        self.read_policy = policy;
        self
    }

    /// Sets the controller's own hold policy.
    pub fn with_hold_policy(mut self, policy: ReadPolicy<T>) -> Self {
        self.hold_policy = Some(policy);
        self
    }

    /// Marks the entry as an object that runs on `instance`.
    pub fn on_instance(mut self, instance: InstanceId) -> Self {
        self.instance = Some(instance);
        self
    }

    /// Marks the entry as not backed by a shard, as an export is.
    pub fn without_shard(mut self) -> Self {
        self.has_shard = false;
        self
    }
}

/// One collection's frontiers, as [`FrontierState::frontiers`](super::FrontierState::frontiers)
/// reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectionFrontiers<T> {
    /// The collection.
    pub id: GlobalId,
    /// The since: the lower bound of every outstanding read capability.
    pub since: Antichain<T>,
    /// The capability the read policy holds.
    pub implied_capability: Antichain<T>,
    /// The upper (write frontier).
    pub upper: Antichain<T>,
}
